"""The encrypted store: round trips, binding of ciphertexts to their place, search, erasure."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditEntry
from mash_hub.crypto.envelope import FieldCipher
from mash_hub.crypto.errors import DecryptionError
from mash_hub.crypto.models import DataKeyRow
from mash_hub.persons.models import BlindIndexEntry, SourceRecord
from mash_hub.persons.store import IDENTIFIERS, IDENTITY, NewRecord, PersonStore
from tests.persons.conftest import person_record


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The groups decrypted during the test, in order (a spy on ``decrypt_group``)."""
    groups: list[str] = []
    original = FieldCipher.decrypt_group

    def spy(
        self: FieldCipher, ciphertext: bytes, *, table: str, group: str, row_id: object
    ) -> object:
        groups.append(group)
        return original(self, ciphertext, table=table, group=group, row_id=row_id)  # type: ignore[arg-type]

    monkeypatch.setattr(FieldCipher, "decrypt_group", spy)
    return groups


def test_round_trip_decrypts_only_the_groups_asked_for(
    session: Session, store: PersonStore, opened: list[str]
) -> None:
    [record_id] = store.add(session, [person_record("SC-1")])
    got = store.read(session, [record_id], {IDENTITY})[record_id]
    assert got.groups == {
        IDENTITY: {
            "given_names": ["Amelia"],
            "family_name": "Kowalczyk",
            "date_of_birth": "2014-03-09",
            "sex": "F",
        }
    }
    assert opened == [IDENTITY]
    everything = store.read(
        session, [record_id], {IDENTITY, IDENTIFIERS, "contact", "details.case"}
    )
    assert everything[record_id].groups["contact"]["addresses"][0]["postcode"] == "LS6 2QT"
    assert store.read(session, [record_id], set())[record_id].groups == {}


def _swap(session: Session, sql: str, **params: object) -> None:
    session.execute(text(sql), params)
    session.expire_all()


def test_ciphertext_moved_to_another_row_fails(session: Session, store: PersonStore) -> None:
    a, b = store.add(session, [person_record("SC-1"), person_record("SC-2", given="Zofia")])
    _swap(
        session,
        "UPDATE record_field_groups SET ciphertext = (SELECT ciphertext FROM record_field_groups "
        "WHERE record_id = :a AND group_name = 'identity') WHERE record_id = :b AND group_name = 'identity'",
        a=a,
        b=b,
    )
    with pytest.raises(DecryptionError) as caught:
        store.read(session, [b], {IDENTITY})
    assert "Zofia" not in str(caught.value) and "Amelia" not in str(caught.value)


def test_ciphertext_moved_to_another_group_fails(session: Session, store: PersonStore) -> None:
    [a] = store.add(session, [person_record("SC-1")])
    _swap(
        session,
        "UPDATE record_field_groups SET ciphertext = (SELECT ciphertext FROM record_field_groups "
        "WHERE record_id = :a AND group_name = 'identity') WHERE record_id = :a AND group_name = 'identifiers'",
        a=a,
    )
    with pytest.raises(DecryptionError):
        store.read(session, [a], {IDENTIFIERS})


def test_wrapped_key_moved_to_another_record_fails(session: Session, store: PersonStore) -> None:
    a, b = store.add(session, [person_record("SC-1"), person_record("SC-2")])
    _swap(
        session,
        "UPDATE data_keys SET wrapped = (SELECT wrapped FROM data_keys WHERE owner_id = :a) WHERE owner_id = :b",
        a=a,
        b=b,
    )
    with pytest.raises(DecryptionError):
        store.read(session, [b], {IDENTITY})


@pytest.mark.parametrize("position", [0, 1, 13, -1])
def test_tampered_ciphertext_fails(session: Session, store: PersonStore, position: int) -> None:
    [a] = store.add(session, [person_record("SC-1")])
    blob = bytearray(
        session.scalar(
            text(
                "SELECT ciphertext FROM record_field_groups WHERE record_id = :a AND group_name = 'identity'"
            ),
            {"a": a},
        )
    )
    blob[position] ^= 0x01
    _swap(
        session,
        "UPDATE record_field_groups SET ciphertext = :c WHERE record_id = :a AND group_name = 'identity'",
        c=bytes(blob),
        a=a,
    )
    with pytest.raises(DecryptionError):
        store.read(session, [a], {IDENTITY})


def test_blind_indexes_find_records_without_decrypting(
    session: Session, store: PersonStore
) -> None:
    a, b, c = store.add(
        session,
        [
            person_record("SC-1"),
            person_record("SC-2", given="Bartosz", dob=dt.date(2011, 7, 1), nhs="4010232137"),
            person_record("SC-3", given="Amelia", family="Smyth", nhs=None),
        ],
    )
    by_nhs = store.indexer.lookup("nhs_number", "943 476 5919")
    assert a in store.candidates(session, by_nhs)
    assert b not in store.candidates(session, by_nhs)
    # Smith and Smyth share a phonetic code; the compound with the date of birth narrows it.
    query = store.indexer.query_terms(
        {"family_name": "Smith", "date_of_birth": dt.date(2014, 3, 9)},
        indexes={"family_phonetic_dob"},
    )
    assert store.candidates(session, query) == {c}
    both = store.indexer.query_terms(
        {"given_names": ["Amelia"], "date_of_birth": dt.date(2014, 3, 9)},
        indexes={"given_token", "dob"},
    )
    assert store.candidates(session, both, require_all=True) == {a, c}


