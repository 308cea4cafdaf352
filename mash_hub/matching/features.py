"""Linkage features from decrypted record groups: the only place plaintext becomes comparable.

One flat row per record, built in memory from the ``identity``, ``identifiers`` and ``contact``
groups that :meth:`PersonStore.read` returns. Names become transliteration-proof keys,
phonetic codes and nickname/romanisation variants (the same functions ingestion indexes with),
so the SQL comparisons stay simple equality and list tests. Rows never leave memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
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
    "given_phons": "list",
    "family": "str",
    "family_phon": "str",
    "family_all": "list",
    "dob": "str",
    "dob_year": "str",
    "dob_md": "str",
    "dob_dm_swapped": "str",
    "sex": "str",
    "postcode": "str",
    "postcodes": "list",
    "district": "str",
    "premise": "str",
    "nhs_number": "str",
    "upn": "str",
    "pnc_id": "str",
}

_DIGITS = re.compile(r"\d+")


def _key(name: Any) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return None
    try:
        return name_key(name)
    except StandardisationError:
        return None


def _given(given_names: Sequence[Any]) -> tuple[list[str], list[str]]:
    """Tokens of all given names (first first), and the nickname/romanisation variants of the
    first name only: siblings often share a middle name, so middles must not make two first
    names look alike."""
    tokens: list[str] = []
    for name in given_names:
        key = _key(name)
        if key is not None:
            tokens.extend(t for t in key.split() if t not in tokens)
    if not tokens:
        return [], []
    return tokens, sorted({tokens[0], *given_name_variants(tokens[0])})


def _premise(address: Mapping[str, Any]) -> str | None:
    """House and flat numbers of an address: with the postcode they name one dwelling.

    Only numbers are compared because agencies write street and building names too
    differently (police run line 1, line 2 and town together in upper case).
    """
    text = " ".join(str(address.get(k) or "") for k in ("line1", "line2"))
    numbers = _DIGITS.findall(text)
    return " ".join(numbers) if numbers else None


def _current_address(addresses: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for address in addresses:
        if address.get("current"):
            return address
    return addresses[-1] if addresses else None


def record_features(
    record_id: str, feed: str, groups: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The feature row of one record (``None`` for anything absent)."""
    identity = groups.get("identity", {})
    identifiers = groups.get("identifiers", {})
    contact = groups.get("contact", {})
    tokens, variants = _given(list(identity.get("given_names") or []))
    family_key = _key(identity.get("family_name"))
    family = family_key.replace(" ", "") if family_key else None
    family_all: set[str] = set()
    for name in [identity.get("family_name"), *(identity.get("other_names") or [])]:
        key = _key(name)
        if key:
            family_all.update(key.split())
            family_all.add(key.replace(" ", ""))
    dob = identity.get("date_of_birth") or None
    sex = identity.get("sex")
    addresses = [a for a in (contact.get("addresses") or []) if isinstance(a, Mapping)]
    current = _current_address(addresses)
    postcode = normalise_postcode(current.get("postcode")) if current else None
    postcodes = sorted(
        {p for a in addresses if (p := normalise_postcode(a.get("postcode"))) is not None}
    )
    return {
        "unique_id": record_id,
        "feed": feed,
        "given_first": tokens[0] if tokens else None,
        "given_first_phon": name_phonetic(tokens[0]) if tokens else None,
        "given_tokens": tokens or None,
        "given_variants": variants or None,
        "given_phons": sorted({p for t in variants if (p := name_phonetic(t))}) or None,
        "family": family,
        "family_phon": name_phonetic(family) if family else None,
        "family_all": sorted(family_all) or None,
        "dob": dob,
        "dob_year": dob[:4] if dob else None,
        "dob_md": dob[5:] if dob else None,
        "dob_dm_swapped": f"{dob[:4]}-{dob[8:10]}-{dob[5:7]}" if dob else None,
        "sex": sex if sex in ("M", "F") else None,
        "postcode": postcode,
        "postcodes": postcodes or None,
        "district": postcode_district(postcode) if postcode else None,
        "premise": _premise(current) if current and postcode else None,
        "nhs_number": identifiers.get("nhs_number") or None,
        "upn": identifiers.get("upn") or None,
        "pnc_id": normalise_pnc_id(identifiers.get("pnc_id")),
    }


def feature_rows(
    records: Iterable[tuple[str, str, Mapping[str, Mapping[str, Any]]]],
) -> list[dict[str, Any]]:
    """Feature rows of ``(record id, feed, groups)`` triples, sorted by id for determinism."""
    rows = [record_features(rid, feed, groups) for rid, feed, groups in records]
    rows.sort(key=lambda row: str(row["unique_id"]))
    return rows
