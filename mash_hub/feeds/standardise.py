"""Standardisation of partner-agency values before they are encrypted and linked.

Pure functions, no database. Each takes one raw value as it arrived in an extract and returns
its standard form, ``None`` for an absent value (``None``, empty or blank), or raises
:class:`StandardisationError` with a machine-readable ``code``. Error messages never contain
the value (it may be personal data) and never chain an exception whose message does.

Decisions (the ingestion pipeline and the blind indexes rely on them):

* **PNC id**: the form given is kept (``YY/NNNNNNNC`` or ``YYYY/NNNNNNNC``), serial
  zero-padded to seven digits. The two-digit year cannot be expanded without guessing a
  century, so it is never invented; ``crypto.normalise.normalise_pnc_id`` indexes both forms
  on ``YY/NNNNNNNC`` and so agrees on every value returned here.
* **Sex**: ``"M"``, ``"F"``, ``"U"`` (not known / not recorded / not specified) and ``"X"``
  (indeterminate: NHS Data Dictionary "unable to be classified as either male or female").
  Numeric codes are *not* in the default map (agencies disagree on them: ISO 5218 and NHS
  codes differ); a feed that uses them passes a ``value_map``.
* **Email**: the whole address is lower-cased. RFC 5321 allows a case-sensitive local part,
  but every mail system UK agencies use (NHSmail, Microsoft 365, Google) treats it
  case-insensitively and agencies key addresses in whatever case they like, so lower-casing
  makes one mailbox compare equal across agencies.
* **Postcodes**: strict UK format (letter positions included), plus ``GIR 0AA``. British
  Forces addresses are accepted through their real ``BF1`` postcodes; a bare ``BFPO 123``
  routing number is not a postcode and is rejected, as are overseas-territory codes.
  No auto-correction (``O``/``0``): a guessed postcode would link the wrong household.
* **Dates**: day-first always; a numeric month-first reading is never tried.
* **Phones**: E.164. A GB number must be a valid number, or a possible 10-digit one
  (Ofcom's drama ranges such as 07700 900xxx are unallocated, so not "valid", but real-shaped).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from itertools import product
from typing import TYPE_CHECKING, Final

import phonenumbers
from stdnum.gb import upn as _stdnum_upn

from mash_hub.crypto.normalise import name_phonetic, name_tokens
from mash_hub.feeds.short_forms import UK_SHORT_FORMS, formal_to_short

if TYPE_CHECKING:
    from nicknames import NickNamer

__all__ = [
    "REASON_CODES",
    "SEX_CODES",
    "PersonName",
    "StandardisationError",
    "clean_address",
    "clean_name",
    "given_name_short_forms",
    "given_name_variants",
    "name_key",
    "name_order_swapped",
    "normalise_email",
    "normalise_phone",
    "normalise_postcode",
    "normalise_sex",
    "parse_date",
    "split_full_name",
    "validate_nhs_number",
    "validate_pnc_id",
    "validate_upn",
]

# -- errors ------------------------------------------------------------------------------

REASON_CODES: Final[Mapping[str, str]] = {
    "date_invalid": "not a recognisable date",
    "date_impossible": "not a real calendar date",
    "date_in_future": "date is in the future",
    "date_too_old": "date is before the earliest allowed date",
    "postcode_invalid": "not a valid UK postcode",
    "nhs_number_invalid": "NHS number is not ten digits",
    "nhs_number_check_digit": "NHS number check digit does not match",
    "upn_invalid": "UPN is not in the 13-character format",
    "upn_check_letter": "UPN check letter does not match",
    "pnc_id_invalid": "PNC id is not in the YY/NNNNNNNC or YYYY/NNNNNNNC format",
    "pnc_id_check_letter": "PNC id check letter does not match",
    "email_invalid": "not a valid email address",
    "phone_invalid": "not a possible telephone number",
    "name_empty": "name has no usable letters",
    "sex_invalid": "sex value not recognised",
}


class StandardisationError(ValueError):
    """A value that cannot be standardised.

    ``code`` is a machine-readable reason (a key of :data:`REASON_CODES`); the message is the
    fixed description of that code and never contains the value (it may be personal data).
    """

    code: str

    def __init__(self, code: str) -> None:
        if code not in REASON_CODES:
            raise ValueError(f"unknown standardisation reason code {code!r}")
        super().__init__(f"{code}: {REASON_CODES[code]}")
        self.code = code

    def __reduce__(self) -> tuple[type[StandardisationError], tuple[str]]:
        return (type(self), (self.code,))


# -- names -------------------------------------------------------------------------------

_TITLES = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "sir", "dame", "lord", "lady"}
)
_SUFFIXES = frozenset({"jr", "jnr", "sr", "snr", "ii", "iii", "iv"})
# Particles that start a family name ("van der Berg", "bin Salman", "de la Cruz").
_PARTICLES = frozenset(
    {
        "van",
        "von",
        "der",
        "den",
        "ter",
        "ten",
        "de",
        "des",
        "da",
        "das",
        "do",
        "dos",
        "di",
        "del",
        "della",
        "du",
        "le",
        "la",
        "bin",
        "binti",
        "bint",
        "ibn",
        "al",
        "el",
        "ap",
        "mac",
        "mc",
        "abu",
    }
)
# Particles written in lower case when they are not the first word (upper-case input only).
_LOWER_PARTICLES = _PARTICLES - {"al", "el", "mac", "mc", "abu"}
_HYPHENS = str.maketrans(dict.fromkeys("‐‑‒–—―−", "-"))
# Typographic apostrophes and quotes become ASCII; the modifier letters U+02BB-U+02BF (okina,
# ayn, hamza) are letters of transliterated names and are kept.
_APOSTROPHES = str.maketrans(dict.fromkeys("’‘`´′", "'"))
_SPACE_AROUND_HYPHEN = re.compile(r"\s*-\s*")
_MULTI_HYPHEN = re.compile(r"-{2,}")
_MAC = re.compile(r"^mac([a-z]{2,}[^aciozj])$")
_MAC_EXCEPTIONS = frozenset(
    {
        "macevicius",
        "machado",
        "machar",
        "machin",
        "machlin",
        "macias",
        "maciulis",
        "mackie",
        "mackle",
        "macklin",
        "mackmin",
        "macquarie",
        "macomber",
        "macin",
        "mackintosh",
        "macken",
        "machen",
        "machiel",
        "maciol",
        "mackell",
        "macklem",
        "mackrell",
        "maclin",
        "mackey",
        "mackley",
        "machell",
        "machon",
        "macey",
        "macon",
        "mackman",
    }
)


def _bare(token: str) -> str:
    return token.rstrip(".").casefold()


def _strip_affixes(tokens: list[str]) -> list[str]:
    """Leading titles and trailing suffixes, never the last remaining word."""
    while len(tokens) > 1 and _bare(tokens[0]) in _TITLES:
        tokens = tokens[1:]
    while len(tokens) > 1 and _bare(tokens[-1]) in _SUFFIXES:
        tokens = tokens[:-1]
    return tokens


def _lower(text: str) -> str:
    return text.lower().replace("i̇", "i")  # Turkish İ lowers to i + combining dot


def _case_segment(seg: str) -> str:
    if not seg:
        return seg
    low = _lower(seg)
    if low.startswith("mc") and len(low) > 2:
        return "Mc" + low[2].upper() + low[3:]
    if _MAC.match(low) and low not in _MAC_EXCEPTIONS:
        return "Mac" + low[3].upper() + low[4:]
    return seg[0].upper() + _lower(seg[1:])


def _case_word(word: str, first: bool) -> str:
    if not first and word.casefold() in _LOWER_PARTICLES:
        return word.lower()
    # Capitalise after each hyphen and after an apostrophe that follows one letter (O'Neill,
    # D'Arcy); "-" splits double-barrelled names.
    parts = []
    for piece in word.split("-"):
        head, apos, tail = piece.partition("'")
        if apos and len(head) == 1 and tail:
            parts.append(head.upper() + "'" + _case_segment(tail))
        else:
            parts.append(_case_segment(piece))
    return "-".join(parts)


def _smart_case(words: list[str]) -> list[str]:
    return [_case_word(w, i == 0) for i, w in enumerate(words)]


def _tidy(raw: str) -> str:
    text = unicodedata.normalize("NFC", raw).translate(_HYPHENS).translate(_APOSTROPHES)
    text = _SPACE_AROUND_HYPHEN.sub("-", " ".join(text.split()))
    return _MULTI_HYPHEN.sub("-", text).strip("-' ,")


def _clean_words(raw: str, upper: bool | None = None) -> list[str]:
    text = _tidy(raw)
    words = _strip_affixes(text.split())
    if text.isupper() if upper is None else upper:
        words = _smart_case(words)
    if not any(ch.isalpha() for w in words for ch in w):
        raise StandardisationError("name_empty")
    return words


def clean_name(raw: str) -> str:
    """A name for display: titles and suffixes removed, spacing, hyphens and apostrophes
    normalised, NFC. Case is kept unless the input is all upper case (police extracts), which
    is title-cased with care for Mc/Mac/O'/hyphens and lower-case particles.

    ``"MR SEAN O'NEILL"`` -> ``"Sean O'Neill"``; raises ``name_empty`` when no letter is left.
    """
    if raw is None:  # defensive: the pipeline may pass absent cells through
        raise StandardisationError("name_empty")
    text = _tidy(raw)
    if "," not in text:
        return " ".join(_clean_words(text))
    # "SMITH, MR JOHN": each comma part loses its own titles and suffixes.
    upper = text.isupper()
    parts = [p for p in (p.strip() for p in text.split(",")) if p]
    cleaned = []
    for part in parts:
        try:
            cleaned.append(" ".join(_clean_words(part, upper)))
        except StandardisationError:
            continue
    if not cleaned:
        raise StandardisationError("name_empty")
    return ", ".join(cleaned)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _address_word(word: str, first: bool) -> str:
    """Words with digits (house numbers, ``3B``, postcodes) upper case; the rest re-cased."""
    if any(ch.isdigit() for ch in word):
        return word.upper()
    return _case_word(word, first)


def clean_address(raw: str | None) -> str | None:
    """An address line or town for display and matching; ``None`` when nothing is left.

    Unlike :func:`clean_name` it keeps numbers: a line holding only a house number (``"109"``)
    is an address line, and the house number is what matching compares with the postcode.
    Control characters become spaces, spacing is collapsed, NFC; all-upper-case input
    (police) is re-cased like a name except words with digits (``"FLAT 3B"`` ->
    ``"Flat 3B"``). Never raises.
    """
    if raw is None:
        return None
    text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", raw)).split()).strip(" ,")
    if not text:
        return None
    words = text.split(" ")
    if text.isupper():
        words = [_address_word(w, i == 0) for i, w in enumerate(words)]
    return " ".join(words)


def _key_tokens(name: str) -> list[str]:
    tokens = name_tokens(name)
    # name_tokens appends the joined form last when a name has several parts.
    return tokens[:-1] if len(tokens) > 1 else tokens


def name_key(raw: str) -> str:
    """Transliteration-proof comparison key: casefolded ASCII tokens joined by a space.

    Titles and suffixes are dropped first; tokens follow ``crypto.normalise.name_tokens``
    (diacritics stripped, apostrophes joined, hyphens split, single initials dropped):
    ``"José"``, ``"JOSE"`` -> ``"jose"``; ``"Łukasz"`` -> ``"lukasz"``;
    ``"Mary-Jane O'Neill"`` -> ``"mary jane oneill"``. Raises ``name_empty`` when nothing is
    left (including an initial alone).
    """
    tokens = _key_tokens(" ".join(_clean_words(raw)))
    if not tokens:
        raise StandardisationError("name_empty")
    return " ".join(tokens)


@dataclass(frozen=True, slots=True)
class PersonName:
    """A person's name split into parts, with comparison keys.

    ``display`` is given names then family name, cleaned (titles/suffixes removed), original
    script and case kept (police upper case title-cased). ``given_keys``/``family_key`` are
    the transliteration-proof :func:`name_key` forms.
    """

    display: str
    given_names: tuple[str, ...]
    family_name: str
    given_keys: tuple[str, ...] = ()
    family_key: str = ""

    @property
    def key(self) -> str:
        """Key of the whole name, given names first."""
        return " ".join(k for k in (*self.given_keys, self.family_key) if k)


def _key_or_empty(part: str) -> str:
    tokens = _key_tokens(part)
    return " ".join(tokens)


def _family_start(words: list[str]) -> int:
    """Index of the first family-name word: a particle run (not first, not last) or the last."""
    for i in range(1, len(words) - 1):
        if words[i].casefold() in _PARTICLES:
            return i
    return len(words) - 1


def split_full_name(raw: str) -> PersonName:
    """Split a full name into given names and family name.

    ``"MR JOHN PAUL SMITH-JONES JR"`` -> given ``("John", "Paul")``, family ``"Smith-Jones"``.
    ``"SMITH, John"`` (family first, comma) is understood. The last word is the family name
    unless a particle starts a longer one (``"Pieter van der Berg"`` -> ``"van der Berg"``).
    A single word is taken as the family name.
    """
    if raw is None:
        raise StandardisationError("name_empty")
    family_part, comma, given_part = _tidy(raw).partition(",")
    if comma and given_part.strip(" ,") and family_part.strip():
        family_words = _clean_words(family_part)
        given_words = _clean_words(given_part.replace(",", " "))
    else:
        words = _clean_words(raw.replace(",", " "))
        start = _family_start(words)
        given_words, family_words = words[:start], words[start:]
    if len(family_words) > 1 and family_words[0][:1].islower() and not given_words:
        family_words[0] = family_words[0][:1].upper() + family_words[0][1:]
    family = " ".join(family_words)
    given = tuple(given_words)
    return PersonName(
        display=" ".join((*given, family)),
        given_names=given,
        family_name=family,
        given_keys=tuple(k for k in (_key_or_empty(g) for g in given) if k),
        family_key=_key_or_empty(family),
    )


@lru_cache(maxsize=1)
def _nick_namer() -> NickNamer:
    from nicknames import NickNamer  # noqa: PLC0415 - slow to import and build; once

    return NickNamer()


_RUNS = re.compile(r"[aeiouy]+|[^aeiouy]+")
# How romanisations of one name differ (Arabic, Urdu, Bengali, Somali, Slavic, Chinese names in
# English records): long and short vowels (u/ou/oo, i/ee/ea, ia/ea/ya), diphthongs
# (ai/ay/ei/ey), i/y, unwritten short vowels (a/e, e/u).
_VOWEL_ALTERNATIVES: Mapping[str, tuple[str, ...]] = {
    "o": ("u", "ou", "oo"),
    "u": ("o", "ou", "oo", "e"),
    "ou": ("u", "oo", "o"),
    "oo": ("u", "ou", "o"),
    "a": ("e",),
    "e": ("a", "u"),
    "ee": ("i", "ea"),
    "i": ("ee", "y"),
    "y": ("i",),
    "ai": ("ay", "ei", "ey"),
    "ay": ("ai", "ei", "ey"),
    "ei": ("ai", "ay", "ey"),
    "ey": ("ei", "ay", "ai"),
    "ea": ("ee", "i", "ia"),
    "ia": ("ea", "ya"),
    "ya": ("ia",),
}
# In names of four letters or fewer a single vowel swapped for another mostly makes another
# name (Jack/Jeck, Ben/Bun); only the long/short and diphthong spellings count there.
_SHORT_VOWEL_ALTERNATIVES: Mapping[str, tuple[str, ...]] = {
    run: tuple(alt for alt in alts if len(run) > 1 or len(alt) > 1 or {run, alt} <= {"i", "y"})
    for run, alts in _VOWEL_ALTERNATIVES.items()
}
_CONSONANT_ALTERNATIVES: Mapping[str, str] = {"x": "ks", "ks": "x", "ph": "f"}
# First letters that romanise one sound: Omar/Umar, Osman/Usman, Ibrahim/Ebrahim,
# Yasmin/Jasmin. No other first letter ever changes (Amelia/Emilia, Kai/Cai are two names).
_INITIAL_ALTERNATIVES: Mapping[str, str] = {
    "o": "u",
    "u": "o",
    "i": "e",
    "e": "i",
    "j": "y",
    "y": "j",
}
_DOUBLABLE = frozenset("lmnrst")
_SHORT_NAME = 5
_MAX_SPELLING_CHANGES = 2
_MAX_SPELLINGS = 48


def _spelling_code(token: str) -> str | None:
    """The metaphone code a spelling must keep, ignoring a "y" used as a vowel glide
    (Maryam/Mariam) and the first letter when that is what changed."""
    code = name_phonetic(token)
    return code[0] + code[1:].replace("Y", "") if code else None


def _consonant_options(run: str, *, doublable: bool) -> tuple[str, ...]:
    """Spellings of one run of consonants: x/ks, ph/f; a double letter single; a single
    ``_DOUBLABLE`` letter doubled (not at the end, nor in short names)."""
    if any(old in run for old in _CONSONANT_ALTERNATIVES):
        return (
            run,
            *(run.replace(old, new) for old, new in _CONSONANT_ALTERNATIVES.items() if old in run),
        )
    if len(run) == 2 and run[0] == run[1]:
        return (run, run[0])
    if doublable and len(run) == 1 and run in _DOUBLABLE:
        return (run, run + run)
    return (run,)


def _spelling_variants(token: str) -> list[str]:
    """Romanisation variants of one ASCII token that keep its phonetic code.

    Alternates non-initial vowels (see ``_VOWEL_ALTERNATIVES``), x/ks and ph/f, single and
    double consonants, a final "h" after a vowel, and the few first letters that romanise
    one sound (``_INITIAL_ALTERNATIVES``), then keeps only spellings with the same
    consonant code, so "mohammed" yields "muhammad", "mohamed"... and "yusuf" meets
    "yousef" without a hand-kept table. At most two changes per spelling; names under five
    letters get only the long/short vowel and diphthong changes. Twins' similar names
    (Lily/Lila, Sophie/Sophia, Aisha/Ayesha, Hassan/Hussain) are not variants of each other
    (tested), so these never weaken the twin guard.
    """
    code = _spelling_code(token)
    if code is None or len(token) < 2:
        return []
    vowels = _SHORT_VOWEL_ALTERNATIVES if len(token) < _SHORT_NAME else _VOWEL_ALTERNATIVES
    final_h = len(token) > 2 and token.endswith("h") and token[-2] in "aeiou"
    stem = token[:-1] if final_h else token
    runs = [stem[0], *_RUNS.findall(stem[1:])]
    initial = _INITIAL_ALTERNATIVES.get(runs[0])
    options: list[tuple[str, ...]] = [(runs[0], initial) if initial else (runs[0],)]
    for i, run in enumerate(runs[1:], start=1):
        if run[0] in "aeiouy":
            options.append((run, *vowels.get(run, ())))
        else:
            doublable = i < len(runs) - 1 and len(token) >= _SHORT_NAME
            options.append(_consonant_options(run, doublable=doublable))
    tail = code[1:]
    found: dict[str, int] = {}
    for combo in product(*options):
        changes = sum(c != o[0] for c, o in zip(combo, options, strict=True))
        if changes > _MAX_SPELLING_CHANGES:
            continue
        spelled = "".join(combo)
        for candidate in (spelled, spelled + "h") if spelled[-1] in "aeiou" else (spelled,):
            if candidate in found or candidate == token:
                continue
            candidate_code = _spelling_code(candidate)
            if candidate_code is None:
                continue
            if candidate_code == code or (combo[0] != runs[0] and candidate_code[1:] == tail):
                found[candidate] = changes + (candidate != spelled)
    ranked = sorted(found, key=lambda s: (found[s], s))
    return ranked[:_MAX_SPELLINGS]


@lru_cache(maxsize=65536)
def given_name_variants(given: str) -> tuple[str, ...]:
    """Lower-case keys a given name may also be recorded as, the name itself included.

    Nickname -> formal names from the ``nicknames`` package (``"Bob"`` -> ``"robert"``...)
    and the British short forms it lacks (``"Zac"`` -> ``"isaac"``, :mod:`.short_forms`),
    plus romanisation variants sharing the name's phonetic code (``"Mohammed"`` ->
    ``"muhammad"``, ``"mohamed"``...). Formal names get no nicknames: both records index
    their own variants, so "Bob" and "Robert" meet on "robert". Sorted; empty for a name with
    no usable letters.
    """
    try:
        key = name_key(given)
    except StandardisationError:
        return ()
    out: set[str] = set()
    namer = _nick_namer()
    for token in key.split():
        out.add(token)
        out.update(c for c in namer.canonicals_of(token) if c.isascii() and c.isalpha())
        out.update(UK_SHORT_FORMS.get(token, ()))
        out.update(_spelling_variants(token))
    return tuple(sorted(out))


@lru_cache(maxsize=1)
def _short_forms_of_formal() -> dict[str, tuple[str, ...]]:
    return formal_to_short()


@lru_cache(maxsize=65536)
def given_name_short_forms(given: str) -> tuple[str, ...]:
    """Short forms a formal given name may be recorded as (``"Isaac"`` -> ``"zac"``...).

    The other direction of :func:`given_name_variants`, for searches only: a record indexes
    the name it was given, so a search for "Alexandra" must also ask for "sandy". From the
    ``nicknames`` package and :mod:`.short_forms`; sorted, the name itself left out.
    """
    try:
        key = name_key(given)
    except StandardisationError:
        return ()
    out: set[str] = set()
    namer = _nick_namer()
    extra = _short_forms_of_formal()
    for token in key.split():
        out.update(n for n in namer.nicknames_of(token) if n.isascii() and n.isalpha())
        out.update(extra.get(token, ()))
    out.difference_update(key.split())
    return tuple(sorted(out))


def _same_name(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = name_phonetic(a), name_phonetic(b)
    return pa is not None and pa == pb and len(a) >= 3 and len(b) >= 3


def _first_key(name: str) -> str | None:
    try:
        return name_key(name).split()[0]
    except StandardisationError:
        return None


def _full_key(name: str) -> str | None:
    try:
        return name_key(name).replace(" ", "")
    except StandardisationError:
        return None


def name_order_swapped(given: str, family: str, other_given: str, other_family: str) -> bool:
    """True when two records look like the same name with given and family swapped.

    Both cross pairs must agree (first given name of one vs family name of the other, by key
    or phonetic code, so transliterations still count) and the straight comparison must not
    (a name like "Ali Ali" is not a swap).
    """
    g1, g2 = _first_key(given), _first_key(other_given)
    f1, f2 = _full_key(family), _full_key(other_family)
    if g1 is None or g2 is None or f1 is None or f2 is None:
        return False
    crossed = _same_name(g1, f2) and _same_name(f1, g2)
    straight = _same_name(g1, g2) and _same_name(f1, f2)
    return crossed and not straight


# -- dates -------------------------------------------------------------------------------

_MONTHS: Mapping[str, int] = {
    **{
        name: i
        for i, name in enumerate(
            (
                "january",
                "february",
                "march",
                "april",
                "may",
                "june",
                "july",
                "august",
                "september",
                "october",
                "november",
                "december",
            ),
            1,
        )
    },
    **{
        abbr: i
        for i, abbr in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
            1,
        )
    },
    "sept": 9,
}
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)?)?"
_ISO = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})" + _TIME)
_DMY = re.compile(r"(\d{1,2})([/\-. ])(\d{1,2})\2(\d{4}|\d{2})" + _TIME)
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_NAMED = re.compile(
    r"(\d{1,2})(?:st|nd|rd|th)?[\s\-/.]*([A-Za-z]{3,9})\.?,?[\s\-/.]*(\d{4}|\d{2})" + _TIME,
    re.IGNORECASE,
)


def _build(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        pass
    raise StandardisationError("date_impossible")


def _pivot(yy: int, month: int, day: int, today: date) -> date:
    """Two-digit year: 20yy unless that is in the future, then 19yy."""
    candidate = _build(2000 + yy, month, day)
    return candidate if candidate <= today else _build(1900 + yy, month, day)


def _parse_auto(text: str, today: date) -> date:
    match = _ISO.fullmatch(text)
    if match:
        return _build(int(match[1]), int(match[3]), int(match[4]))
    match = _DMY.fullmatch(text)
    if match:
        day, month, year = int(match[1]), int(match[3]), match[4]
        if len(year) == 2:
            return _pivot(int(year), month, day, today)
        return _build(int(year), month, day)
    match = _COMPACT.fullmatch(text)
    if match:
        return _build(int(match[1]), int(match[2]), int(match[3]))
    match = _NAMED.fullmatch(text)
    if match:
        month_no = _MONTHS.get(match[2].casefold())
        if month_no is not None:
            day, year = int(match[1]), match[3]
            if len(year) == 2:
                return _pivot(int(year), month_no, day, today)
            return _build(int(year), month_no, day)
    raise StandardisationError("date_invalid")


def _parse_formats(text: str, formats: Sequence[str], today: date) -> date:
    impossible = False
    for fmt in formats:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError as exc:
            impossible = impossible or "out of range" in str(exc).split("'")[0]
            continue
        result = parsed.date()
        if "%y" in fmt and result > today:
            result = _build(result.year - 100, result.month, result.day)
        return result
    raise StandardisationError("date_impossible" if impossible else "date_invalid")


def parse_date(
    raw: str | None,
    formats: Sequence[str] | None = None,
    *,
    today: date | None = None,
    earliest: date = date(1900, 1, 1),
) -> date | None:
    """A date from UK-style text, day first; ``None`` for an absent value.

    With ``formats``, they are tried in order (``strptime``; a ``%y`` year in the future is
    moved back a century). Without, every common UK form is accepted: ``2012-03-04``,
    ``2012/03/04``, ``04/03/2012``, ``4/3/2012``, ``04-03-2012``, ``04.03.2012``,
    ``04/03/12`` (20yy unless in the future, then 19yy), ``4 March 2012``, ``4 Mar 2012``,
    ``04-Mar-2012``, ``4th March 2012``, ``20120304`` (year first only), and ISO timestamps
    or date-times (``2012-03-04T10:00:00Z``, ``04/03/2012 10:00``): the date as written,
    time and zone dropped. Month-first is never guessed.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    ref = today if today is not None else date.today()
    result = _parse_formats(text, formats, ref) if formats else _parse_auto(text, ref)
    if result > ref:
        raise StandardisationError("date_in_future")
    if result < earliest:
        raise StandardisationError("date_too_old")
    return result


