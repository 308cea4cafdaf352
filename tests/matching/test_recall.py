"""Recall changes (issue #5): a date of birth with a day or month one out is close, not a
household difference; same address + birth year is a candidate pair. Twins, siblings and
namesakes still stay apart. Scored with the shipped model, levels checked against DuckDB."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mash_hub.matching import comparisons as comp
from mash_hub.matching.cluster import cluster
from mash_hub.matching.duck import connect
from mash_hub.matching.features import record_features
from mash_hub.matching.model import LinkageModel, ScoredPair, scored_pair, shipped_model_path
from mash_hub.matching.scorer import FUNCTIONS, blocked_pairs, compile_condition
from tests.matching.test_scorer import duck_levels

MODEL = LinkageModel.load(shipped_model_path())
DOB_INDEX = [c.name for c in comp.COMPARISONS].index("date_of_birth")
DOB = comp.COMPARISONS[DOB_INDEX]


@pytest.fixture(scope="module")
def duck() -> Iterator[Any]:
    con = connect()
    yield con
    con.close()


def person(
    rid: str,
    given: str,
    family: str,
    dob: str,
    *,
    postcode: str | None = "LS6 2QT",
    line1: str = "12 Oak Road",
    sex: str = "F",
    middles: tuple[str, ...] = (),
) -> dict[str, Any]:
    addresses = [{"postcode": postcode, "line1": line1, "current": True}] if postcode else []
    groups: dict[str, dict[str, Any]] = {
        "identity": {
            "given_names": [given, *middles],
            "family_name": family,
            "date_of_birth": dob,
            "sex": sex,
        },
        "identifiers": {},
        "contact": {"addresses": addresses},
    }
    return record_features(rid, "test", groups)


def score(a: Mapping[str, Any], b: Mapping[str, Any]) -> ScoredPair:
    return scored_pair(MODEL.scorer().score(a, b))


def linked(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Cluster ids of records, scoring every pair the blocking rules admit."""
    pairs = [score(a, b) for a, b in blocked_pairs(rows, [])]
    by_id = {r["unique_id"]: r for r in rows}
    return [c for c in cluster(by_id, pairs, MODEL.thresholds).clusters if len(c) > 1]


# -- the SQL ---------------------------------------------------------------------------------

texts = st.text(st.sampled_from([*"0129-ab"]), max_size=6)


@settings(max_examples=200)
@given(a=texts | st.none(), b=st.sampled_from(["-", "1", "ab"]), c=st.sampled_from(["", "x"]))
def test_replace_is_duckdbs(duck: Any, a: str | None, b: str, c: str) -> None:
    expected = duck.execute("SELECT replace(?, ?, ?)", [a, b, c]).fetchall()[0][0]
    assert FUNCTIONS["replace"](a, b, c) == expected


dates = st.dates(datetime.date(1930, 1, 1), datetime.date(2024, 12, 31))


@settings(max_examples=300)
@given(
    first=dates,
    shift=st.sampled_from([0, 1, -1, 9, 28, 30, 31, 365, -365]) | st.integers(-400, 400),
    month=st.booleans(),
)
def test_dob_levels_are_duckdbs_case(
    duck: Any, first: datetime.date, shift: int, month: bool
) -> None:
    """Every DOB level, near included, as DuckDB evaluates the comparison's CASE."""
    second = first + datetime.timedelta(days=shift)
    if month and first.day <= 28:
        second = first.replace(month=first.month % 12 + 1)
    a = person("a", "Freya", "Johnston", first.isoformat())
    b = person("b", "Freya", "Johnston", second.isoformat())
    expected = duck_levels(duck, [(a, b)])[0][DOB_INDEX]
    assert score(a, b).levels["date_of_birth"] == expected


@pytest.mark.parametrize(
    ("left", "right", "near"),
    [
        ("1991-03-10", "1991-03-09", True),  # day one out, two digits change
        ("2021-09-24", "2021-10-24", True),  # month one out
        ("2005-06-19", "2005-06-20", True),
        ("1991-03-31", "1991-04-01", False),  # across a month end: not caught
        ("1991-03-10", "1991-03-12", False),
        ("1991-03-10", "1992-03-09", False),
        ("1991-03-10", "1991-05-10", False),
    ],
)
def test_near_level(left: str, right: str, near: bool) -> None:
    condition = compile_condition(DOB.level("near").sql)
    a, b = person("a", "X", "Y", left), person("b", "X", "Y", right)
    assert bool(condition(a, b)) is near


# -- behaviour under the shipped model --------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"), [("1991-03-10", "1991-03-09"), ("2021-09-24", "2021-10-24")]
)
def test_same_name_and_address_with_a_day_or_month_out_links(left: str, right: str) -> None:
    """Before, these dates fell to "same year only", which made the surname and address
    count as household evidence (nothing): the pair scored about -6 and was rejected."""
    a = person("a", "Freya", "Johnston", left)
    b = person("b", "Freya", "Johnston", right)
    pair = score(a, b)
    assert pair.levels["date_of_birth"] == "near"
    assert pair.levels["family_name"] == "exact"
    assert pair.levels["address"] == "same_address"
    assert pair.match_weight >= MODEL.thresholds.auto
    assert linked([a, b]) == [["a", "b"]]


