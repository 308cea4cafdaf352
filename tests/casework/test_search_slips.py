"""Search forgives the slips officers make (issue 15): one letter dropped, added, changed or
swapped in the given or the family name, and short forms both ways, with or without a date
of birth; the right person still ranks first, above a twin and a sibling."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy
from mash_hub.casework import search as searching
from mash_hub.casework.search import standardise_query
from mash_hub.persons.store import PersonStore
from tests.casework.test_search import _add, policy, ranked, run

__all__ = ["policy"]


@dataclass
class Officers:
    nicola: uuid.UUID
    isaac: uuid.UUID
    sandy: uuid.UUID
    alexandra: uuid.UUID
    twin: uuid.UUID
    ivy: uuid.UUID
    wei: uuid.UUID


def _person(
    session: Session, store: PersonStore, given: str, family: str, dob: dt.date
) -> uuid.UUID:
    person, _ = _add(
        session,
        store,
        ("social_care",),
        given=given,
        family=family,
        dob=dob,
        postcode="LS6 2QT",
        nhs=None,
    )
    return person


@pytest.fixture
def officers(session: Session, store: PersonStore) -> Officers:
    """The people of the issue's examples, each with the relatives a slip could be taken for."""
    nicola = _person(session, store, "Nicola", "Woodford", dt.date(2011, 5, 17))
    twin = _person(session, store, "Hannah", "Woodford", dt.date(2011, 5, 17))
    _person(session, store, "Nicole", "Woodward", dt.date(2009, 2, 1))
    _person(session, store, "Nicola", "Wood", dt.date(2013, 8, 30))
    isaac = _person(session, store, "Isaac", "Lawrence", dt.date(2014, 9, 2))
    _person(session, store, "Isabel", "Lawrence", dt.date(2016, 1, 12))
    _person(session, store, "Zachary", "Lawson", dt.date(2014, 9, 2))
    sandy = _person(session, store, "Sandy", "Mitchell", dt.date(2010, 7, 7))
    alexandra = _person(session, store, "Alexandra", "Okafor", dt.date(2012, 12, 3))
    _person(session, store, "Alexander", "Mitchell", dt.date(1985, 3, 3))
    ivy = _person(session, store, "Ivy", "Fox", dt.date(2017, 4, 4))
    wei = _person(session, store, "Wei", "Li", dt.date(2015, 10, 1))
    _person(session, store, "Wei", "Liu", dt.date(1990, 6, 6))
    return Officers(nicola, isaac, sandy, alexandra, twin, ivy, wei)


@pytest.mark.parametrize(
    ("query", "who"),
    [
        ({"given_name": "Nicola", "family_name": "Woodfrd"}, "nicola"),
        ({"given_name": "Isaac", "family_name": "Lawrance"}, "isaac"),
        ({"given_name": "Zac", "family_name": "Lawrence", "date_of_birth": "02/09/2014"}, "isaac"),
        ({"given_name": "Zac", "family_name": "Lawrence"}, "isaac"),
        ({"given_name": "Nicloa", "family_name": "Woodford"}, "nicola"),
        ({"given_name": "Nicola", "family_name": "Woodfords"}, "nicola"),
        (
            {"given_name": "Nicola", "family_name": "Woodfrd", "date_of_birth": "17/05/2011"},
            "nicola",
        ),
        ({"given_name": "Isac", "family_name": "Lawrence"}, "isaac"),
        ({"given_name": "Alexandra", "family_name": "Mitchell"}, "sandy"),
        (
            {"given_name": "Alexandra", "family_name": "Mitchell", "date_of_birth": "7/7/2010"},
            "sandy",
        ),
        ({"given_name": "Sandy", "family_name": "Okafor"}, "alexandra"),
        (
            {"given_name": "Sasha", "family_name": "Okafor", "date_of_birth": "3/12/2012"},
            "alexandra",
        ),
        ({"given_name": "Iy", "family_name": "Fox"}, "ivy"),
        ({"given_name": "Wei", "family_name": "Il"}, "wei"),
    ],
    ids=[
        "letter-dropped-no-dob",
        "letter-changed-no-dob",
        "short-form-with-dob",
        "short-form-no-dob",
        "given-transposed-no-dob",
        "letter-added-no-dob",
        "letter-dropped-with-dob-above-twin",
        "given-letter-dropped-no-dob",
        "formal-finds-short-form-no-dob",
        "formal-finds-short-form-with-dob",
        "short-form-finds-formal-no-dob",
        "uk-short-form-finds-formal-with-dob",
        "short-given-name-slip-no-dob",
        "two-letter-family-name-transposed-no-dob",
    ],
)
def test_one_slip_still_ranks_the_person_first(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    officers: Officers,
    query: dict[str, str],
    who: str,
) -> None:
    result = run(session, store, policy, query=query)
    assert ranked(result), "no candidate found"
    assert ranked(result)[0] == getattr(officers, who)
    others = [hit.match_weight for hit in result.results[1:]]
    assert all(weight < result.results[0].match_weight for weight in others)


def test_two_slips_are_not_forgiven_without_other_evidence(
    session: Session, store: PersonStore, policy: AccessPolicy, officers: Officers
) -> None:
    result = run(session, store, policy, given_name="Nicloa", family_name="Woodfrd")
    assert officers.nicola not in ranked(result)


def test_a_names_only_query_still_leaves_out_two_different_names(
    session: Session, store: PersonStore, policy: AccessPolicy, officers: Officers
) -> None:
    """The lower floor of a names-only query keeps one slip, not a different person: Hannah
    Woodford is found by the family name's exact pair with her own first name only."""
    result = run(session, store, policy, given_name="Nicola", family_name="Woodfrd")
    assert ranked(result)[0] == officers.nicola
    assert officers.twin not in ranked(result)
    assert all(hit.match_weight >= searching.NAMES_ONLY_MIN_WEIGHT for hit in result.results)


def test_the_deletion_index_is_asked_only_without_a_date_of_birth(store: PersonStore) -> None:
    deletion = store.indexer.index_id("name_deletion_pair")
    names = {"given_name": "Nicola", "family_name": "Woodfrd"}
    without = searching.query_terms(store.indexer, standardise_query(names))
    with_dob = searching.query_terms(
        store.indexer, standardise_query({**names, "date_of_birth": "17/05/2011"})
    )
    assert any(term.index_id == deletion for term in without)
    assert not any(term.index_id == deletion for term in with_dob)
