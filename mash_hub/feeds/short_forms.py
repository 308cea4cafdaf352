"""British short forms of given names that the ``nicknames`` package does not list.

The package (a maintained list of English given names and their diminutives, mostly from US
records) is the main source; this adds only what it misses and UK agencies record, each
checked against the package at test time so that an entry the package gains is dropped here.
"""

from __future__ import annotations

from collections.abc import Mapping

# short form -> the formal names it stands for (lower case, letters only)
UK_SHORT_FORMS: Mapping[str, tuple[str, ...]] = {
    "zac": ("isaac",),
    "zak": ("isaac",),
    "zach": ("isaac",),
    "zack": ("isaac",),
    "izzy": ("isabel", "isabella", "isabelle", "isobel"),
    "izzie": ("isabel", "isabella", "isabelle", "isobel"),
    "issy": ("isobel",),
    "sasha": ("alexandra", "alexander"),
    "lexi": ("alexandra", "alexa"),
    "alfie": ("alfred",),
    "freddie": ("alfred",),
    "charlie": ("charlotte",),
    "evie": ("evelyn", "eve"),
    "ellie": ("elizabeth", "ellen", "elena"),
    "nico": ("nicola",),
    "nikki": ("nicola",),
    "nicky": ("nicola",),
    "maddie": ("madison", "madeleine"),
    "poppy": ("penelope",),
    "katie": ("katherine", "catherine"),
    "kate": ("catherine",),
    "gracie": ("grace",),
    "leo": ("leonardo", "leon"),
    "mo": ("mohammed", "muhammad", "mohammad", "mohamed"),
}


def formal_to_short() -> dict[str, tuple[str, ...]]:
    """The same list the other way round: formal name -> its short forms here."""
    out: dict[str, set[str]] = {}
    for short, formals in UK_SHORT_FORMS.items():
        for formal in formals:
            out.setdefault(formal, set()).add(short)
    return {formal: tuple(sorted(shorts)) for formal, shorts in out.items()}