def test_erasure_shreds_keys_and_index_but_keeps_the_audit_entry(
    session: Session, store: PersonStore
) -> None:
    person = store.new_person(session)
    other = store.new_person(session)
    mine = store.add(
        session,
        [
            person_record("SC-1", person_id=person),
            person_record("PN-9", person_id=person, feed="police"),
        ],
    )
    [theirs] = store.add(
        session, [person_record("SC-2", given="Zofia", nhs="4010232137", person_id=other)]
    )

    report = store.erase_person(session, person, actor="cli:test", reason="ERASE-2026-001")
    assert (
        report.records == 2 and report.data_keys_destroyed == 2 and report.index_entries_removed > 0
    )

    assert (
        session.scalar(
            select(func.count()).select_from(DataKeyRow).where(DataKeyRow.owner_id.in_(mine))
        )
        == 0
    )
    assert (
        session.scalar(
            select(func.count())
            .select_from(BlindIndexEntry)
            .where(BlindIndexEntry.record_id.in_(mine))
        )
        == 0
    )
    assert store.candidates(session, store.indexer.lookup("nhs_number", "9434765919")) == set()
    assert all(r.groups == {} for r in store.read(session, mine, {IDENTITY, IDENTIFIERS}).values())
    tombstones = session.scalars(select(SourceRecord).where(SourceRecord.id.in_(mine))).all()
    assert all(t.erased_at is not None and not t.is_current for t in tombstones)
    # Somebody else's records are untouched.
    assert store.read(session, [theirs], {IDENTITY})[theirs].groups[IDENTITY]["given_names"] == [
        "Zofia"
    ]
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "person.erase")).one()
    assert entry.subject_id == str(person)
    assert entry.details["data_keys_destroyed"] == 2


def test_no_records_can_be_added_to_an_erased_person(session: Session, store: PersonStore) -> None:
    person = store.new_person(session)
    store.erase_person(session, person, actor="cli:test", reason="ERASE-2")
    with pytest.raises(LookupError, match="erased"):
        store.add(session, [person_record("SC-7", person_id=person)])
    with pytest.raises(LookupError, match="does not exist"):
        store.add(session, [person_record("SC-8", person_id=uuid.uuid4())])


def test_erasing_an_unknown_person_is_a_clear_error(session: Session, store: PersonStore) -> None:
    with pytest.raises(LookupError, match="no person"):
        store.erase_person(session, uuid.uuid4(), actor="cli:test", reason="x")


def test_unknown_field_group_is_refused(session: Session, store: PersonStore) -> None:
    bad = NewRecord("police", "police", "1", {"secret_stuff": {"a": "b"}}, {})
    with pytest.raises(ValueError, match="unknown field group"):
        store.add(session, [bad])


unicode_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=0, max_size=60)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(given_name=unicode_text, family=unicode_text, notes=st.lists(unicode_text, max_size=3))
def test_arbitrary_unicode_round_trips_through_the_store(
    session: Session, store: PersonStore, given_name: str, family: str, notes: list[str]
) -> None:
    groups: dict[str, dict[str, object]] = {
        IDENTITY: {"given_names": [given_name], "family_name": family},
        "details.notes": {"notes": notes},
    }
    record = NewRecord(
        "council",
        "council",
        str(uuid.uuid4()),
        groups,
        {"given_names": [given_name], "family_name": family},
    )
    [rid] = store.add(session, [record])
    assert store.read(session, [rid], set(groups))[rid].groups == groups


def test_erasure_shreds_reviewers_reasons_about_the_persons_records(
    session: Session, store: PersonStore
) -> None:
    from mash_hub.matching.models import LinkDecision  # noqa: PLC0415

    person = store.new_person(session)
    mine, theirs = store.add(
        session, [person_record("SC-1", person_id=person), person_record("SC-2", given="Zofia")]
    )
    decision_id = uuid.uuid4()
    issued = store.keys.issue(decision_id)
    store.keys.save(session, [issued.row])
    session.add(
        LinkDecision(
            id=decision_id,
            record_id_l=mine,
            record_id_r=theirs,
            decision="different",
            reason_code="agency_confirmed",
            reason_ciphertext=issued.cipher.encrypt_group(
                {"text": "the mother says these are different children"},
                table="link_decisions",
                group="reason",
                row_id=decision_id,
            ),
            actor="reviewer:a",
        )
    )
    session.flush()
    store.erase_person(session, person, actor="cli:test", reason="ERASE-3")
    assert store.keys.ciphers(session, [decision_id]) == {}