def test_swapped_names_at_one_address_with_a_dob_slip_are_compared() -> None:
    """Name order swapped and a day out: no DOB, name or phonetic block holds; the address +
    birth year rule and the either-order name rule each make it a candidate pair."""
    a = person("a", "Finn", "Andrews", "1995-04-30", sex="M")
    b = person("b", "Andrews", "Finn", "1995-04-29", sex="M")
    rescuers = {("postcode", "premise", "dob_year"), ("names_phon_pair", "dob_year")}
    holding = {
        c for c in comp.PREDICTION_BLOCKING if all(a[x] is not None and a[x] == b[x] for x in c)
    }
    assert holding == rescuers
    assert [(x["unique_id"], y["unique_id"]) for x, y in blocked_pairs([a, b], [])] == [("a", "b")]
    pair = score(a, b)
    assert pair.levels["given_name"] == "swapped"
    assert pair.levels["date_of_birth"] == "near"


@given(
    names=st.sampled_from(
        [("Lily", "Mason"), ("Aisha", "Zara"), ("Hassan", "Omar"), ("Jack", "Oliver")]
    ),
    days=st.sampled_from([0, 1, 30, 31]),
)
def test_household_members_born_close_together_stay_apart(
    names: tuple[str, str], days: int
) -> None:
    """Twins (same day, or either side of midnight) and siblings at one address with
    clearly different first names: never one person, whatever the new rule admits."""
    born = datetime.date(2012, 5, 14)
    a = person("a", names[0], "Khan", born.isoformat())
    b = person("b", names[1], "Khan", (born + datetime.timedelta(days=days)).isoformat())
    pair = score(a, b)
    assert pair.match_weight < MODEL.thresholds.review
    assert linked([a, b]) == []


def test_namesakes_in_one_street_born_the_same_year_stay_apart() -> None:
    """Same name and postcode, different houses, birth dates months apart: compared now, and
    not linked."""
    a = person("a", "James", "Smith", "1990-02-11", line1="3 Oak Road", sex="M")
    b = person("b", "James", "Smith", "1990-08-23", line1="41 Oak Road", sex="M")
    assert blocked_pairs([a, b], [])
    assert score(a, b).match_weight < MODEL.thresholds.auto
    assert linked([a, b]) == []


# -- session 3: middle names, postcode area --------------------------------------------------


def test_different_middle_names_count_against_a_namesake() -> None:
    """Same name and date of birth, different towns: different middle names make them two
    people; a shared middle name (even recorded as the other's first name) counts for."""
    a = person("a", "Finlay", "Williams", "1990-10-24", postcode="LS25 7NY", middles=("James",))
    b = person("b", "Finlay", "Williams", "1990-10-24", postcode="HU9 7GF", middles=("Oscar",))
    c = person("c", "Finlay", "Williams", "1990-10-24", postcode="HU9 7GF", middles=("James",))
    d = person("d", "James", "Williams", "1990-10-24", postcode="HU9 7GF", middles=("Finlay",))
    e = person("e", "Finlay", "Williams", "1990-10-24", postcode="HU9 7GF")
    assert score(a, b).levels["middle_names"] == "else"
    # Rare names (no frequencies: every name at the floor) and the same date of birth: a
    # person may look, but it is not linked automatically.
    assert score(a, b).match_weight < MODEL.thresholds.auto
    assert linked([a, b]) == []
    assert score(a, c).levels["middle_names"] == "agree"
    assert score(a, d).levels["middle_names"] == "agree"
    # One record without middle names: no evidence either way.
    assert score(a, e).levels["middle_names"] == "null"
    assert score(a, c).match_weight > score(a, e).match_weight > score(a, b).match_weight


def test_a_move_within_the_postcode_area_weighs_less_than_a_distant_one() -> None:
    home = person("a", "Gemma", "Harris", "1982-07-23", postcode="LS6 2QT")
    near = person("b", "Gemma", "Harris", "1982-07-23", postcode="LS27 9GA", line1="8 Elm Way")
    far = person("c", "Gemma", "Harris", "1982-07-23", postcode="BS7 5LD", line1="8 Elm Way")
    assert score(home, near).levels["address"] == "area"
    assert score(home, far).levels["address"] == "else"
    assert score(home, near).match_weight > score(home, far).match_weight


def test_siblings_sharing_a_middle_name_stay_apart() -> None:
    a = person("a", "Ava", "Khan", "2012-05-14", middles=("Grace",))
    b = person("b", "Noah", "Khan", "2015-01-09", middles=("Grace",), sex="M")
    assert score(a, b).match_weight < MODEL.thresholds.review
    assert linked([a, b]) == []
