"""Minimal, deterministic normalisers for blind-index keys.

Blind indexes only find equal bytes, so every writer and every searcher must normalise the
same way; changing any function here changes index values and needs a full reindex. The
fuller standardisation layer calls these for index keys rather than re-implementing them.
Each function returns ``None`` when the input cannot yield a usable key.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import jellyfish

__all__ = [
    "DELETION_MAX_CHARS",
    "DELETION_MIN_CHARS",
    "birth_year",
    "deletion_neighbourhood",
    "name_phonetic",
    "name_tokens",
    "normalise_dob",
    "normalise_nhs_number",
    "normalise_pnc_id",
    "normalise_postcode",
    "normalise_upn",
    "postcode_district",
]

# Letters NFKD does not decompose into ASCII base letters (applied after casefold).
_TRANSLIT = str.maketrans(
    {
        "ł": "l",
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ı": "i",
        "ħ": "h",
        "ŧ": "t",
        "ŀ": "l",
        "ĸ": "k",
    }
)
# Apostrophes and ayn/hamza marks join ("O'Brien" -> "obrien"); separators split tokens.
_APOSTROPHES = frozenset("'’‘ʼʻʾʿ`´")
_SEPARATORS = frozenset("-‐‑‒–—―.,/_")
_UK_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
_OUTWARD = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
_PNC = re.compile(r"^(\d{2}|\d{4})/?(\d{1,7})([A-Z])$")
_UPN = re.compile(r"^[A-Z0-9]{13}$")


def _ascii_fold_table() -> dict[int, str | None]:
    """What :func:`_fold` does to each ASCII character, as one ``str.translate`` table."""
    table: dict[int, str | None] = {}
    for code in range(128):
        char = chr(code)
        if char in _APOSTROPHES:
            table[code] = None
        elif char.isalpha():
            table[code] = char.lower()
        elif char.isspace() or char in _SEPARATORS:
            table[code] = " "
        else:
            table[code] = None
    return table


_ASCII_FOLD = _ascii_fold_table()


def _fold(text: str) -> str:
    """Casefold, transliterate and strip diacritics, keeping letters and token separators."""
    if text.isascii():
        # Nothing to transliterate or decompose: one table look-up per character gives the
        # same result (tested against the general path) several times faster.
        return text.translate(_ASCII_FOLD)
    return _fold_general(text)


def _fold_general(text: str) -> str:
    """:func:`_fold` for any text: transliterate, decompose, keep letters and separators."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_TRANSLIT))
    out: list[str] = []
    for char in decomposed:
        if char in _APOSTROPHES or unicodedata.combining(char):
            continue
        if char.isalpha():
            out.append(char)
        elif char.isspace() or char in _SEPARATORS:
            out.append(" ")
    # Compatibility characters (e.g. enclosed letters) only decompose after the first casefold.
    return unicodedata.normalize("NFC", "".join(out)).casefold()


def name_tokens(name: str) -> list[str]:
    """Tokens of one name, plus the joined form when it has several parts.

    ``"O'Brien-Smith"`` gives ``["obrien", "smith", "obriensmith"]``; "José" gives "jose".
    Single ASCII letters (initials) are dropped: they would only fill huge buckets.
    """
    parts = [p for p in _fold(name).split() if not (len(p) == 1 and p.isascii())]
    if len(parts) > 1:
        parts.append("".join(parts))
    return list(dict.fromkeys(parts))


# A name key of at least this many letters is indexed with its one-letter deletions; a shorter
# one only as itself. Two, so that Li, Ng, Wu and Ho forgive a slip too: the keys pair a name
# with the other name whole, so short keys do not widen candidate sets. Measured over 200,000
# synthetic people (benchmarks/bench_deletion_index.py): minimum 2, 3, 4, 5 letters give
# one-edit family-name recall 0.998, 0.994, 0.983, 0.908 and given-name recall 1.0, 0.9995,
# 0.963, 0.815, with the same candidate sets (median 3, p95 31 people) for 2 to 4.
DELETION_MIN_CHARS = 2
# Only the first letters of a longer key take part: one edit of a name is one edit of its
# prefix, or the prefixes still share a deletion, so the property survives, and the number of
# terms per name stays bounded (and says nothing about names longer than this).
DELETION_MAX_CHARS = 10