def test_stream_groups_reads_every_current_record_as_read_does(
    session: Session, store: PersonStore, opened: list[str]
) -> None:
    person = store.new_person(session)
    ids = store.add(
        session,
        [
            person_record(f"SC-{i}", given=name, person_id=person if i % 2 else None)
            for i, name in enumerate(["Amelia", "Zofia", "Bartosz", "Łukasz", "Mary-Jane"])
        ],
    )
    [old] = store.add(session, [person_record("SC-old")])
    store.supersede(session, [old])
    erased_person = store.new_person(session)
    [erased] = store.add(session, [person_record("SC-gone", person_id=erased_person)])
    store.erase_person(session, erased_person, actor="cli:test", reason="ERASE-4")
    batches = list(store.stream_groups(session, [IDENTITY, "details.case"], batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    streamed = [record for batch in batches for record in batch]
    assert [r.id for r in streamed] == sorted(ids, key=str)  # current only, in id order
    assert sorted(opened) == sorted([IDENTITY, "details.case"] * len(ids))
    assert {r.id: r for r in streamed} == store.read(session, ids, {IDENTITY, "details.case"})
    assert {r.person_id for r in streamed} == {person, None}
    assert old not in {r.id for r in streamed} and erased not in {r.id for r in streamed}


def test_stream_groups_leaves_shredded_records_empty_and_refuses_tampering(
    session: Session, store: PersonStore
) -> None:
    a, b = store.add(session, [person_record("SC-1"), person_record("SC-2", given="Zofia")])
    store.keys.shred(session, [a])
    [first, second] = [r for batch in store.stream_groups(session, [IDENTITY]) for r in batch]
    by_id = {first.id: first, second.id: second}
    assert by_id[a].groups == {}
    assert by_id[b].groups[IDENTITY]["given_names"] == ["Zofia"]
    with pytest.raises(ValueError, match="unknown field group"):
        next(store.stream_groups(session, ["secret_stuff"]))
    _swap(
        session,
        "UPDATE record_field_groups SET ciphertext = (SELECT ciphertext FROM record_field_groups "
        "WHERE record_id = :a AND group_name = 'identity') WHERE record_id = :b AND group_name = 'identity'",
        a=a,
        b=b,
    )
    with pytest.raises(DecryptionError) as caught:
        list(store.stream_groups(session, [IDENTITY]))
    assert "Zofia" not in str(caught.value) and "Amelia" not in str(caught.value)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch_size=st.integers(1, 7), count=st.integers(0, 6))
def test_stream_groups_batches_cover_each_record_once(
    session: Session, store: PersonStore, batch_size: int, count: int
) -> None:
    ids = store.add(session, [person_record(f"H-{uuid.uuid4()}") for _ in range(count)])
    batches = list(store.stream_groups(session, [IDENTIFIERS], batch_size=batch_size))
    assert all(0 < len(batch) <= batch_size for batch in batches)
    streamed = [r.id for batch in batches for r in batch]
    assert len(streamed) == len(set(streamed))
    assert set(ids) <= set(streamed)
    assert streamed == sorted(streamed, key=str)


def test_read_takes_more_ids_than_postgres_has_bind_parameters(
    session: Session, store: PersonStore
) -> None:
    """An incremental batch against a 1M-record index asked for 104,216 candidate records at
    once; an IN list stops at 65,535 parameters (regression)."""
    (known,) = store.add(session, [person_record("SR-many-ids")])
    many = [uuid.uuid4() for _ in range(70_000)] + [known]
    found = store.read(session, many, [IDENTITY])
    assert set(found) == {known} and found[known].groups[IDENTITY]


@pytest.mark.parametrize("group", ["details.tab\there", "details.back\\slash", "details.line\nend"])
def test_group_names_with_copy_control_characters_round_trip(
    session: Session, store: PersonStore, group: str
) -> None:
    """Records are written as COPY text formatted where they are prepared: a group name
    holding COPY's delimiter, escape or row separator is escaped, not split or lost."""
    record = person_record("SC-COPY")
    groups = {**record.groups, group: {"note": "kept\tas\\is\n"}}
    [rid] = store.add(session, [replace(record, groups=groups)])
    assert store.read(session, [rid], {group})[rid].groups == {group: {"note": "kept\tas\\is\n"}}


def test_stored_index_rows_are_the_indexers_terms(session: Session, store: PersonStore) -> None:
    """The bulk path (terms as plain tuples, formatted for COPY) stores exactly the terms the
    indexer gives for the record, each once."""
    record = person_record("SC-TERMS", given="Anna-Maria", family="O'Brien Smith")
    [rid] = store.add(session, [record])
    stored = session.execute(
        select(BlindIndexEntry.index_id, BlindIndexEntry.value).where(
            BlindIndexEntry.record_id == rid
        )
    ).all()
    expected = store.indexer.terms_for(record.index_fields)
    assert sorted(tuple(row) for row in stored) == sorted(tuple(term) for term in expected)
    assert len(expected) == len(set(expected)) > 40
