"""Linkage features from decrypted record groups: the only place plaintext becomes comparable.

One flat row per record, built in memory from the ``identity``, ``identifiers`` and ``contact``
groups that :meth:`PersonStore.read` returns. Names become transliteration-proof keys,
phonetic codes and nickname/romanisation variants (the same functions ingestion indexes with),
so the SQL comparisons stay simple equality and list tests. Rows never leave memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from mash_hub.crypto.normalise import (
    name_phonetic,
    normalise_pnc_id,
    normalise_postcode,
    postcode_district,
)
from mash_hub.feeds.standardise import StandardisationError, given_name_variants, name_key

# Column names and types of a feature row, in order (DuckDB/Arrow need a stable schema).
FEATURE_COLUMNS: dict[str, str] = {
    "unique_id": "str",
    "feed": "str",
    "given_first": "str",
    "given_first_phon": "str",
    "given_tokens": "list",
    "given_variants": "list",
    "given_middles": "list",
    "given_phons": "list",
    "family": "str",
    "family_phon": "str",
    "family_all": "list",
    "names_phon_pair": "str",
    "dob": "str",
    "dob_year": "str",
    "dob_md": "str",
    "dob_dm_swapped": "str",
    "sex": "str",
    "postcode": "str",
    "postcodes": "list",
    "district": "str",
    "area": "str",
    "premise": "str",
    "street": "str",
    "house": "str",
    "town": "str",
    "nhs_number": "str",
    "upn": "str",
    "pnc_id": "str",
}

_DIGITS = re.compile(r"\d+")
_AREA = re.compile(r"[A-Z]{1,2}")


def _postcode_area(district: str | None) -> str | None:
    """The postcode area: the district's leading letters (LS6 -> LS, SW1A -> SW). Most people
    who move stay near: a new postcode in the same area is weak evidence, a distant one is
    more often a namesake."""
    match = _AREA.match(district) if district else None
    return match.group(0) if match else None


def _premise(address: Mapping[str, Any]) -> str | None:
    """House and flat numbers of an address: with the postcode they name one dwelling.

    Only numbers are compared because agencies write street and building names too
    differently (police run line 1, line 2 and town together in upper case).
    """
    text = " ".join(str(address.get(k) or "") for k in ("line1", "line2"))
    numbers = _DIGITS.findall(text)
    return " ".join(numbers) if numbers else None


_WORDS = re.compile(r"[a-z]+")
# Words that name a dwelling inside a building, not the street it stands on.
_DWELLING_WORDS = frozenset({"flat", "apartment", "apt", "unit", "room", "no"})


def _street(address: Mapping[str, Any]) -> str | None:
    """The street of an address in letters only ("12a High St." -> "high st"): the first
    comma-separated part of line 1 with words other than flat/unit/number, so a police
    extract's one-line address ("12 HIGH STREET, HAREHILLS, LEEDS") gives the same street.

    Used where a record has no postcode: street, house number and town are then what is
    left of the address (FEBRL4 has no UK postcodes, and some agency records have none).
    """
    for part in str(address.get("line1") or "").lower().split(","):
        words = [w for w in _WORDS.findall(part) if w not in _DWELLING_WORDS]
        if words:
            return " ".join(words)
    return None


def _town(address: Mapping[str, Any]) -> str | None:
    town = address.get("town")
    words = _WORDS.findall(town.lower()) if isinstance(town, str) else []
    return " ".join(words) if words else None


def _current_address(addresses: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for address in addresses:
        if address.get("current"):
            return address
    return addresses[-1] if addresses else None


# Distinct values each cache of a FeatureBuilder remembers (names, name tokens, postcodes):
# a 200,000-person hub has about 9,400 distinct names; the bound keeps a huge one in check.
CACHE_SIZE = 65_536


def _key(name: Any) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return None
    try:
        return name_key(name)
    except StandardisationError:
        return None


class FeatureBuilder:
    """Builds feature rows, computing each distinct name's key, variants and phonetic code once.

    A relink meets the same names over and over (at 200,000 people about 405,000 name keys for
    9,400 distinct names): bounded caches cut feature building by about two thirds, with the
    same rows. The caches belong to the builder, so the plaintext in them is dropped with it
    at the end of a run instead of living on in the process.
    """

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        # Plain closures, not methods: no reference cycle keeps a dropped builder's caches.
        key = lru_cache(maxsize=cache_size)(_key)
        variants = lru_cache(maxsize=cache_size)(given_name_variants)
        phonetic = lru_cache(maxsize=cache_size)(name_phonetic)

        def given_features(given_names: tuple[Any, ...]) -> tuple[Any, ...]:
            """given_first, its phonetic code, tokens, variants and their phonetic codes.

            Tokens come from all given names (first first); variants (nicknames,
            romanisations) from the first name only: siblings often share a middle name,
            so middles must not make two first names look alike."""
            tokens: list[str] = []
            for name in given_names:
                if isinstance(name, str) and (k := key(name)) is not None:
                    tokens.extend(t for t in k.split() if t not in tokens)
            if not tokens:
                return None, None, (), (), ()
            names = sorted({tokens[0], *variants(tokens[0])})
            return (
                tokens[0],
                phonetic(tokens[0]),
                tuple(tokens),
                tuple(names),
                tuple(sorted({p for t in names if (p := phonetic(t))})),
            )

        def family_features(family_name: Any, other_names: tuple[Any, ...]) -> tuple[Any, ...]:
            """family (key without spaces), its phonetic code, and every part of every family
            name (previous ones and parts of double-barrelled ones included)."""
            family_key = key(family_name) if isinstance(family_name, str) else None
            family = family_key.replace(" ", "") if family_key else None
            parts: set[str] = set()
            for name in (family_name, *other_names):
                k = key(name) if isinstance(name, str) else None
                if k:
                    parts.update(k.split())
                    parts.add(k.replace(" ", ""))
            return family, phonetic(family) if family else None, tuple(sorted(parts))

        self._given_features = given_features
        self._family_features = family_features
        self._given_part = lru_cache(maxsize=cache_size)(given_features)
        self._family_part = lru_cache(maxsize=cache_size)(family_features)
        self._postcode = lru_cache(maxsize=cache_size)(normalise_postcode)
        self._district = lru_cache(maxsize=cache_size)(postcode_district)

    def postcode(self, value: Any) -> str | None:
        return self._postcode(value) if isinstance(value, str) else normalise_postcode(value)

    def row(
        self, record_id: str, feed: str, groups: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The feature row of one record (``None`` for anything absent)."""
        identity = groups.get("identity", {})
        identifiers = groups.get("identifiers", {})
        contact = groups.get("contact", {})
        given_names = tuple(identity.get("given_names") or ())
        family_name = identity.get("family_name")
        other_names = tuple(identity.get("other_names") or ())
        try:
            given = self._given_part(given_names)
            family = self._family_part(family_name, other_names)
        except TypeError:  # an unhashable value (no name at all): computed without the cache
            given = self._given_features(given_names)
            family = self._family_features(family_name, other_names)
        first, first_phon, tokens, variants, given_phons = given
        family_key, family_phon, family_all = family
        dob = identity.get("date_of_birth") or None
        sex = identity.get("sex")
        addresses = [a for a in (contact.get("addresses") or []) if isinstance(a, Mapping)]
        current = _current_address(addresses)
        postcode = self.postcode(current.get("postcode")) if current else None
        postcodes = sorted(
            {p for a in addresses if (p := self.postcode(a.get("postcode"))) is not None}
        )
        return {
            "unique_id": record_id,
            "feed": feed,
            "given_first": first,
            "given_first_phon": first_phon,
            "given_tokens": list(tokens) or None,
            "given_variants": list(variants) or None,
            "given_phons": list(given_phons) or None,
            "family": family_key,
            "family_phon": family_phon,
            # Given names after the first (None when there are none): two records that both
            # hold middle names and share none of them are most often two people.
            "given_middles": list(tokens[1:]) or None,
            "family_all": list(family_all) or None,
            # First-name and family-name phonetic codes in either order: a name written
            # family name first still shares this (a blocking key, never compared).
            "names_phon_pair": (
                " ".join(sorted((first_phon, family_phon))) if first_phon and family_phon else None
            ),
            "dob": dob,
            "dob_year": dob[:4] if dob else None,
            "dob_md": dob[5:] if dob else None,
            "dob_dm_swapped": f"{dob[:4]}-{dob[8:10]}-{dob[5:7]}" if dob else None,
            "sex": sex if sex in ("M", "F") else None,
            "postcode": postcode,
            "postcodes": postcodes or None,
            "district": (district := self._district(postcode) if postcode else None),
            "area": _postcode_area(district),
            "premise": _premise(current) if current and postcode else None,
            "street": _street(current) if current else None,
            "house": _premise(current) if current else None,
            "town": _town(current) if current else None,
            "nhs_number": identifiers.get("nhs_number") or None,
            "upn": identifiers.get("upn") or None,
            "pnc_id": normalise_pnc_id(identifiers.get("pnc_id")),
        }