# -- postcodes ---------------------------------------------------------------------------

# Outward: A9, A99, AA9, AA99, A9A, AA9A with the letters each position allows; inward: 9AA
# without C I K M O V.
_POSTCODE = re.compile(
    r"((?:[A-PR-UWYZ][0-9][0-9]?)|(?:[A-PR-UWYZ][A-HK-Y][0-9][0-9]?)"
    r"|(?:[A-PR-UWYZ][0-9][A-HJKPSTUW])|(?:[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]))"
    r"([0-9][ABD-HJLNP-UW-Z]{2})"
)
_SPACES = re.compile(r"\s+")


def normalise_postcode(raw: str | None) -> str | None:
    """A validated UK postcode, upper case, one space before the inward code.

    ``"ls62qt"`` -> ``"LS6 2QT"``. ``GIR 0AA`` is accepted; ``BFPO 123`` and overseas
    territories' codes are not (see the module notes). Raises ``postcode_invalid``.
    """
    if raw is None:
        return None
    compact = _SPACES.sub("", raw).upper()
    if not compact:
        return None
    if compact == "GIR0AA":
        return "GIR 0AA"
    match = _POSTCODE.fullmatch(compact)
    if match is None or not compact.isascii():
        raise StandardisationError("postcode_invalid")
    return f"{match[1]} {match[2]}"


