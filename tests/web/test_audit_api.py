"""The audit API through real HTTP calls: auditors query, page, export, verify and report;
everyone else is refused (audited); a log tampered with by a superuser fails verification
at the first bad entry."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

import mash_hub.audit.log as audit_log_module
from mash_hub.audit.access import entry_dict, export_chunks
from mash_hub.audit.checkpointer import create_checkpoint
from mash_hub.audit.models import AuditEntry
from mash_hub.authz.vocabulary import AGENCIES, ROLES
from mash_hub.crypto.signing import create_signing_key_file
from mash_hub.db.engine import Database
from mash_hub.web import audit as audit_api
from tests.web.test_persons_api import (
    GLASS,
    PURPOSE,
    PersonsHub,
    assert_problem,
    without_request_id,
)

AUDITOR = ("auditor", "council")
ENDPOINTS = (
    ("GET", "/api/v1/audit/entries", "audit.query"),
    ("GET", "/api/v1/audit/export", "audit.export"),
    ("POST", "/api/v1/audit/verify", "audit.verify"),
    ("GET", "/api/v1/audit/unusual", "audit.unusual"),
)


class AuditHub(PersonsHub):
    """A hub whose log holds views (one break-glass), a refusal and the set-up's entries."""

    def __init__(self, database: Database, tmp_path: Path) -> None:
        super().__init__(database, tmp_path)
        self.settings = self.app.state.authenticator.settings
        for _ in range(3):
            assert self.view("social_worker", "social_care", PURPOSE).status_code == 200
        assert self.view("police_officer", "police", GLASS).status_code == 200
        assert self.view("admin", "council", PURPOSE).status_code == 403

    def call(
        self,
        path: str,
        role: str = AUDITOR[0],
        agency: str = AUDITOR[1],
        method: str = "GET",
        **kwargs: Any,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token(role, agency)}"}
        return self.client.request(method, f"/api/v1/audit{path}", headers=headers, **kwargs)

    def rows(self, through: int | None = None) -> list[dict[str, Any]]:
        """Every chained entry in chain order, straight from the table (the reference the API
        is checked against), as the API renders it."""
        with self.database.transaction() as session:
            position = AuditEntry.chain_seq
            stmt = (
                select(*AuditEntry.__table__.columns)
                .where(position.is_not(None))
                .order_by(position)
            )
            if through is not None:
                stmt = stmt.where(position <= through)
            return [entry_dict(row) for row in session.execute(stmt)]

    def settle(self) -> None:
        """Chain every committed entry now, where the log chains after commit."""
        chain = getattr(audit_log_module, "chain_pending", None)
        if chain is not None:
            chain(self.database.engine)


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[AuditHub]:
    yield AuditHub(committing_database, tmp_path)