def record_features(
    record_id: str, feed: str, groups: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The feature row of one record (``None`` for anything absent); nothing is cached."""
    return FeatureBuilder(cache_size=0).row(record_id, feed, groups)


def feature_rows(
    records: Iterable[tuple[str, str, Mapping[str, Mapping[str, Any]]]],
) -> list[dict[str, Any]]:
    """Feature rows of ``(record id, feed, groups)`` triples, sorted by id for determinism."""
    builder = FeatureBuilder()
    rows = [builder.row(rid, feed, groups) for rid, feed, groups in records]
    rows.sort(key=lambda row: str(row["unique_id"]))
    return rows


class FeatureTable(Mapping[str, Mapping[str, Any]]):
    """Every record's feature row, held compactly for a whole run.

    All columns are kept as Arrow (what DuckDB reads); only the ``lookup`` columns are kept
    as Python values, by record id (what recovering comparison levels and clustering read).
    Feature dicts of every record cost about 2 KB each (360 MB at 173,583 records); built
    and converted a batch at a time, the dicts never exist all at once. Rows keep the order
    they were added in.
    """

    def __init__(self, lookup: Iterable[str]) -> None:
        self.lookup = tuple(dict.fromkeys(lookup))
        unknown = [c for c in self.lookup if c not in FEATURE_COLUMNS]
        if unknown:
            raise KeyError(f"not feature columns: {', '.join(unknown)}")
        self._index: dict[str, int] = {}
        self._columns: dict[str, list[Any]] = {c: [] for c in self.lookup}
        self._parts: list[Any] = []

    def extend(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add feature rows (the caller may drop them afterwards)."""
        if not rows:
            return
        from mash_hub.matching.duck import feature_table  # noqa: PLC0415 - duck imports us

        for row in rows:
            rid = str(row["unique_id"])
            if rid in self._index:
                raise ValueError("a record was added to the feature table twice")
            self._index[rid] = len(self._index)
        for column, values in self._columns.items():
            values.extend(row[column] for row in rows)
        self._parts.append(feature_table(list(rows)))

    def arrow(self) -> Any:
        """All rows as one Arrow table with the fixed feature schema."""
        import pyarrow as pa  # type: ignore[import-untyped]  # noqa: PLC0415

        from mash_hub.matching.duck import feature_table  # noqa: PLC0415

        return pa.concat_tables(self._parts) if self._parts else feature_table([])

    def __getitem__(self, record_id: str) -> Mapping[str, Any]:
        return _LookupRow(self._columns, self._index[record_id])

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class _LookupRow(Mapping[str, Any]):
    """One record's lookup columns; asking for any other column is an error, not None."""

    __slots__ = ("_at", "_columns")

    def __init__(self, columns: Mapping[str, list[Any]], at: int) -> None:
        self._columns = columns
        self._at = at

    def __getitem__(self, column: str) -> Any:
        return self._columns[column][self._at]

    def get(self, column: str, default: Any = None) -> Any:
        """The value (None when absent); a column the table does not keep raises KeyError."""
        return self._columns[column][self._at]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)
