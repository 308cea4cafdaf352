"""Person search as a service: ranking on real PostgreSQL with real keys, tolerance of typos,
nicknames and swaps, masks per source, audited refusals, and no plaintext in the audit log."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.policy import AccessPolicy, Caller
from mash_hub.authz.versions import publish
from mash_hub.casework import search as searching
from mash_hub.casework.search import (
    InvalidQueryError,
    SearchDeniedError,
    SearchResult,
    search_persons,
    standardise_query,
)
from mash_hub.casework.view import Purpose
from mash_hub.crypto.envelope import FieldCipher
from mash_hub.matching.model import LinkageModel, shipped_model_path
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from tests.authz.conftest import BASELINE
from tests.persons.conftest import person_record

MODEL = LinkageModel.load(shipped_model_path())
PURPOSE = Purpose(code="mash_triage", text="Triage of contact C-1024 received today")
SOCIAL_WORKER = Caller("sw.1", "social_worker", "social_care")

ROBERT = {
    "given": "Robert",
    "family": "Kowalski",
    "dob": dt.date(2012, 3, 4),
    "postcode": "LS6 2QT",
    "nhs": "9434765919",
}
# Plaintext that must never reach the audit log (query values and the person's details).
PLAINTEXT = ("Robert", "robert", "Kowalski", "kowalski", "Bob", "2012-03-04", "LS6", "9434765919")

GIVEN = ["Amelia", "Oliver", "Zofia", "Ibrahim", "Grace", "Dylan", "Aisha", "Kacper", "Evie"]
FAMILY = ["Nowak", "Patel", "Hughes", "Begum", "O'Connor", "Walsh", "Ahmed", "Clarke", "Shaw"]
POSTCODES = ["LS6 2QT", "LS7 1AB", "LS8 3DE", "BD1 1AA", "M1 1AE"]


@dataclass
class Population:
    robert: uuid.UUID
    robert_records: dict[str, uuid.UUID]
    twin: uuid.UUID
    namesake: uuid.UUID
    people: dict[uuid.UUID, dict[str, object]]


def _add(
    session: Session, store: PersonStore, sources: tuple[str, ...], **values: object
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    person = store.new_person(session)
    records = {}
    for source in sources:
        (records[source],) = store.add(
            session,
            [person_record(f"{source}-{uuid.uuid4()}", person_id=person, feed=source, **values)],  # type: ignore[arg-type]
        )
    return person, records


@pytest.fixture
def population(session: Session, store: PersonStore) -> Population:
    """Robert (police and social care records), his twin, a namesake born elsewhen, a sister at
    the same address, and 60 other synthetic people."""
    robert, records = _add(session, store, ("police", "social_care"), **ROBERT)
    twin, _ = _add(session, store, ("police",), **{**ROBERT, "given": "Thomas", "nhs": None})
    namesake, _ = _add(
        session,
        store,
        ("council",),
        **{**ROBERT, "dob": dt.date(1980, 1, 1), "postcode": "M1 1AE", "nhs": None},
    )
    _add(
        session,
        store,
        ("council",),
        **{**ROBERT, "given": "Anna", "dob": dt.date(2015, 6, 20), "nhs": None},
    )
    people: dict[uuid.UUID, dict[str, object]] = {}
    rng = random.Random(5)
    for _ in range(60):
        values: dict[str, object] = {
            "given": rng.choice(GIVEN),
            "family": rng.choice(FAMILY),
            "dob": dt.date(2005, 1, 1) + dt.timedelta(days=rng.randrange(5000)),
            "postcode": rng.choice(POSTCODES),
            "nhs": None,
        }
        person, _ = _add(
            session, store, (rng.choice(("police", "council", "social_care")),), **values
        )
        people[person] = values
    return Population(robert, records, twin, namesake, people)


@pytest.fixture
def policy(session: Session) -> AccessPolicy:
    publish(session, BASELINE, actor="test:publisher")
    return AccessPolicy()


def run(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    caller: Caller = SOCIAL_WORKER,
    purpose: Purpose | None = PURPOSE,
    limit: int = 20,
    query: dict[str, str] | None = None,
    **fields: str,
) -> SearchResult:
    raw = {**(query or {}), **fields}
    return search_persons(
        session, store, policy, caller, standardise_query(raw), purpose, MODEL, limit=limit
    )


def ranked(result: SearchResult) -> list[uuid.UUID]:
    return [hit.person_id for hit in result.results]


@pytest.mark.parametrize(
    "fields",
    [
        {"given_name": "Robert", "family_name": "Kowalski", "date_of_birth": "04/03/2012"},
        {"given_name": "Robert", "family_name": "Kowalksi", "date_of_birth": "2012-03-04"},
        {"given_name": "Robret", "family_name": "Kowalski", "date_of_birth": "2012-03-04"},
        {"given_name": "Bob", "family_name": "Kowalski", "date_of_birth": "2012-03-04"},
        {"given_name": "Bob", "family_name": "Kowalski", "postcode": "ls6 2qt"},
        {"given_name": "Robert", "family_name": "Kowalski", "date_of_birth": "2012-04-03"},
        {"given_name": "Kowalski", "family_name": "Robert", "date_of_birth": "2012-03-04"},
        {"nhs_number": "943 476 5919"},
    ],
    ids=[
        "exact",
        "family-typo",
        "given-typo",
        "nickname",
        "nickname-no-dob",
        "day-month-swapped",
        "names-swapped",
        "nhs-number",
    ],
)
def test_robert_ranks_first(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    population: Population,
    fields: dict[str, str],
) -> None:
    result = run(session, store, policy, query=fields)
    assert ranked(result)[0] == population.robert
    best = result.results[0]
    assert best.record_id in population.robert_records.values()
    assert best.groups["identity"]["family_name"] == "Kowalski"
    assert best.records_matched == 2
    assert best.match_probability > 0.5
    others = [hit.match_weight for hit in result.results[1:]]
    assert all(weight < best.match_weight for weight in others)


def test_the_twin_is_not_offered_as_robert(
    session: Session, store: PersonStore, policy: AccessPolicy, population: Population
) -> None:
    result = run(
        session,
        store,
        policy,
        given_name="Robert",
        family_name="Kowalski",
        date_of_birth="2012-03-04",
    )
    assert ranked(result) == [population.robert]
    # The twin (same DOB and family name, clearly different first name) and the namesake
    # (same name, clearly different DOB: the shared name is what a family shares) score far
    # below MIN_WEIGHT.


def test_without_a_given_name_twins_tie(
    session: Session, store: PersonStore, policy: AccessPolicy, population: Population
) -> None:
    """Family name and date of birth alone cannot tell twins apart: both are offered, equal."""
    result = run(session, store, policy, family_name="Kowalski", date_of_birth="2012-03-04")
    top = {hit.person_id: hit.match_weight for hit in result.results[:2]}
    assert set(top) == {population.robert, population.twin}
    assert len(set(top.values())) == 1


def test_day_month_swap_is_explained(
    session: Session, store: PersonStore, policy: AccessPolicy, population: Population
) -> None:
    result = run(
        session,
        store,
        policy,
        given_name="Robert",
        family_name="Kowalski",
        date_of_birth="2012-04-03",
    )
    assert "date of birth day/month swapped" in result.results[0].explanation


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_one_letter_typo_in_the_family_name_still_finds_the_person(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    population: Population,
    data: st.DataObject,
) -> None:
    person = data.draw(st.sampled_from(sorted(population.people)))
    values = population.people[person]
    family = str(values["family"]).replace("'", "")
    at = data.draw(st.integers(1, len(family) - 1))
    kind = data.draw(st.sampled_from(["swap", "drop", "replace"]))
    if kind == "swap" and at < len(family) - 1:
        typo = family[:at] + family[at + 1] + family[at] + family[at + 2 :]
    elif kind == "drop":
        typo = family[:at] + family[at + 1 :]
    else:
        typo = family[:at] + data.draw(st.sampled_from("aeiouy")) + family[at + 1 :]
    dob = values["dob"]
    assert isinstance(dob, dt.date)
    result = run(
        session,
        store,
        policy,
        given_name=str(values["given"]),
        family_name=typo,
        date_of_birth=dob.strftime("%d/%m/%Y"),
    )
    assert ranked(result)[0] == person


def test_every_search_is_audited_without_plaintext(
    session: Session, store: PersonStore, policy: AccessPolicy, population: Population
) -> None:
    result = run(
        session,
        store,
        policy,
        given_name="Bob",
        family_name="Kowalski",
        date_of_birth="04/03/2012",
        postcode="LS6 2QT",
        nhs_number="9434765919",
    )
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "person.search")).one()
    assert entry.seq == result.audit_seq
    assert entry.actor == SOCIAL_WORKER.user_id
    assert entry.subject_id == str(result.search_id)
    details = entry.details
    assert details["results"] == [str(p) for p in ranked(result)]
    assert details["count"] == len(result.results) > 0
    assert details["query"]["fields"] == [
        "given_name", "family_name", "date_of_birth", "postcode", "nhs_number"
    ]  # fmt: skip
    assert all(isinstance(v, int) for _, v in details["query"]["terms"])
    assert details["purpose"] == {"code": "mash_triage"}
    assert set(details["purpose_text"]) == {"id", "ciphertext_sha256"}
    text = json.dumps(details)
    for value in PLAINTEXT:
        assert value not in text
    assert PURPOSE.text is not None and PURPOSE.text not in text


@pytest.mark.parametrize("role", ["auditor", "partner_agency", "admin"])
def test_roles_without_identity_access_are_refused_and_audited(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    population: Population,
    role: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[str] = []
    original = FieldCipher.decrypt_group

    def spy(self: FieldCipher, ciphertext: bytes, **where: object) -> object:
        opened.append(str(where["group"]))
        return original(self, ciphertext, **where)  # type: ignore[arg-type]

    monkeypatch.setattr(FieldCipher, "decrypt_group", spy)
    with pytest.raises(SearchDeniedError) as refused:
        run(session, store, policy, Caller("x", role, "council"), nhs_number="9434765919")
    assert refused.value.reason == "role_not_permitted"
    assert opened == []
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "authz.denied")).one()
    assert entry.details["requested"] == "person.search"
    assert entry.details["role"] == role
    assert not session.scalars(select(AuditEntry).where(AuditEntry.action == "person.search")).all()


def test_no_purpose_no_search(
    session: Session, store: PersonStore, policy: AccessPolicy, population: Population
) -> None:
    with pytest.raises(SearchDeniedError) as refused:
        run(session, store, policy, purpose=None, nhs_number="9434765919")
    assert refused.value.reason == "purpose_missing"
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "authz.denied")).one()
    assert entry.details["reason"] == "purpose_missing"


@pytest.fixture
def council_sees_only_council_identity(session: Session) -> AccessPolicy:
    """A policy where council officers may read identity and identifiers of council records
    only (no contact, nothing from police or social care)."""
    text = BASELINE.policy.replace(
        "g, council_officer, identity_reader, *",
        "p, council_officer, *, council, identity, read, allow\n"
        "p, council_officer, *, council, identifiers, read, allow",
    )
    assert text != BASELINE.policy
    publish(session, PolicyTexts(model=BASELINE.model, policy=text), actor="test:publisher")
    return AccessPolicy()


def test_ranking_decrypts_only_identity_groups_the_caller_may_see(
    session: Session,
    store: PersonStore,
    council_sees_only_council_identity: AccessPolicy,
    population: Population,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[tuple[str, str]] = []
    rows = session.execute(select(SourceRecord.id, SourceRecord.source_agency))
    sources = {str(row.id): row.source_agency for row in rows}
    original = FieldCipher.decrypt_group

    def spy(self: FieldCipher, ciphertext: bytes, **where: object) -> object:
        opened.append((sources[str(where["row_id"])], str(where["group"])))
        return original(self, ciphertext, **where)  # type: ignore[arg-type]

    monkeypatch.setattr(FieldCipher, "decrypt_group", spy)
    council = Caller("co.1", "council_officer", "council")
    result = run(
        session,
        store,
        council_sees_only_council_identity,
        council,
        given_name="Robert",
        family_name="Kowalski",
    )
    assert opened
    assert {source for source, _ in opened} == {"council"}
    assert {group for _, group in opened} <= {"identity", "identifiers"}
    # Robert has no council record: the council officer finds his namesake, not him.
    assert population.robert not in ranked(result)
    assert population.namesake in ranked(result)
    for hit in result.results:
        assert hit.source == "council"
        assert set(hit.groups) <= {"identity", "identifiers"}


def test_limit_and_order(
    session: Session, store: PersonStore, policy: AccessPolicy, population: Population
) -> None:
    full = run(session, store, policy, family_name="Kowalski", postcode="LS6 2QT")
    assert len(full.results) >= 2
    weights = [hit.match_weight for hit in full.results]
    assert weights == sorted(weights, reverse=True)
    one = run(session, store, policy, limit=1, family_name="Kowalski", postcode="LS6 2QT")
    assert ranked(one) == ranked(full)[:1]
    with pytest.raises(ValueError, match="limit"):
        run(session, store, policy, limit=101, family_name="Kowalski", postcode="LS6 2QT")


def test_too_broad_queries_are_refused_before_decrypting(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    population: Population,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(searching, "MAX_CANDIDATES", 2)
    with pytest.raises(searching.QueryTooBroadError):
        run(session, store, policy, family_name="Kowalski", postcode="LS6 2QT")
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "person.search")).one()
    assert entry.details["outcome"] == "too_broad"
    assert entry.details["results"] == []


# -- the query ------------------------------------------------------------------------------


def faults(raw: dict[str, object]) -> list[tuple[str | None, str]]:
    with pytest.raises(InvalidQueryError) as invalid:
        standardise_query(raw)
    return [(f.field, f.code) for f in invalid.value.faults]


def test_query_faults_name_the_field_and_the_reason() -> None:
    assert faults({}) == [(None, "query_empty")]
    assert faults({"given_name": "  "}) == [(None, "query_empty")]
    assert faults({"family_name": "Kowalski"}) == [(None, "query_too_broad")]
    assert faults({"nhs_number": "943 476 5918"}) == [("nhs_number", "nhs_number_check_digit")]
    assert faults({"date_of_birth": "31/02/2012", "family_name": "--"}) == [
        ("family_name", "name_empty"),
        ("date_of_birth", "date_impossible"),
    ]
    assert faults({"date_of_birth": "2999-01-01", "postcode": "XX"}) == [
        ("date_of_birth", "date_in_future"),
        ("postcode", "postcode_invalid"),
    ]
    assert faults({"surname": "Kowalski", "upn": "B80120000500X"}) == [
        ("<unknown>", "unknown_field"),
        ("upn", "upn_check_letter"),
    ]
    assert faults({"pnc_id": 12, "given_name": "x" * 101}) == [
        ("given_name", "too_long"),
        ("pnc_id", "not_text"),
    ]
    query = standardise_query(
        {"given_name": "ROBERT", "family_name": "kowalski", "date_of_birth": "4 March 2012"}
    )
    assert query.fields() == ["given_name", "family_name", "date_of_birth"]
    assert query.date_of_birth == "2012-03-04"
    assert standardise_query({"pnc_id": "12/345g"}).pnc_id == "12/0000345G"


@given(
    raw=st.dictionaries(
        st.sampled_from([*searching.SEARCH_FIELDS, "surname"]),
        st.text(min_size=1, max_size=30).map(lambda t: f"Q{t}Z"),
        min_size=1,
    )
)
def test_query_faults_never_echo_a_value(raw: dict[str, str]) -> None:
    try:
        standardise_query(raw)
    except InvalidQueryError as invalid:
        rendered = str(invalid) + repr(invalid.faults)
        for value in raw.values():
            assert value not in rendered


def test_swapped_day_month_terms() -> None:
    assert searching._swapped_day_month("2012-03-04") == "2012-04-03"
    assert searching._swapped_day_month("2012-03-13") is None
    assert searching._swapped_day_month("2012-05-05") is None


def test_query_terms_cover_nicknames_and_swaps(store: PersonStore) -> None:
    """What each tolerance looks up: the formal name of a nickname, the swapped date, and the
    given/family-swapped name (joined as the blind index joins compound keys)."""
    indexer = store.indexer
    query = standardise_query(
        {"given_name": "Bob", "family_name": "Kowalski", "date_of_birth": "04/03/2012"}
    )
    terms = set(searching.query_terms(indexer, query))
    assert indexer.term("given_family_token", "robert\x1fkowalski") in terms
    assert indexer.term("dob", "2012-04-03") in terms
    assert indexer.term("dob", "2012-03-04") in terms
    assert indexer.term("given_family_token", "kowalski\x1fbob") in terms
    assert indexer.term("given_token", "bob") not in terms  # single-name indexes: too coarse
