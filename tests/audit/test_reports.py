"""The unusual-access report: each finding fires for the planted cases and not for normal ones.

Entries are appended through ``record()`` with the audit log's clock frozen at chosen times
(the log is append-only, so times cannot be adjusted afterwards).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import mash_hub.audit.log as audit_log_module
from mash_hub.audit import AuditEvent, record
from mash_hub.audit.models import AuditEntry
from mash_hub.audit.reports import StaffTerms, staff_terms, unusual_access
from mash_hub.authz.models import BreakGlassView
from mash_hub.crypto.blind_index import BlindIndexer
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.persons.models import Person, SourceRecord
from mash_hub.persons.store import PersonStore
from tests.authz.conftest import add_referral
from tests.persons.conftest import person_record

UTC = dt.UTC
SINCE = dt.datetime(2030, 1, 1, tzinfo=UTC)
UNTIL = dt.datetime(2030, 12, 31, tzinfo=UTC)
MONDAY = dt.date(2030, 1, 7)  # a Monday in GMT; 2030-07-01 is a Monday in BST


class Clock:
    """Stands in for ``datetime`` inside ``mash_hub.audit.log``: ``now()`` is ``self.at``."""

    def __init__(self) -> None:
        self.at = SINCE

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        clock = self

        class Frozen(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> Frozen:
                return cls.fromtimestamp(clock.at.timestamp(), tz)

        monkeypatch.setattr(
            audit_log_module, "dt", types.SimpleNamespace(datetime=Frozen, UTC=dt.UTC)
        )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    frozen = Clock()
    frozen.install(monkeypatch)
    return frozen


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def view(
    session: Session,
    clock: Clock,
    when: dt.datetime,
    actor: str,
    person: uuid.UUID | None = None,
    *,
    referral: str | None = None,
    break_glass: bool = False,
) -> int:
    """A ``person.view`` entry shaped as ``view_person`` writes it."""
    clock.at = when
    details: dict[str, Any] = {
        "role": "social_worker",
        "agency": "social_care",
        "policy_version": 1,
        "purpose": {"referral": referral} if referral else {"code": "mash_triage"},
        "shown": {"social_care": ["identity"]},
        "records": {"social_care": 1},
        "break_glass": break_glass,
    }
    if break_glass:
        details |= {"review_required": True, "break_glass_view_id": str(uuid.uuid4())}
    return record(
        session,
        AuditEvent(actor, "person.view", "person", str(person or uuid.uuid4()), details),
    )


def referral_about(
    session: Session, reference: str, person: uuid.UUID | None = None, **kwargs: Any
) -> uuid.UUID:
    """A referral naming ``person`` (a new person by default) through a bare record of
    source ``referral`` (ids only: the report reads nothing else); returns the person."""
    person = person or uuid.uuid4()
    if session.get(Person, person) is None:
        session.add(Person(id=person))
    record = SourceRecord(
        id=uuid.uuid4(),
        feed="referrals",
        source_agency="referral",
        source_key=uuid.uuid4().bytes,
        person_id=person,
    )
    session.add(record)
    session.flush()
    add_referral(session, [record.id], reference, **kwargs)
    return person


def deny(session: Session, clock: Clock, when: dt.datetime, actor: str, reason: str) -> int:
    clock.at = when
    return record(
        session,
        AuditEvent(
            actor,
            "authz.denied",
            "person",
            str(uuid.uuid4()),
            {"reason": reason, "requested": "person.view", "role": "x", "agency": "y"},
        ),
    )


def report_entry(session: Session, seq: int | None) -> AuditEntry:
    entry = session.get(AuditEntry, seq)
    assert entry is not None and entry.action == "audit.report"
    return entry


# -- 1. volume ------------------------------------------------------------------------------


def test_volume_outliers_against_peers_and_own_baseline(session: Session, clock: Clock) -> None:
    week = [MONDAY + dt.timedelta(days=i) for i in range(5)]
    planted: list[int] = []
    quiet_spike: list[int] = []
    busy_spike: list[int] = []
    for day in week:
        for who in ("user:a", "user:b", "user:c", "user:d"):
            for i in range(5):
                view(session, clock, at(day, 10, i), who)
        heavy = 30 if day == week[2] else 5
        seqs = [view(session, clock, at(day, 11, i), "user:heavy") for i in range(heavy)]
        if day == week[2]:
            planted = seqs
        busy = 18 if day == week[3] else 5
        seqs = [view(session, clock, at(day, 12, i), "user:busy") for i in range(busy)]
        if day == week[3]:
            busy_spike = seqs
        quiet = 12 if day == week[4] else 1
        seqs = [view(session, clock, at(day, 13, i), "user:quiet") for i in range(quiet)]
        if day == week[4]:
            quiet_spike = seqs
    clock.at = at(week[2], 14)
    record(session, AuditEvent("user:heavy", "audit.query"))  # not a view: never counted

    report = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL)
    # Actor-days: median 5, MAD 0, so the peer limit is 15; the floor of 20 spares user:busy.
    assert [(f.actor, f.day, f.views) for f in report.volume_outliers] == [
        ("user:heavy", week[2], 30)
    ]
    (outlier,) = report.volume_outliers
    assert outlier.seqs == planted
    assert outlier.peer_limit == 15 and outlier.own_limit == 15 and outlier.own_median == 5
    assert outlier.reasons == ["peers", "own"]
    assert "max(3 x median, median + 5 x MAD)" in report.rules()["volume_outliers"]

    lower = unusual_access(
        session, actor="test:auditor", since=SINCE, until=UNTIL, volume_threshold=10
    )
    found = {(f.actor, f.day): f for f in lower.volume_outliers}
    assert set(found) == {
        ("user:heavy", week[2]),
        ("user:busy", week[3]),
        ("user:quiet", week[4]),
    }
    assert found["user:busy", week[3]].seqs == busy_spike
    # 12 views is under the peer limit but far above user:quiet's own (1 a day, limit 3).
    assert found["user:quiet", week[4]].reasons == ["own"]
    assert found["user:quiet", week[4]].seqs == quiet_spike


def test_no_own_baseline_with_few_active_days(session: Session, clock: Clock) -> None:
    for day in range(5):
        for who in ("user:a", "user:b", "user:c"):
            for i in range(5):
                view(session, clock, at(MONDAY + dt.timedelta(days=day), 10, i), who)
    new = [view(session, clock, at(MONDAY, 11, i), "user:new") for i in range(40)]
    report = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL)
    (outlier,) = report.volume_outliers
    assert outlier.actor == "user:new" and outlier.seqs == new
    assert outlier.own_limit is None and outlier.reasons == ["peers"]


# -- 2. out of hours ------------------------------------------------------------------------


def test_out_of_hours_in_local_time(session: Session, clock: Clock) -> None:
    summer = dt.date(2030, 7, 1)
    normal = [
        view(session, clock, at(summer, 7, 30), "user:a"),  # 08:30 BST
        view(session, clock, at(MONDAY, 17, 59), "user:a"),  # 17:59 GMT
        view(session, clock, at(MONDAY, 8, 0), "user:a"),
    ]
    after = view(session, clock, at(summer, 17, 30), "user:b")  # 18:30 BST
    before = view(session, clock, at(MONDAY, 7, 30), "user:b")  # 07:30 GMT
    saturday = view(session, clock, at(MONDAY + dt.timedelta(days=5), 12), "user:c")
    late_sunday = view(session, clock, at(dt.date(2030, 7, 7), 22, 30), "user:c")  # Sun BST
    report = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL)
    found = {f.seq: f.why for f in report.out_of_hours}
    assert found == {
        before: "before_hours",
        saturday: "weekend",
        after: "after_hours",
        late_sunday: "weekend",
    }
    assert not set(normal) & set(found)
    (late,) = [f for f in report.out_of_hours if f.seq == late_sunday]
    assert late.local_time == dt.datetime(2030, 7, 7, 23, 30)
    assert "bank holidays are not modelled" in report.rules()["out_of_hours"]

    wider = unusual_access(
        session, actor="test:auditor", since=SINCE, until=UNTIL, working_hours=(7, 19)
    )
    assert {f.seq for f in wider.out_of_hours} == {saturday, late_sunday}


# -- 3. break-glass -------------------------------------------------------------------------


def test_break_glass_with_review_state(session: Session, clock: Clock) -> None:
    view(session, clock, at(MONDAY, 10), "user:a")  # a normal view
    seqs = [view(session, clock, at(MONDAY, 11 + i), "user:gp", break_glass=True) for i in range(3)]
    reviewed, waiting, orphan = seqs
    for seq in (reviewed, waiting):
        session.add(
            BreakGlassView(
                id=uuid.uuid4(),
                audit_seq=seq,
                actor="user:gp",
                role="gp",
                agency="health",
                person_id=uuid.uuid4(),
                justification_id=uuid.uuid4(),
                occurred_at=at(MONDAY, 11),
                reviewed_at=at(MONDAY, 16) if seq == reviewed else None,
                reviewed_by="user:dpo" if seq == reviewed else None,
                review_outcome="justified" if seq == reviewed else None,
            )
        )
    session.flush()
    report = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL)
    states = {f.seq: (f.review_state, f.review_outcome) for f in report.break_glass}
    assert states == {
        reviewed: ("reviewed", "justified"),
        waiting: ("awaiting_review", None),
        orphan: ("review_row_missing", None),
    }
    assert all(f.review_required for f in report.break_glass)
    assert report.counts()["break_glass"] == 3
    assert report.counts()["break_glass_unreviewed"] == 2


# -- 4. no related referral -----------------------------------------------------------------


def test_views_without_a_referral(session: Session, clock: Clock) -> None:
    """A view counts as referred only when its referral exists, names the viewed person and
    was open (or decided under 30 days) at the time (issue #12 item 2)."""
    child = referral_about(session, "MASH/2030/00017")
    referral_about(session, "MASH/2030/00019")  # about someone else
    decided = at(MONDAY, 9) - dt.timedelta(days=31)
    referral_about(session, "MASH/2030/00020", child, status="decided", decided_at=decided)
    recent = at(MONDAY, 9) - dt.timedelta(days=29)
    referral_about(session, "MASH/2030/00021", child, status="decided", decided_at=recent)
    coded = [view(session, clock, at(MONDAY, 10, i), "user:a") for i in range(3)]
    view(session, clock, at(MONDAY, 11), "user:a", child, referral="MASH/2030/00017")
    view(session, clock, at(MONDAY, 11, 30), "user:a", child, referral="MASH/2030/00021")
    made_up = view(session, clock, at(MONDAY, 12), "user:b", child, referral="MASH/2030/00018")
    other = view(session, clock, at(MONDAY, 13), "user:b", child, referral="MASH/2030/00019")
    closed = view(session, clock, at(MONDAY, 14), "user:c", child, referral="MASH/2030/00020")
    report = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL)
    assert [(u.actor, u.code, u.views, u.seqs) for u in report.unreferred] == [
        ("user:a", "mash_triage", 3, coded),
        ("user:b", None, 2, [made_up, other]),
        ("user:c", None, 1, [closed]),
    ]
    assert report.counts()["unreferred"] == 6


