"""Blind indexes: keying, truncation, normalisation, and the terms a person yields."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mash_hub.crypto import (
    INDEX_SPECS,
    BlindIndexer,
    EnvKeyProvider,
    IndexSpec,
    IndexTerm,
    index_terms,
    normalise,
)
from mash_hub.crypto.normalise import (
    name_phonetic,
    name_tokens,
    normalise_dob,
    normalise_nhs_number,
    normalise_pnc_id,
    normalise_postcode,
    normalise_upn,
    postcode_district,
)

ROOT = bytes(range(32))
OTHER_ROOT = bytes(range(1, 33))


@pytest.fixture
def indexer() -> BlindIndexer:
    return BlindIndexer(ROOT)


def _given_phonetic(indexer: BlindIndexer, name: str) -> set[int]:
    return {
        indexer.compute("given_phonetic", c) for t in name_tokens(name) if (c := name_phonetic(t))
    }


def test_deterministic_and_keyed(indexer: BlindIndexer) -> None:
    value = indexer.compute("family_token", "smith")
    assert BlindIndexer(ROOT).compute("family_token", "smith") == value
    other = BlindIndexer(OTHER_ROOT)
    values = [
        (
            indexer.compute("nhs_number", f"94347659{i:02d}"),
            other.compute("nhs_number", f"94347659{i:02d}"),
        )
        for i in range(20)
    ]
    assert sum(a == b for a, b in values) <= 1


def test_separate_keys_per_index(indexer: BlindIndexer) -> None:
    same = [
        indexer.compute("given_family_token", f"v{i}")
        == indexer.compute("family_phonetic_dob", f"v{i}")
        for i in range(50)
    ]
    assert sum(same) <= 1
    assert indexer._key("dob") != indexer._key("birth_year")


@pytest.mark.parametrize("spec", list(INDEX_SPECS.values()), ids=lambda s: s.name)
def test_truncation_within_bit_budget(indexer: BlindIndexer, spec: IndexSpec) -> None:
    values = [indexer.compute(spec.name, f"value-{i}") for i in range(400)]
    assert all(0 <= v < 2**spec.bits for v in values)
    assert all(v < 2**63 for v in values)
    if spec.bits >= 12:
        assert max(values) >= 2 ** (spec.bits - 3)


def test_specs_are_consistent() -> None:
    ids = [s.index_id for s in INDEX_SPECS.values()]
    assert len(ids) == len(set(ids))
    assert all(1 <= s.bits <= 63 and s.leaks and s.description for s in INDEX_SPECS.values())
    with pytest.raises(ValueError, match="32 bytes"):
        BlindIndexer(b"short")


def test_phonetic_joins_spelling_variants(indexer: BlindIndexer) -> None:
    smith = _given_phonetic(indexer, "Smith")
    assert smith and smith == _given_phonetic(indexer, "Smyth")
    mohammed = _given_phonetic(indexer, "Mohammed")
    assert mohammed == _given_phonetic(indexer, "Muhammad") == _given_phonetic(indexer, "Mohamed")
    assert mohammed != smith


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("José", "Jose"),
        ("Łukasz", "Lukasz"),
        ("Zoë", "Zoe"),
        ("ZOË", "zoe"),
        ("Søren", "Soren"),
        ("Strauß", "Strauss"),
        ("O’Brien", "OBrien"),
    ],
)
def test_accents_share_token_values(indexer: BlindIndexer, a: str, b: str) -> None:
    assert name_tokens(a) == name_tokens(b)
    assert [indexer.compute("given_token", t) for t in name_tokens(a)] == [
        indexer.compute("given_token", t) for t in name_tokens(b)
    ]


def test_name_tokens() -> None:
    assert name_tokens("O'Brien-Smith") == ["obrien", "smith", "obriensmith"]
    assert name_tokens("J. Smith") == ["smith"]
    assert name_tokens("  ") == []
    assert name_tokens("محمد") == ["محمد"]
    assert name_phonetic("محمد") is None


def test_identifier_normalisers() -> None:
    assert normalise_nhs_number("943 476 5919") == "9434765919"
    assert normalise_nhs_number("943-476-591") is None
    assert normalise_upn(" a123456789012 ") == "A123456789012"
    assert normalise_upn("A12345") is None
    assert normalise_pnc_id("2012/345a") == normalise_pnc_id("12/0000345A") == "12/0000345A"
    assert normalise_pnc_id("12345") is None
    assert normalise_postcode("sw1a 1aa") == "SW1A1AA"
    assert normalise_postcode("not a postcode") is None
    assert postcode_district("M1 1AE") == "M1"
    assert postcode_district("sw1a") == "SW1A"
    assert normalise_dob(dt.datetime(2015, 3, 4, 12, 0)) == "2015-03-04"
    assert normalise_dob(" 2015-03-04 ") == "2015-03-04"
    assert normalise_dob("yesterday") is None


PERSON = {
    "given_names": ["Mary Ann"],
    "family_name": "O'Brien-Smith",
    "other_names": ["Molly Smyth"],
    "date_of_birth": dt.date(2014, 5, 17),
    "postcodes": ["ls1 4ap", "LS6"],
    "nhs_number": "943 476 5919",
    "upn": "A123456789012",
    "pnc_id": "2019/0012345X",
}


def test_index_terms_cover_all_indexes() -> None:
    terms = index_terms(PERSON)
    names = {name for name, _ in terms}
    assert names == set(INDEX_SPECS)
    assert ("nhs_number", "9434765919") in terms
    assert ("pnc_id", "19/0012345X") in terms
    assert ("family_token", "obriensmith") in terms
    assert ("family_token", "smyth") in terms
    assert ("given_token", "molly") in terms
    assert ("dob_postcode_district", "2014-05-17\x1fLS1") in terms
    assert ("dob_postcode_district", "2014-05-17\x1fLS6") in terms
    assert ("postcode", "LS14AP") in terms
    assert len(terms) == len(set(terms))


def test_terms_for_and_query_terms(indexer: BlindIndexer) -> None:
    stored = indexer.terms_for(PERSON)
    assert all(isinstance(t, IndexTerm) for t in stored)
    assert len(stored) == len(set(stored))
    query = indexer.query_terms(
        {"family_name": "Smythe", "date_of_birth": "2014-05-17"},
        indexes={"family_phonetic_dob"},
    )
    assert query and all(t.index_id == INDEX_SPECS["family_phonetic_dob"].index_id for t in query)
    assert set(query) <= set(stored)
    assert indexer.lookup("nhs_number", "9434765919") == [
        t for t in stored if t.index_id == indexer.index_id("nhs_number")
    ]
    with pytest.raises(ValueError, match="compound"):
        indexer.lookup("family_phonetic_dob", "x")
    with pytest.raises(KeyError, match="unknown blind index"):
        indexer.compute("nope", "x")


def test_birth_year_query_without_dob(indexer: BlindIndexer) -> None:
    query = indexer.query_terms(
        {"family_name": "Smith", "birth_year": 2014}, indexes={"family_phonetic_birth_year"}
    )
    assert set(query) <= set(indexer.terms_for(PERSON))
    assert query


def test_empty_person_has_no_terms(indexer: BlindIndexer) -> None:
    assert indexer.terms_for({}) == []
    assert index_terms({"given_names": [], "family_name": None, "postcodes": ["??"]}) == []


def test_from_provider_and_repr_hides_key() -> None:
    b64 = base64.b64encode
    provider = EnvKeyProvider(
        {"MASH_KEKS": "k:" + b64(bytes(32)).decode(), "MASH_INDEX_ROOT_KEY": b64(ROOT).decode()}
    )
    indexer = BlindIndexer.from_provider(provider)
    assert indexer.compute("dob", "2014-05-17") == BlindIndexer(ROOT).compute("dob", "2014-05-17")
    indexer.compute("dob", "2014-05-17")
    text = repr(indexer) + str(indexer)
    for raw in [ROOT, indexer._key("dob")]:
        assert raw.hex() not in text and b64(raw).decode() not in text


@settings(max_examples=200, deadline=None)
@given(name=st.text(alphabet=st.characters(codec="utf-8")))
def test_hypothesis_normalisers_total(name: str) -> None:
    tokens = name_tokens(name)
    assert name_tokens(name) == tokens
    assert all(t and t == t.casefold() and " " not in t for t in tokens)
    for token in tokens:
        code = name_phonetic(token)
        assert code is None or code.isascii()
    terms = index_terms({"given_names": [name], "family_name": name, "other_names": [name]})
    assert len(terms) == len(set(terms))


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=24))
def test_ascii_names_fold_as_the_general_path_folds_them(text: str) -> None:
    """The ASCII fast path of name folding (one translate) must give the same keys, or
    records ingested with it would not be found by terms computed the general way."""
    assert normalise._fold(text) == normalise._fold_general(text)