def normalised(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry of the API or the table in one form (times parsed; absent columns None)."""
    out = {k: v for k, v in entry.items() if k != "chain_seq" and not k.startswith("actor_")}
    out["occurred_at"] = dt.datetime.fromisoformat(entry["occurred_at"])
    return out


def test_an_auditor_queries_every_entry_with_hashes(hub: AuditHub) -> None:
    hub.settle()  # so the reference and the API see the same hashes
    before = hub.rows()
    response = hub.call("/entries", params={"limit": 1000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    got = [normalised(e) for e in body["entries"]]
    assert got == [normalised(e) for e in before]
    actions = [e["action"] for e in body["entries"]]
    assert actions.count("person.view") == 4 and "authz.denied" in actions
    # Each actor is described as they were: role and agency as the entry itself recorded.
    for entry in body["entries"]:
        if entry["action"] == "person.view":
            details = entry["details"]
            assert (entry["actor_role"], entry["actor_agency"]) == (
                details["role"],
                details["agency"],
            )
            assert entry["actor_kind"] == "hub_user"
            assert entry["actor_name"] == f"{details['role']}.{details['agency']}"
    (query,) = hub.audit("audit.query")
    assert query.seq == body["audit_seq"]
    assert query.details["rows"] == len(before) and query.details["role"] == "auditor"


@pytest.mark.parametrize(
    "filters",
    [
        {"action": "person.view"},
        {"action_prefix": "person."},
        {"action_prefix": "authz"},
        {"person": True},
        {"person": True, "action": "authz.denied"},
        {"actor": "social_worker"},
        {"actor": "social_worker", "window": True},
    ],
    ids=str,
)
def test_filters_match_a_direct_reading_of_the_table(
    hub: AuditHub, filters: dict[str, Any]
) -> None:
    hub.settle()
    rows = hub.rows()
    params: dict[str, Any] = {k: v for k, v in filters.items() if k in ("action", "action_prefix")}
    if filters.get("person"):
        params["person_id"] = str(hub.person_id)
    if "actor" in filters:
        actor = next(r["actor"] for r in rows if r["details"].get("role") == filters["actor"])
        params["actor"] = actor
    views = [r for r in rows if r["action"] == "person.view"]
    if filters.get("window"):
        params["since"] = views[1]["occurred_at"]
        params["until"] = views[2]["occurred_at"]

    def keep(row: dict[str, Any]) -> bool:
        return (
            ("action" not in params or row["action"] == params["action"])
            and row["action"].startswith(params.get("action_prefix", ""))
            and ("actor" not in params or row["actor"] == params["actor"])
            and (
                "person_id" not in params
                or row["subject_id"] == params["person_id"]
                or row["details"].get("person_id") == params["person_id"]
            )
            and ("since" not in params or row["occurred_at"] >= params["since"])
            and ("until" not in params or row["occurred_at"] < params["until"])
        )

    want = [r["seq"] for r in rows if keep(r)]
    assert want, "the filter should match something"
    response = hub.call("/entries", params=params)
    assert response.status_code == 200, response.text
    assert [e["seq"] for e in response.json()["entries"]] == want
    (query,) = hub.audit("audit.query")
    assert set(query.details["filters"]) == set(params)


@settings(
    max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(limit=st.integers(1, 7), order=st.sampled_from(["asc", "desc"]))
def test_pages_follow_the_cursor_without_gaps_or_repeats(
    hub: AuditHub, limit: int, order: str
) -> None:
    hub.settle()  # the reference reads chained entries only, as the API lists them
    everything = [r["seq"] for r in hub.rows() if r["action"].startswith("person.")]
    if order == "desc":
        everything.reverse()
    seen: list[int] = []
    params: dict[str, Any] = {"limit": limit, "order": order, "action_prefix": "person."}
    for _ in range(50):
        body = hub.call("/entries", params=params).json()
        assert len(body["entries"]) <= limit
        seen += [e["seq"] for e in body["entries"]]
        if body["next_cursor"] is None:
            break
        params["after"] = body["next_cursor"]
    assert seen == everything


def test_exports_stream_csv_and_json_of_exactly_the_entries_before_them(hub: AuditHub) -> None:
    for fmt in ("csv", "json"):
        hub.settle()  # so the reference and the export see the same hashes
        response = hub.call("/export", params={"format": fmt})
        assert response.status_code == 200, response.text
        assert "attachment" in response.headers["content-disposition"]
        bound = int(response.headers["x-audit-through-chain-seq"])
        want = [normalised(r) for r in hub.rows(through=bound)]
        if fmt == "csv":
            assert response.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(response.text)))
            got = []
            for row in rows:
                entry: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
                entry["seq"] = int(row["seq"])
                entry["details"] = json.loads(row["details"])
                got.append(normalised(entry))
        else:
            got = [normalised(e) for e in response.json()]
        assert got == want, fmt
    exports = hub.audit("audit.export")
    assert [e.details["format"] for e in exports] == ["csv", "json"]

    filtered = hub.call("/export", params={"format": "json", "action": "person.view"})
    assert [e["action"] for e in filtered.json()] == ["person.view"] * 4
    assert hub.audit("audit.export")[-1].details["filters"] == {"action": "person.view"}


def test_an_export_is_read_a_batch_at_a_time(hub: AuditHub) -> None:
    hub.settle()
    stmt = select(*AuditEntry.__table__.columns).order_by(AuditEntry.seq)
    total = len(hub.rows())
    for fmt in ("csv", "json"):
        chunks = list(export_chunks(hub.database, stmt, fmt, batch=3))
        assert len(chunks) >= total // 3, fmt
        text = b"".join(chunks).decode()
        count = len(json.loads(text)) if fmt == "json" else len(text.splitlines()) - 1
        assert count == total
    empty = select(*AuditEntry.__table__.columns).where(AuditEntry.seq < 0)
    assert json.loads(b"".join(export_chunks(hub.database, empty, "json")).decode()) == []
    header = b"".join(export_chunks(hub.database, empty, "csv")).decode()
    assert header.startswith("seq,") and header.count("\n") == 1


def superuser(database: Database) -> psycopg.Connection[tuple[Any, ...]]:
    conninfo = make_url(database.url).set(drivername="postgresql")
    return psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True)


def tamper(database: Database, statement: str) -> None:
    with superuser(database) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(statement)


def position(database: Database, seq: int) -> int:
    """The entry's chain position (its seq where the log has no separate position)."""
    with superuser(database) as conn:
        has = conn.execute(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'audit_log' AND column_name = 'chain_seq'"
        ).fetchone()
        if has is None:
            return seq
        row = conn.execute("SELECT chain_seq FROM audit_log WHERE seq = %s", (seq,)).fetchone()
        assert row is not None and row[0] is not None
        return int(row[0])


def verify(hub: AuditHub, scope: str | None = None) -> dict[str, Any]:
    response = hub.call("/verify", method="POST", json=None if scope is None else {"scope": scope})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_verify_reports_the_first_tampered_entry(hub: AuditHub) -> None:
    hub.settle()
    intact = verify(hub)
    assert intact["ok"] is True and intact["problem"] is None and intact["scope"] == "full"
    assert intact["entries_checked"] >= 6
    views = [r["seq"] for r in hub.rows() if r["action"] == "person.view"]
    hub.settle()
    tamper(hub.database, f"UPDATE audit_log SET details = '{{}}' WHERE seq = {views[1]}")
    broken = verify(hub)
    assert broken["ok"] is False
    assert broken["problem"]["seq"] == position(hub.database, views[1])
    assert broken["problem"]["kind"] == "content"
    records = hub.audit("audit.verify")
    assert [r.details["ok"] for r in records] == [True, False]
    assert records[1].details["problem"] == {"seq": broken["problem"]["seq"], "kind": "content"}
    assert records[1].seq == broken["audit_seq"]


def test_verify_since_the_last_checkpoint_checks_only_the_unsigned_tail(hub: AuditHub) -> None:
    key = create_signing_key_file(hub.settings.resolved_audit_signing_key_path)
    hub.settle()
    checkpoint = create_checkpoint(hub.database, key, hub.settings.resolved_audit_checkpoint_dir)
    assert checkpoint is not None
    hub.view("social_worker", "social_care", PURPOSE)
    hub.settle()
    quick = verify(hub, "since_checkpoint")
    assert quick["ok"] is True and quick["latest_checkpoint_seq"] == checkpoint.seq
    assert quick["entries_checked"] < verify(hub, "full")["entries_checked"]

    first_view = next(r["seq"] for r in hub.rows() if r["action"] == "person.view")
    hub.settle()
    tamper(hub.database, f"UPDATE audit_log SET actor = 'user:x' WHERE seq = {first_view}")
    # Before the checkpoint: vouched for by its signature, found only by a full run.
    assert verify(hub, "since_checkpoint")["ok"] is True
    full = verify(hub, "full")
    assert full["ok"] is False and full["problem"]["seq"] == position(hub.database, first_view)


def test_unusual_access_reuses_the_report(hub: AuditHub) -> None:
    response = hub.call("/unusual")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["counts"]["break_glass"] == 1
    assert body["counts"]["unreferred"] == 4  # every view gave a reason code
    (glass,) = body["findings"]["break_glass"]
    assert glass["person_id"] == str(hub.person_id)
    assert glass["review_state"] == "awaiting_review"
    assert body["findings"]["staff_related"] is None
    (entry,) = hub.audit("audit.unusual")
    assert entry.seq == body["audit_seq"]
    assert entry.details["role"] == "auditor" and entry.details["counts"]["break_glass"] == 1
    assert hub.audit("audit.report") == []
    narrow = hub.call(
        "/unusual",
        params={"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"},
    ).json()
    assert narrow["counts"]["break_glass"] == 0


def test_every_other_role_is_refused_and_audited(hub: AuditHub) -> None:
    callers = [(role, agency) for role in ROLES for agency in AGENCIES[:2] if role != "auditor"]
    bodies = []
    for role, agency in callers:
        for method, path, _ in ENDPOINTS:
            response = hub.call(path.removeprefix("/api/v1/audit"), role, agency, method)
            bodies.append(without_request_id(assert_problem(response, 403)))
            assert "person.view" not in response.text
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["code"] == "audit_not_permitted"
    denied = [d for d in hub.audit("authz.denied") if d.subject_type == "audit_log"]
    assert len(denied) == len(callers) * len(ENDPOINTS)
    assert {d.details["requested"] for d in denied} == {e[2] for e in ENDPOINTS}
    assert {d.details["role"] for d in denied} == {role for role, _ in callers}
    for _, _, action in ENDPOINTS:
        assert hub.audit(action) == []


def test_malformed_filters_name_the_parameter_without_echoing_it(hub: AuditHub) -> None:
    cases = [
        ({"actor": "Jane Doe"}, "actor"),
        ({"action": "Person View!"}, "action"),
        ({"person_id": "Jane-Doe"}, "person_id"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"limit": 0}, "limit"),
    ]
    for params, name in cases:
        body = assert_problem(hub.call("/entries", params=params), 422)
        assert [e["loc"] for e in body["errors"]] == [["query", name]], params
        assert "Jane" not in json.dumps(body) and "Person View" not in json.dumps(body)
    bad_zone = assert_problem(hub.call("/unusual", params={"timezone": "Mars/Olympus"}), 422)
    assert bad_zone["errors"][0]["loc"] == ["query", "timezone"]
    assert "Mars" not in json.dumps(bad_zone)
    assert hub.audit("audit.query") == []


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/entries", {"after": "10000000000000000000"}, "after"),
        ("/entries", {"after": "1e25"}, "after"),
        ("/entries", {"after": str(2**63)}, "after"),
        ("/entries", {"since": "0001-01-01T00:30:00+00:00"}, "since"),
        ("/entries", {"until": "9999-12-31T23:30:00-05:00"}, "until"),
        ("/export", {"until": "0001-01-01T00:30:00+00:00"}, "until"),
        ("/unusual", {"until": "0001-01-01T00:30:00+00:00"}, "until"),
        ("/unusual", {"since": "0001-01-01T00:00:00+14:00"}, "since"),
        ("/unusual", {"until": "9999-12-31T23:59:59.999999-23:59"}, "until"),
        ("/unusual", {"until": "1970-01-02T00:00:00+00:00"}, "since"),
        ("/unusual", {"timezone": "../../etc/passwd"}, "timezone"),
    ],
)
def test_extreme_parameters_are_422_naming_the_parameter(
    hub: AuditHub, path: str, params: dict[str, str], name: str
) -> None:
    """Issue #12 item 4: these were 500s (DataError, OverflowError, a zone PostgreSQL refuses)."""
    body = assert_problem(hub.call(path, params=params), 422)
    assert [e["loc"] for e in body["errors"]] == [["query", name]]
    assert all(value not in json.dumps(body) for value in params.values())
    assert hub.audit("audit.query") == [] and hub.audit("audit.unusual") == []