# -- 5. denials -----------------------------------------------------------------------------


def test_repeated_denials_in_one_day(session: Session, clock: Clock) -> None:
    probe = [
        deny(session, clock, at(MONDAY, 9, i), "user:probe", reason)
        for i, reason in enumerate(["unknown_person"] * 4 + ["role_not_permitted"])
    ]
    # Four one day and one the next: under the threshold on each day.
    deny(session, clock, at(MONDAY, 9), "user:clumsy", "purpose_missing")
    for i in range(3):
        deny(session, clock, at(MONDAY, 10, i), "user:clumsy", "purpose_missing")
    deny(session, clock, at(MONDAY + dt.timedelta(days=1), 9), "user:clumsy", "purpose_missing")
    report = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL)
    (burst,) = report.denials
    assert (burst.actor, burst.day, burst.denials, burst.seqs) == ("user:probe", MONDAY, 5, probe)
    assert burst.reasons == {"unknown_person": 4, "role_not_permitted": 1}


# -- 6. staff viewing related people ---------------------------------------------------------


def test_staff_viewing_people_sharing_family_name_or_postcode(
    session: Session, clock: Clock, tmp_path: Path
) -> None:
    keyring = LocalKeyringProvider.create(tmp_path / "keyring.json")
    store = PersonStore.from_provider(keyring)
    people: dict[str, uuid.UUID] = {}
    for name, family, postcode in (
        ("kowalczyk", "Kowalczyk", "LS6 2QT"),
        ("nowak", "Nowak", "LS6 2QT"),
        ("smith", "Smith", "M1 1AE"),
    ):
        people[name] = store.new_person(session)
        store.add(
            session,
            [
                person_record(
                    f"src-{name}", family=family, postcode=postcode, person_id=people[name]
                )
            ],
        )
    indexer = BlindIndexer.from_provider(keyring)
    staff = {
        "user:kowal": staff_terms(indexer, family_name="kowalczyk", postcode="BD1 1AA"),
        "user:ls6": staff_terms(indexer, family_name="Jones", postcode="ls62qt"),
        "user:nobody": StaffTerms(),
    }
    family_hit = view(session, clock, at(MONDAY, 10), "user:kowal", people["kowalczyk"])
    view(session, clock, at(MONDAY, 10, 1), "user:kowal", people["nowak"])
    view(session, clock, at(MONDAY, 10, 2), "user:kowal", people["smith"])
    postcode_hits = [
        view(session, clock, at(MONDAY, 11), "user:ls6", people["kowalczyk"]),
        view(session, clock, at(MONDAY, 11, 1), "user:ls6", people["nowak"]),
    ]
    view(session, clock, at(MONDAY, 11, 2), "user:ls6", people["smith"])
    view(session, clock, at(MONDAY, 12), "user:other", people["kowalczyk"])  # not in directory
    view(session, clock, at(MONDAY, 12, 1), "user:nobody", people["kowalczyk"])

    report = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL, staff=staff)
    assert report.staff_related is not None
    assert [(f.seq, f.actor, f.person_id, f.matched) for f in report.staff_related] == [
        (family_hit, "user:kowal", str(people["kowalczyk"]), ["family_name"]),
        (postcode_hits[0], "user:ls6", str(people["kowalczyk"]), ["postcode"]),
        (postcode_hits[1], "user:ls6", str(people["nowak"]), ["postcode"]),
    ]
    entry = report_entry(session, report.audit_seq)
    assert entry.details["staff_directory_entries"] == 3
    assert entry.details["counts"]["staff_related"] == 3
    assert "owalczyk" not in json.dumps(entry.details).lower()

    without = unusual_access(session, actor="test:auditor", since=SINCE, until=UNTIL)
    assert without.staff_related is None and without.counts()["staff_related"] is None


