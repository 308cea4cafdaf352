"""The subject-access export: exactly the ``subject_access`` mask is decrypted, it is audited
(before decryption, without plaintext), refusals are audited, and the access history names
roles and agencies, never staff."""

from __future__ import annotations

import json
import types
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, ForeignKey, LargeBinary, MetaData, String, Table, Uuid, text
from sqlalchemy.orm import Session

import mash_hub.audit
from mash_hub.audit.models import AuditEntry
from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.policy import AccessPolicy, Caller, build_enforcer
from mash_hub.authz.versions import publish
from mash_hub.authz.vocabulary import (
    AGENCIES,
    PERSON_FIELDS,
    ROLES,
    SOURCES,
    SUBJECT_ACCESS,
    source_fields,
)
from mash_hub.casework import subject_access as sar_module
from mash_hub.casework.subject_access import (
    InvalidReferenceError,
    SarReference,
    linked_referrals,
    subject_access_export,
)
from mash_hub.casework.view import AccessDeniedError, BreakGlass, Purpose, view_person
from mash_hub.persons.store import NewRecord, PersonStore
from tests.authz.conftest import BASELINE, Household, add_person, add_referral

REF = SarReference("SAR-2026-0117")
IG = Caller("user:ig-1", "information_governance", "council")
SOCIAL_WORKER = Caller("user:sw-1", "social_worker", "social_care")
POLICE = Caller("user:po-1", "police_officer", "police")
PURPOSE_TEXT = "Triage of contact C-1024 received today"
JUSTIFICATION = "Child reported missing overnight; police need the full picture now."
_ENFORCER, _ = build_enforcer(BASELINE)


def sar_reference(role: str, agency: str) -> dict[str, set[str]]:
    """pycasbin's own answer: the groups of each source the role may export."""
    out: dict[str, set[str]] = {}
    for source in SOURCES:
        groups = {
            f
            for f in source_fields(source)
            if _ENFORCER.enforce(role, agency, source, f, SUBJECT_ACCESS)
        }
        if groups:
            out[source] = groups
    return out


@pytest.fixture
def policy(session: Session) -> AccessPolicy:
    publish(session, BASELINE, actor="test:publisher")
    return AccessPolicy()


@pytest.fixture
def household(session: Session, store: PersonStore) -> Household:
    return add_person(session, store)


@pytest.fixture
def decrypted(
    store: PersonStore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[uuid.UUID, str]]]:
    """Every (record id, group) the store decrypts during the test."""
    seen: list[tuple[uuid.UUID, str]] = []
    original = store._open_joined

    def spy(rows: object, groups: object) -> object:
        opened = original(rows, groups)  # type: ignore[arg-type]
        seen.extend((record.id, group) for record in opened for group in record.groups)
        return opened

    monkeypatch.setattr(store, "_open_joined", spy)
    yield seen


def entries(session: Session, action: str) -> list[AuditEntry]:
    session.flush()
    return list(
        session.query(AuditEntry).filter(AuditEntry.action == action).order_by(AuditEntry.seq)
    )


def test_the_export_holds_exactly_the_subject_access_groups_for_every_role(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
) -> None:
    by_record = {record_id: source for source, record_id in household.records.items()}
    exported = 0
    for role in ROLES:
        for agency in AGENCIES:
            decrypted.clear()
            caller = Caller(f"user:{role}:{agency}", role, agency)
            want = sar_reference(role, agency)
            if not want:
                with pytest.raises(AccessDeniedError) as denied:
                    subject_access_export(session, store, policy, caller, household.person_id, REF)
                assert denied.value.reason == "role_not_permitted", (role, agency)
                assert decrypted == []
                continue
            result = subject_access_export(session, store, policy, caller, household.person_id, REF)
            exported += 1
            assert {s: set(g) for s, g in result.included().items()} == want, (role, agency)
            assert {(by_record[r], g) for r, g in decrypted} == {
                (s, g) for s, groups in want.items() for g in groups
            }
            text_out = json.dumps(result.to_dict())
            for (source, group), value in household.values.items():
                assert (value in text_out) == (group in want.get(source, set())), (source, group)
            # Groups a record holds outside its source's vocabulary are withheld, by name only.
            for source in SOURCES:
                held = set(PERSON_FIELDS)
                assert set(result.withheld.get(source, [])) == held - want.get(source, set())
    # The baseline: information governance, in every agency, and no one else.
    assert exported == len(AGENCIES)