@pytest.mark.parametrize("zone", ["posixrules", "right/UTC", "localtime"])
def test_a_zone_python_knows_is_refused_exactly_when_postgresql_does_not(
    hub: AuditHub, zone: str
) -> None:
    """zoneinfo accepts these; a PostgreSQL server may not (the embedded one does not, a
    server using the system's tzdata may): the API asks the server instead of guessing."""
    with hub.database.engine.connect() as connection:
        try:
            connection.execute(text("SELECT now() AT TIME ZONE :zone"), {"zone": zone})
            known = True
        except DBAPIError:
            known = False
    response = hub.call("/unusual", params={"timezone": zone})
    if known:
        assert response.status_code == 200, response.text
    else:
        body = assert_problem(response, 422)
        assert [e["loc"] for e in body["errors"]] == [["query", "timezone"]]
        assert zone not in json.dumps(body)
        assert hub.audit("audit.unusual") == []


def test_a_zone_both_python_and_postgresql_know_still_works(hub: AuditHub) -> None:
    for zone in ("UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+12"):
        response = hub.call("/unusual", params={"timezone": zone})
        assert response.status_code == 200, (zone, response.text)


def test_the_auditors_own_entries_hold_no_personal_data(hub: AuditHub) -> None:
    hub.call("/entries", params={"person_id": str(hub.person_id)})
    hub.call("/export", params={"format": "json", "person_id": str(hub.person_id)}).read()
    hub.call("/verify", method="POST")
    hub.call("/unusual")
    logged = json.dumps(
        [e.details for action in ("audit.query", "audit.export", "audit.verify", "audit.unusual")
         for e in hub.audit(action)]
    )  # fmt: skip
    for value in hub.household.values.values():
        assert value not in logged
    assert str(hub.person_id) in logged  # the filter is recorded, as an id
    # Nor does any entry the API serves carry a personal value.
    served = hub.call("/entries", params={"limit": 1000}).text
    for value in hub.household.values.values():
        assert value not in served