def deletion_neighbourhood(token: str) -> list[str]:
    """The key and each of its one-letter deletions (symmetric deletion, as in SymSpell).

    Two keys one insertion, deletion, substitution or adjacent transposition apart share at
    least one member: a deletion from the longer gives the shorter; a substitution or a
    transposition at i and i+1 gives the same string with position i (or i+1) deleted from
    each. Keys are cut to :data:`DELETION_MAX_CHARS` first (see there). At most
    ``DELETION_MAX_CHARS + 1`` members, the key first.
    """
    key = token[:DELETION_MAX_CHARS]
    if not key:
        return []
    if len(key) < DELETION_MIN_CHARS:
        return [key]
    return list(dict.fromkeys([key, *(key[:i] + key[i + 1 :] for i in range(len(key)))]))


def name_phonetic(token: str) -> str | None:
    """Metaphone code of a normalised token (joins Smith/Smyth, Mohammed/Muhammad/Mohamed).

    Metaphone is defined for Latin letters only; other scripts get no phonetic key.
    """
    if not token or not (token.isascii() and token.isalpha()):
        return None
    code: str = jellyfish.metaphone(token)
    return code or None


def normalise_dob(value: dt.date | str | None) -> str | None:
    """ISO ``YYYY-MM-DD`` of a date of birth (datetimes lose their time part)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return None


def birth_year(value: dt.date | str | None) -> str | None:
    """Four-digit year of birth."""
    iso = normalise_dob(value)
    return iso[:4] if iso else None


def _compact_upper(value: str) -> str:
    return re.sub(r"\s+", "", value).upper()


def normalise_postcode(value: str | None) -> str | None:
    """Full UK postcode, upper case without spaces (``"sw1a 1aa"`` -> ``"SW1A1AA"``)."""
    if not value:
        return None
    compact = _compact_upper(value)
    return compact if _UK_POSTCODE.fullmatch(compact) else None


def postcode_district(value: str | None) -> str | None:
    """Outward code (postcode district) of a full postcode or of an outward code alone."""
    if not value:
        return None
    compact = _compact_upper(value)
    match = _UK_POSTCODE.fullmatch(compact)
    if match:
        return match.group(1)
    return compact if _OUTWARD.fullmatch(compact) else None


def normalise_nhs_number(value: str | None) -> str | None:
    """Ten digits, separators removed (the checksum is the standardisation layer's job)."""
    if not value:
        return None
    digits = re.sub(r"[\s\-]", "", value)
    return digits if len(digits) == 10 and digits.isascii() and digits.isdigit() else None


def normalise_upn(value: str | None) -> str | None:
    """Unique Pupil Number: 13 upper-case letters/digits."""
    if not value:
        return None
    compact = _compact_upper(value)
    return compact if _UPN.fullmatch(compact) else None


def normalise_pnc_id(value: str | None) -> str | None:
    """PNC id as ``YY/NNNNNNNC`` (two-digit year, 7-digit zero-padded serial, check letter).

    ``2012/345A``, ``12/345A`` and ``12/0000345A`` all give ``12/0000345A``. The two-digit year
    is used because it is what the PNC check letter covers and because expanding ``YY`` to
    four digits would need a guessed century pivot; ids 100 years apart with the same serial
    are not a practical collision.
    """
    if not value:
        return None
    match = _PNC.fullmatch(_compact_upper(value))
    if not match:
        return None
    year, serial, check = match.groups()
    return f"{year[-2:]}/{int(serial):07d}{check}"