# -- identifiers -------------------------------------------------------------------------

_NHS_SEPARATORS = re.compile(r"[\s\-]+")
_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def validate_nhs_number(raw: str | None) -> str | None:
    """Ten digits with a correct modulus-11 check digit: ``"943 476 5919"`` -> ``"9434765919"``.

    Spaces and hyphens are removed. All-same-digit numbers (``0000000000``, ``9999999999``)
    pass the checksum but are placeholders, so they are ``nhs_number_invalid`` too.
    """
    if raw is None:
        return None
    digits = _NHS_SEPARATORS.sub("", raw)
    if not digits:
        return None
    if len(digits) != 10 or not (digits.isascii() and digits.isdigit()):
        raise StandardisationError("nhs_number_invalid")
    if digits == digits[0] * 10:
        raise StandardisationError("nhs_number_invalid")
    # Same rule as stdnum.gb.nhs, inlined: it is on the hot path of every health record.
    check = 11 - sum(int(c) * w for c, w in zip(digits, _NHS_WEIGHTS, strict=False)) % 11
    if (0 if check == 11 else check) != int(digits[9]):
        raise StandardisationError("nhs_number_check_digit")
    return digits


# Check letters and temporary-UPN letters: ABCDEFGHJKLMNPQRTUVWXYZ (no I, O, S).
_UPN = re.compile(r"[A-HJ-NP-RT-Z][0-9]{11}[A-HJ-NP-RT-Z0-9]")
# LA numbers of authorities created since python-stdnum's list was compiled (Dorset, BCP,
# North and West Northamptonshire, Cumberland, Westmorland and Furness).
_NEW_LA_NUMBERS = frozenset({838, 839, 940, 941, 942, 943})
_LA_NUMBERS: frozenset[int] = frozenset(_stdnum_upn._la_numbers) | _NEW_LA_NUMBERS