def test_a_narrower_mask_decrypts_only_what_it_allows(
    session: Session,
    store: PersonStore,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
) -> None:
    narrow = BASELINE.policy.replace(
        "p, information_governance, *, *, *, subject_access, allow",
        "p, information_governance, *, police, identity, subject_access, allow\n"
        "p, information_governance, *, council, details.*, subject_access, allow",
    )
    publish(session, PolicyTexts(BASELINE.model, narrow), actor="test:publisher")
    result = subject_access_export(
        session, store, AccessPolicy(), IG, household.person_id, REF, channel="cli"
    )
    want = {"police": {"identity"}, "council": {"details.education", "details.housing"}}
    assert {s: set(g) for s, g in result.included().items()} == want
    by_record = {record_id: source for source, record_id in household.records.items()}
    assert {(by_record[r], g) for r, g in decrypted} == {
        (s, g) for s, groups in want.items() for g in groups
    }
    assert "social_care" not in result.sources
    assert set(result.withheld["social_care"]) == set(PERSON_FIELDS)
    (entry,) = entries(session, "person.subject_access")
    assert entry.details["channel"] == "cli"
    assert entry.details["included"] == {s: sorted(g) for s, g in want.items()}


def test_the_export_is_audited_once_without_plaintext(
    session: Session, store: PersonStore, policy: AccessPolicy, household: Household
) -> None:
    result = subject_access_export(session, store, policy, IG, household.person_id, REF)
    (entry,) = entries(session, "person.subject_access")
    assert entry.seq == result.audit_seq
    assert (entry.actor, entry.subject_type, entry.subject_id) == (
        IG.user_id,
        "person",
        str(household.person_id),
    )
    assert entry.details["reference"] == REF.value
    assert entry.details["role"] == "information_governance"
    assert entry.details["records"] == dict.fromkeys(SOURCES, 1)
    logged = json.dumps(entry.details)
    for value in household.values.values():
        assert value not in logged
    document = json.dumps(result.to_dict())
    assert all(value in document for (s, g), value in household.values.items()
               if g in source_fields(s))  # fmt: skip


