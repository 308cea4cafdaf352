"""Short forms of given names, both ways: the ``nicknames`` package plus the British gaps."""

from __future__ import annotations

import pytest
from nicknames import NickNamer

from mash_hub.feeds.short_forms import UK_SHORT_FORMS, formal_to_short
from mash_hub.feeds.standardise import given_name_short_forms, given_name_variants


@pytest.mark.parametrize(
    ("short", "formal"),
    [("Zac", "isaac"), ("Zak", "isaac"), ("Sandy", "alexandra"), ("Bob", "robert")],
)
def test_a_short_form_stands_for_the_formal_name(short: str, formal: str) -> None:
    assert formal in given_name_variants(short)


@pytest.mark.parametrize(
    ("formal", "short"),
    [("Isaac", "zac"), ("Alexandra", "sandy"), ("Alexandra", "sasha"), ("Robert", "bob")],
)
def test_a_formal_name_asks_for_its_short_forms(formal: str, short: str) -> None:
    forms = given_name_short_forms(formal)
    assert short in forms
    assert formal.lower() not in forms


def test_the_supplement_holds_only_what_the_package_lacks() -> None:
    """An entry the maintained list gains must be dropped here, so the hand-written part
    stays the gap and nothing more."""
    namer = NickNamer()
    known = [
        (short, formal)
        for short, formals in UK_SHORT_FORMS.items()
        for formal in formals
        if formal in namer.canonicals_of(short)
    ]
    assert known == []
    for short, formals in UK_SHORT_FORMS.items():
        assert short.isalpha() and short.islower()
        assert all(f.isalpha() and f.islower() for f in formals)


def test_formal_to_short_is_the_inverse() -> None:
    inverse = formal_to_short()
    assert inverse["isaac"] == ("zac", "zach", "zack", "zak")
    assert all(
        formal in UK_SHORT_FORMS[short] for formal, shorts in inverse.items() for short in shorts
    )