def test_the_routes_are_documented(hub: AuditHub) -> None:
    spec = hub.client.get("/openapi.json").json()
    for method, path, _ in ENDPOINTS:
        operation = spec["paths"][path][method.lower()]
        assert {"200", "401", "403", "503"} <= set(operation["responses"]), path
    entries = spec["paths"]["/api/v1/audit/entries"]["get"]["responses"]["200"]
    assert "AuditPage" in json.dumps(entries)
    export = spec["paths"]["/api/v1/audit/export"]["get"]["responses"]["200"]["content"]
    assert {"text/csv", "application/json"} <= set(export)
    assert "409" in spec["paths"]["/api/v1/audit/verify"]["post"]["responses"]


def test_unknown_persons_and_actors_simply_match_nothing(hub: AuditHub) -> None:
    for params in ({"person_id": str(uuid.uuid4())}, {"actor": "user:nobody"}):
        body = hub.call("/entries", params=params).json()
        assert body["entries"] == [] and body["next_cursor"] is None


def test_one_verification_at_a_time(hub: AuditHub) -> None:
    with audit_api._verify_lock:  # as if another request were verifying
        body = assert_problem(hub.call("/verify", method="POST"), 409)
        assert body["code"] == "verify_in_progress"
    assert hub.audit("audit.verify") == []
    assert hub.call("/verify", method="POST").status_code == 200