# -- the report as a whole ------------------------------------------------------------------


def test_quiet_log_has_no_findings_and_the_run_is_audited(session: Session, clock: Clock) -> None:
    for day in range(5):
        for i in range(6):
            reference = f"MASH/2030/{day}{i}"
            view(
                session,
                clock,
                at(MONDAY + dt.timedelta(days=day), 9 + i),
                f"user:{i % 3}",
                referral_about(session, reference),
                referral=reference,
            )
    deny(session, clock, at(MONDAY, 9), "user:0", "purpose_missing")
    before_window = view(session, clock, at(MONDAY - dt.timedelta(days=10), 3), "user:0")
    report = unusual_access(
        session, actor="test:auditor", since=at(MONDAY, 0), until=at(MONDAY, 0) + dt.timedelta(7)
    )
    assert report.counts() == {
        "volume_outliers": 0,
        "out_of_hours": 0,
        "break_glass": 0,
        "break_glass_unreviewed": 0,
        "unreferred": 0,
        "denials": 0,
        "staff_related": None,
    }
    assert before_window  # outside the window: not reported as out of hours
    entry = report_entry(session, report.audit_seq)
    assert entry.actor == "test:auditor"
    assert entry.details["report"] == "unusual_access"
    assert entry.details["counts"] == report.counts()
    assert entry.details["since"] == "2030-01-07T00:00:00+00:00"
    doc = report.as_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert set(doc["findings"]) == set(doc["rules"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"since": UNTIL, "until": SINCE},
        {"since": SINCE.replace(tzinfo=None)},
        {"working_hours": (18, 8)},
        {"timezone": "Mars/Olympus_Mons"},
        {"volume_threshold": 0},
    ],
)
def test_bad_arguments_are_refused(session: Session, kwargs: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"since": SINCE, "until": UNTIL} | kwargs
    with pytest.raises(ValueError):
        unusual_access(session, actor="test:auditor", **arguments)
    assert session.scalar(select(AuditEntry).where(AuditEntry.action == "audit.report")) is None


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli_db(fresh_database_url: str) -> Iterator[Database]:
    engine = create_engine(fresh_database_url)
    migrate.upgrade(engine)
    try:
        yield Database(engine)
    finally:
        engine.dispose()