def test_fail_closed_when_the_audit_append_fails(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy.for_session(session)  # compile first, so the failure is the audit's alone

    def broken(session: Session, event: object) -> int:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(mash_hub.audit, "record", broken)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        subject_access_export(session, store, policy, IG, household.person_id, REF)
    assert decrypted == []


def test_refusals_are_audited(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
) -> None:
    erased = add_person(session, store)
    store.erase_person(session, erased.person_id, actor="test:dpo", reason="ERASE-1")
    cases = [
        (IG, household.person_id, None, "reference_missing"),
        (SOCIAL_WORKER, household.person_id, REF, "role_not_permitted"),
        (Caller("user:a", "auditor", "council"), household.person_id, REF, "role_not_permitted"),
        (IG, uuid.uuid4(), REF, "unknown_person"),
        (IG, erased.person_id, REF, "unknown_person"),
    ]
    for caller, person_id, reference, reason in cases:
        with pytest.raises(AccessDeniedError) as denied:
            subject_access_export(session, store, policy, caller, person_id, reference)
        assert denied.value.reason == reason
    denials = entries(session, "authz.denied")
    assert [d.details["reason"] for d in denials] == [c[3] for c in cases]
    assert {d.details["requested"] for d in denials} == {"person.subject_access"}
    assert entries(session, "person.subject_access") == []
    assert decrypted == []


@pytest.mark.parametrize("bad", ["", "ab", "no digits here", "SAR 2026", "x" * 41, "../1"])
def test_a_reference_is_an_id_not_text(bad: str) -> None:
    with pytest.raises(InvalidReferenceError) as error:
        SarReference(bad)
    assert bad not in str(error.value) or not bad


def test_the_access_history_names_roles_and_agencies_not_staff(
    session: Session, store: PersonStore, policy: AccessPolicy, household: Household
) -> None:
    pid = household.person_id
    add_referral(session, [household.records["referral"]], "REF-2024-0042")
    view_person(
        session, store, policy, SOCIAL_WORKER, pid, Purpose("mash_triage", text=PURPOSE_TEXT)
    )
    glass = view_person(
        session, store, policy, POLICE, pid, Purpose(referral="REF-2024-0042"), BreakGlass(JUSTIFICATION)
    )  # fmt: skip
    with pytest.raises(AccessDeniedError):
        view_person(session, store, policy, IG, pid, Purpose(referral="REF-2024-0042"))
    first = subject_access_export(session, store, policy, IG, pid, REF)
    second = subject_access_export(session, store, policy, IG, pid, SarReference("SAR-2026-0118"))

    history = first.access_history
    assert [e.action for e in history] == ["person.view", "person.view"]  # the denial is left out
    sw, po = history
    assert sw.accessed_by == {"kind": "staff", "role": "social_worker", "agency": "social_care"}
    assert sw.purpose == {"code": "mash_triage"}
    assert sw.break_glass is False
    assert set(sw.groups["police"]) == {
        "identity",
        "identifiers",
        "contact",
        "details.warning_markers",
    }
    assert po.seq == glass.audit_seq and po.break_glass is True
    assert po.purpose == {"referral": "REF-2024-0042"}
    # The first export is in the second's history; neither lists itself.
    assert [e.action for e in second.access_history][-1] == "person.subject_access"
    assert second.access_history[-1].seq == first.audit_seq
    assert second.access_history[-1].purpose == {"sar_reference": REF.value}
    assert second.access_history[-1].accessed_by["role"] == "information_governance"
    document = json.dumps(second.to_dict())
    for secret in (SOCIAL_WORKER.user_id, POLICE.user_id, IG.user_id, PURPOSE_TEXT, JUSTIFICATION):
        assert secret not in document


def test_superseded_versions_are_included_and_marked(
    session: Session, store: PersonStore, policy: AccessPolicy, household: Household
) -> None:
    old = household.records["council"]
    store.supersede(session, [old])
    (new,) = store.add(
        session,
        [
            NewRecord(
                feed="council_feed",
                source_agency="council",
                source_record_id="council-v2",
                groups={"identity": {"value": "SECRET-council-identity-v2"}},
                index_fields={"family_name": "Synthetic"},
                person_id=household.person_id,
                version=2,
            )
        ],
    )
    result = subject_access_export(session, store, policy, IG, household.person_id, REF)
    council = {r.record_id: r for r in result.sources["council"]}
    assert set(council) == {old, new}
    assert council[old].current is False and council[old].superseded_at is not None
    assert council[new].current is True and council[new].version == 2
    assert council[new].groups == {"identity": {"value": "SECRET-council-identity-v2"}}


def test_referrals_are_listed_through_the_tables_that_link_them(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a referrals table (here a temporary one, shadowing any real one), referrals linked
    to the person directly or through a table joining them to its records are listed, with
    their non-binary columns only; without one, ``referrals`` is None."""
    metadata = MetaData()
    Table("persons", metadata, Column("id", Uuid, primary_key=True))
    Table("source_records", metadata, Column("id", Uuid, primary_key=True))
    Table(
        "referrals",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("reference", String),
        Column("status", String),
        Column("person_id", Uuid, ForeignKey("persons.id")),
        Column("concerns", LargeBinary),
        Column("body_hash", String),
        Column("decided_by", String),
    )
    Table(
        "referral_subjects",
        metadata,
        Column("referral_id", Uuid, ForeignKey("referrals.id")),
        Column("record_id", Uuid, ForeignKey("source_records.id")),
    )
    monkeypatch.setattr(sar_module, "Base", types.SimpleNamespace(metadata=metadata))
    session.execute(
        text(
            "CREATE TEMP TABLE referrals (id uuid PRIMARY KEY, reference text, status text, "
            "person_id uuid, concerns bytea, body_hash text, decided_by text) ON COMMIT DROP"
        )
    )
    session.execute(
        text(
            "CREATE TEMP TABLE referral_subjects (referral_id uuid, record_id uuid) ON COMMIT DROP"
        )
    )
    assert linked_referrals(session, household.person_id, []) == []
    direct, via, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    session.execute(
        text(
            "INSERT INTO referrals VALUES (:a, 'REF-1', 'triage', :p, '\\x00', 'h', 'user:x'), "
            "(:b, 'REF-2', 'decided', NULL, '\\x00', 'h', NULL), "
            "(:c, 'REF-3', 'new', :q, NULL, 'h', NULL)"
        ),
        {"a": direct, "b": via, "c": other, "p": household.person_id, "q": uuid.uuid4()},
    )
    session.execute(
        text("INSERT INTO referral_subjects VALUES (:b, :r), (:c, :s)"),
        {"b": via, "r": household.records["police"], "c": other, "s": uuid.uuid4()},
    )
    result = subject_access_export(session, store, policy, IG, household.person_id, REF)
    assert result.referrals is not None
    assert sorted(r["reference"] for r in result.referrals) == ["REF-1", "REF-2"]
    assert all(set(r) == {"id", "reference", "status", "person_id"} for r in result.referrals)
    (entry,) = entries(session, "person.subject_access")
    assert entry.details["referrals"] == 2

    monkeypatch.setattr(sar_module, "Base", types.SimpleNamespace(metadata=MetaData()))
    assert linked_referrals(session, household.person_id, []) is None


# -- property: any mask, any groups held ------------------------------------------------------

SLOTS = [(source, group) for source in SOURCES for group in source_fields(source)]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    granted=st.sets(st.sampled_from(SLOTS), min_size=1),
    held=st.sets(st.sampled_from(SLOTS), min_size=1),
)
def test_any_mask_over_any_records_decrypts_exactly_mask_and_held(
    session: Session,
    store: PersonStore,
    granted: set[tuple[str, str]],
    held: set[tuple[str, str]],
) -> None:
    lines = "".join(
        f"p, information_governance, *, {s}, {g}, subject_access, allow\n"
        for s, g in sorted(granted)
    )
    policy_text = BASELINE.policy.replace(
        "p, information_governance, *, *, *, subject_access, allow\n", lines
    )
    with session.begin_nested() as savepoint:
        publish(session, PolicyTexts(BASELINE.model, policy_text), actor="test:publisher")
        person_id = store.new_person(session)
        for source in SOURCES:
            groups = {g: {"value": f"V-{source}-{g}"} for s, g in held if s == source}
            if groups:
                store.add(
                    session,
                    [
                        NewRecord(
                            feed=f"{source}_feed",
                            source_agency=source,
                            source_record_id=str(uuid.uuid4()),
                            groups=groups,
                            index_fields={},
                            person_id=person_id,
                        )
                    ],
                )
        result = subject_access_export(session, store, AccessPolicy(), IG, person_id, REF)
        shown = {(s, g) for s, groups in result.included().items() for g in groups}
        assert shown == granted & held
        withheld = {(s, g) for s, groups in result.withheld.items() for g in groups}
        assert withheld == held - granted
        document = json.dumps(result.to_dict())
        for source, group in held:
            assert (f"V-{source}-{group}" in document) == ((source, group) in granted)
        savepoint.rollback()
