"""The deletion-neighbourhood index: one slip in a name still shares a keyed term."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mash_hub.crypto import INDEX_SPECS, BlindIndexer, IndexTerm
from mash_hub.crypto.blind_index import DELETION_PAIR_TERMS
from mash_hub.crypto.normalise import (
    DELETION_MAX_CHARS,
    DELETION_MIN_CHARS,
    deletion_neighbourhood,
)

ROOT = bytes(range(32))
DELETION = INDEX_SPECS["name_deletion_pair"].index_id
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=DELETION_MIN_CHARS, max_size=16)


@st.composite
def one_edit(draw: st.DrawFn) -> tuple[str, str]:
    """A name of indexable length and the same name after one insertion, deletion,
    substitution or adjacent transposition."""
    name = draw(names)
    kind = draw(st.sampled_from(["insert", "delete", "substitute", "transpose"]))
    letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz"))
    if kind == "insert":
        at = draw(st.integers(0, len(name)))
        return name, name[:at] + letter + name[at:]
    if kind == "delete":
        at = draw(st.integers(0, len(name) - 1))
        return name, name[:at] + name[at + 1 :]
    if kind == "substitute":
        at = draw(st.integers(0, len(name) - 1))
        return name, name[:at] + letter + name[at + 1 :]
    at = draw(st.integers(0, len(name) - 2))
    return name, name[:at] + name[at + 1] + name[at] + name[at + 2 :]


def _deletion_terms(
    indexer: BlindIndexer, given_name: str, family: str, *, stored: bool
) -> set[IndexTerm]:
    fields = {"given_names": [given_name], "family_name": family}
    terms = indexer.terms_for(fields) if stored else indexer.query_terms(fields)
    return {t for t in terms if t.index_id == DELETION}


@given(one_edit())
@settings(max_examples=400, deadline=None)
def test_one_edit_shares_a_neighbour(pair: tuple[str, str]) -> None:
    original, edited = pair
    assert set(deletion_neighbourhood(original)) & set(deletion_neighbourhood(edited))


@given(one_edit(), names)
@settings(max_examples=200, deadline=None)
def test_a_slip_in_either_name_shares_a_stored_term(pair: tuple[str, str], other: str) -> None:
    """What a search for the slipped name asks for meets what the record stored, keyed."""
    original, edited = pair
    assume(len(edited) > 1)  # a single letter is an initial: not a name key
    indexer = BlindIndexer(ROOT)
    stored = _deletion_terms(indexer, other, original, stored=True)
    assert stored & _deletion_terms(indexer, other, edited, stored=False)
    stored_given = _deletion_terms(indexer, original, other, stored=True)
    assert stored_given & _deletion_terms(indexer, edited, other, stored=False)


@given(names, names)
@settings(max_examples=200, deadline=None)
def test_a_record_stores_the_same_number_of_terms_whatever_the_lengths(
    given_name: str, family: str
) -> None:
    """Padding: the row count must not tell a short name from a long one."""
    assume(len({given_name[:DELETION_MAX_CHARS], family[:DELETION_MAX_CHARS]}) == 2)
    assert len(_deletion_terms(BlindIndexer(ROOT), given_name, family, stored=True)) == (
        DELETION_PAIR_TERMS
    )


def test_neighbourhood_is_bounded_and_single_letters_are_only_themselves() -> None:
    assert deletion_neighbourhood("x") == ["x"]
    assert deletion_neighbourhood("ng") == ["ng", "g", "n"]
    assert deletion_neighbourhood("lee") == ["lee", "ee", "le"]
    long = deletion_neighbourhood("wolstenholme-smythe")
    assert len(long) <= DELETION_MAX_CHARS + 1
    assert long[0] == "wolstenholme-smythe"[:DELETION_MAX_CHARS]


def test_the_three_officer_slips_meet_the_record() -> None:
    indexer = BlindIndexer(ROOT)
    for (given_name, family), (typed_given, typed_family) in (
        (("Nicola", "Woodford"), ("Nicola", "Woodfrd")),
        (("Isaac", "Lawrence"), ("Isaac", "Lawrance")),
        (("Isaac", "Lawrence"), ("Isac", "Lawrence")),
    ):
        stored = _deletion_terms(indexer, given_name, family, stored=True)
        assert stored & _deletion_terms(indexer, typed_given, typed_family, stored=False)


def test_two_slips_or_another_person_share_nothing() -> None:
    indexer = BlindIndexer(ROOT)
    stored = _deletion_terms(indexer, "Nicola", "Woodford", stored=True)
    assert not stored & _deletion_terms(indexer, "Nicole", "Woodfrd", stored=False)
    assert not stored & _deletion_terms(indexer, "Nicola", "Wood", stored=False)


@pytest.mark.parametrize("other_root", [bytes(range(1, 33))])
def test_terms_are_keyed(other_root: bytes) -> None:
    mine = _deletion_terms(BlindIndexer(ROOT), "Nicola", "Woodford", stored=True)
    theirs = _deletion_terms(BlindIndexer(other_root), "Nicola", "Woodford", stored=True)
    assert not mine & theirs