def test_unusual_command(
    cli_db: Database, hub_env: dict[str, str], tmp_path: Path, clock: Clock
) -> None:
    with cli_db.transaction() as session:
        weekend = view(session, clock, at(MONDAY + dt.timedelta(days=6), 12), "user:a")
        for i in range(5):
            deny(session, clock, at(MONDAY, 9, i), "user:probe", "unknown_person")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mash_hub", "audit", "unusual", *args],
            env=hub_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = run("--since", "2030-01-01", "--until", "2030-02-01", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [f["seq"] for f in doc["findings"]["out_of_hours"]] == [weekend]
    assert doc["counts"]["denials"] == 1 and doc["counts"]["unreferred"] == 1
    human = run("--since", "2030-01-01", "--until", "2030-02-01")
    assert human.returncode == 0, human.stderr
    assert "Repeated denials (1)" in human.stdout and "user:probe" in human.stdout
    bad = run("--since", "2030-02-01", "--until", "2030-01-01")
    assert bad.returncode == 2

    data_dir = Path(hub_env["MASH_DATA_DIR"])
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    LocalKeyringProvider.create(data_dir / "keyring.json")
    directory = tmp_path / "staff.csv"
    directory.write_text("actor,family_name,postcode\nuser:a,Kowalczyk,LS6 2QT\n")
    staffed = run("--since", "2030-01-01", "--until", "2030-02-01", "--json",
                  "--staff-directory", str(directory))  # fmt: skip
    assert staffed.returncode == 0, staffed.stderr
    assert json.loads(staffed.stdout)["findings"]["staff_related"] == []
    with cli_db.transaction() as session:
        runs = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "audit.report").order_by(AuditEntry.seq)
        ).all()
    assert [r.details["staff_directory_entries"] for r in runs] == [None, None, 1]
    assert "Kowalczyk" not in json.dumps([r.details for r in runs])