def validate_upn(raw: str | None) -> str | None:
    """A Unique Pupil Number, upper case, spaces removed: ``"b801200005001"`` ->
    ``"B801200005001"``. Format and the LA number are checked (``upn_invalid``), then the
    check letter (``upn_check_letter``), with ``stdnum.gb.upn``'s algorithm.
    """
    if raw is None:
        return None
    compact = _SPACES.sub("", raw).upper()
    if not compact:
        return None
    if not (compact.isascii() and _UPN.fullmatch(compact)):
        raise StandardisationError("upn_invalid")
    if int(compact[1:4]) not in _LA_NUMBERS:
        raise StandardisationError("upn_invalid")
    if _stdnum_upn.calc_check_digit(compact[1:]) != compact[0]:
        raise StandardisationError("upn_check_letter")
    return compact


_PNC_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"
_PNC_SLASHED = re.compile(r"(\d{2}|\d{4})/(\d{1,7})([A-Z])")
_PNC_UNSLASHED = re.compile(r"(\d{2}|\d{4})(\d{7})([A-Z])")


def validate_pnc_id(raw: str | None) -> str | None:
    """A Police National Computer id with a correct check letter.

    Accepts ``YY/NNNNNNNC`` and ``YYYY/NNNNNNNC`` (serial may have fewer digits; without the
    slash the serial must have all seven). Returns the form given with the serial padded to
    seven digits: ``"12/345a"`` -> ``"12/0000345A"``, ``"2012/345A"`` -> ``"2012/0000345A"``.
    Check letter: ``"ZABCDEFGHJKLMNPQRTUVWXY"[int(YY + serial) % 23]``.
    """
    if raw is None:
        return None
    compact = _SPACES.sub("", raw).upper()
    if not compact:
        return None
    match = None
    if compact.isascii():
        match = _PNC_SLASHED.fullmatch(compact) or _PNC_UNSLASHED.fullmatch(compact)
    if match is None:
        raise StandardisationError("pnc_id_invalid")
    year, serial_text, letter = match.groups()
    if len(year) == 4 and year[:2] not in ("19", "20"):
        raise StandardisationError("pnc_id_invalid")
    serial = int(serial_text)
    if _PNC_LETTERS[int(f"{year[-2:]}{serial:07d}") % 23] != letter:
        raise StandardisationError("pnc_id_check_letter")
    return f"{year}/{serial:07d}{letter}"


# -- contact details ---------------------------------------------------------------------

# Internationalised addresses (RFC 6531) may have letters of any script in the local part.
_EMAIL_LOCAL = re.compile(r"[\w!#$%&'*+/=?^`{|}~.\-]+")
_DOMAIN_LABEL = re.compile(r"(?!-)[^\W_](?:[^\W_]|-){0,62}(?<!-)")


def normalise_email(raw: str | None) -> str | None:
    """A lower-cased email address after a basic syntax check (``email_invalid``).

    One ``@``; a local part of ordinary characters without leading, trailing or double dots;
    a domain of two or more labels (letters, digits, inner hyphens) with an alphabetic or
    ``xn--`` top-level label; no spaces; at most 254 characters. ``mailto:`` is dropped.
    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    if text[:7].casefold() == "mailto:":
        text = text[7:]
    local, at, domain = text.partition("@")
    labels = domain.split(".")
    if (
        not at
        or len(text) > 254
        or not _EMAIL_LOCAL.fullmatch(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        or not (labels[-1].isalpha() or labels[-1].casefold().startswith("xn--"))
    ):
        raise StandardisationError("email_invalid")
    return f"{local}@{domain}".lower()


_EXTENSION = re.compile(r"\s*(?:ext\.?|extension|x)\s*\d{1,6}\s*$", re.IGNORECASE)
_IS_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE


def normalise_phone(raw: str | None) -> str | None:
    """A telephone number in E.164 (``"07700 900123"`` -> ``"+447700900123"``), region GB.

    Extensions are dropped; letters are refused. GB numbers must be valid or a possible
    10-digit number (so Ofcom drama numbers pass); other countries must be possible.
    Raises ``phone_invalid``.
    """
    if raw is None:
        return None
    text = _EXTENSION.sub("", raw.strip())
    if not text:
        return None
    number = None
    if not any(ch.isalpha() for ch in text):
        try:
            number = phonenumbers.parse(text, "GB")
        except phonenumbers.NumberParseException:
            number = None
    if number is None or not _phone_ok(number):
        raise StandardisationError("phone_invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_ok(number: phonenumbers.PhoneNumber) -> bool:
    if phonenumbers.is_possible_number_with_reason(number) != _IS_POSSIBLE:
        return False
    if number.country_code != 44:
        return True
    return phonenumbers.is_valid_number(number) or len(str(number.national_number)) == 10


# -- sex ---------------------------------------------------------------------------------

SEX_CODES: Final = frozenset({"M", "F", "U", "X"})
_DEFAULT_SEX: Mapping[str, str] = {
    "m": "M",
    "male": "M",
    "man": "M",
    "boy": "M",
    "f": "F",
    "female": "F",
    "woman": "F",
    "girl": "F",
    "u": "U",
    "unknown": "U",
    "not known": "U",
    "notknown": "U",
    "not specified": "U",
    "unspecified": "U",
    "not stated": "U",
    "not recorded": "U",
    "x": "X",
    "indeterminate": "X",
}


def _sex_map(value_map: Mapping[str, str]) -> dict[str, str]:
    merged = dict(_DEFAULT_SEX)
    for key, code in value_map.items():
        if code not in SEX_CODES:
            raise ValueError(f"sex value_map codes must be one of {sorted(SEX_CODES)}")
        merged[" ".join(key.casefold().split())] = code
    return merged


def normalise_sex(raw: str | None, value_map: Mapping[str, str] | None = None) -> str | None:
    """``"M"``, ``"F"``, ``"U"`` (not known/specified) or ``"X"`` (indeterminate).

    The default map accepts M/F/U/X, male/female/unknown, man/woman/boy/girl, not
    known/not specified/not stated/not recorded, indeterminate, case-insensitively.
    ``value_map`` adds or overrides entries (e.g. ``{"1": "M", "2": "F"}``); its codes must
    be in :data:`SEX_CODES`. Raises ``sex_invalid``.
    """
    if raw is None:
        return None
    key = " ".join(raw.casefold().replace("_", " ").split())
    if not key:
        return None
    table = _DEFAULT_SEX if value_map is None else _sex_map(value_map)
    code = table.get(key)
    if code is None:
        raise StandardisationError("sex_invalid")
    return code
