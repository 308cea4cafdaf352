"""Blind indexes: keyed, truncated HMACs for equality search over encrypted person data.

Each index has its own HMAC-SHA256 key, derived with HKDF-SHA256 from the provider's
blind-index root secret (``info = b"mash-hub|blind-index|v1|" + name``). The root secret is
separate from the KEKs, so KEK rotation never touches indexes; rotating the root secret
means recomputing every index row from the decrypted records
(:mod:`mash_hub.persons.rotation`).

Full-length keyed hashes (an agency's record id, a record's content, a referral's
idempotency key) cannot be recomputed: their inputs are not stored. Under a rotated root
they are computed under the oldest root and then wrapped, ``HMAC(wrap key of root g, value
under g-1)`` for each later root g, so a rotation re-keys the stored ones by wrapping them
once and equality with newly computed values is preserved.

Why truncate. An untruncated HMAC of a name is a perfect pseudonym: anyone holding a copy of
the database (without keys) sees exactly which records share a value and how often each
value occurs, and frequency analysis against public name statistics then re-identifies the
common values. Truncating to ``bits`` folds many values into each bucket, so a search
returns a superset of candidates that must be decrypted and re-checked; fewer bits leak
less and cost more decryptions. The budget follows the value's entropy and its use:

* unique identifiers (NHS number, UPN, PNC id) are near-uniform, so frequency analysis learns
  nothing and 32 bits keeps false positives negligible; what leaks is which records share an
  identifier, which is the linkage the hub exists to make anyway;
* single name tokens and phonetic codes are heavily skewed (Smith, Mohammed), so they get 16
  bits: a coarse filter, since the common values stay recognisable by their frequency
  whatever the width;
* date of birth 16 bits (about 36,500 plausible dates, so still close to exact equality),
  year of birth 8 bits (only about 120 values: equality is all it can leak), postcode 20
  bits, postcode district 12 bits (a hub covers few districts, so equality is near exact);
* compounds (family phonetic + DOB, given token + family token, DOB + district, family
  phonetic + birth year) are what searches mostly use; they are near-unique per person, so 32
  bits (24 for the coarser birth-year compound) keeps candidate lists short while their
  values, being close to uniform, resist frequency analysis.

Values are returned as non-negative ``int`` below 2**63 so PostgreSQL can store them in a
``BIGINT`` column; ``index_id`` lets one table ``(index_id, value, record_id)`` hold all of
them. Never renumber an ``index_id`` or change a spec's bits or normaliser without a reindex.

Stored index ids come in two *banks*: a spec's own id (1-99) under roots of even generation
(no rotation yet, or two), that id + 100 under odd ones. A root rotation writes the pending
root's rows beside the current ones in the same table, and switches by changing which root
the database is keyed by, without copying the index (see :mod:`mash_hub.persons.rotation`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mash_hub.crypto.errors import IndexRootMismatchError
from mash_hub.crypto.keys import (
    KEY_BYTES,
    IndexRoots,
    KeyProvider,
    index_root_fingerprint,
    index_roots_of,
)
from mash_hub.crypto.normalise import (
    DELETION_MAX_CHARS,
    birth_year,
    deletion_neighbourhood,
    name_phonetic,
    name_tokens,
    normalise_dob,
    normalise_nhs_number,
    normalise_pnc_id,
    normalise_postcode,
    normalise_upn,
    postcode_district,
)

__all__ = [
    "INDEX_SPECS",
    "BlindIndexer",
    "IndexSpec",
    "IndexTerm",
    "index_terms",
]

_HKDF_SALT = b"mash-hub|blind-index-salt|v1"
_HKDF_INFO = b"mash-hub|blind-index|v1|"
_WRAP_INFO = b"mash-hub|keyed-hash-wrap|v1|"
# The two kinds of full-length keyed hash, each with its own key per root.
SOURCE_KEY = "source-record-id"
CONTENT_HASH = "record-content"
_BASE_INFO = {
    SOURCE_KEY: b"mash-hub|source-record-id|v1",
    CONTENT_HASH: b"mash-hub|record-content|v1",
}
_JOIN = "\x1f"
# Stored index id = spec id + BANK_OFFSET * (root generation % 2); spec ids stay below it.
BANK_OFFSET = 100
_PAD = "\x1e"
# Family-name parts paired with the first given name in the deletion index (bounds its terms).
DELETION_FAMILY_PARTS = 2
# Terms per (given, family) pair in the deletion index, padding included: the two
# neighbourhoods share the exact pair.
DELETION_PAIR_TERMS = 2 * (DELETION_MAX_CHARS + 1) - 1


def _one(normaliser: Callable[[Any], str | None]) -> Callable[[Any], list[str]]:
    def apply(raw: Any) -> list[str]:
        value = normaliser(raw)
        return [value] if value else []

    return apply


def _tokens(raw: Any) -> list[str]:
    return name_tokens(str(raw)) if raw else []


def _phonetics(raw: Any) -> list[str]:
    return _dedupe(code for token in _tokens(raw) if (code := name_phonetic(token)))


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One blind index: stable id, truncation width, and what equality on it reveals.

    ``normaliser`` maps one raw input value to its index keys; compound indexes have none
    because :func:`index_terms` builds them from several fields.
    """

    name: str
    index_id: int
    bits: int
    description: str
    leaks: str
    normaliser: Callable[[Any], list[str]] | None = None


_SPECS: tuple[IndexSpec, ...] = (
    IndexSpec(
        "nhs_number",
        1,
        32,
        "NHS number, 10 digits",
        "which records share an NHS number",
        _one(normalise_nhs_number),
    ),
    IndexSpec(
        "upn",
        2,
        32,
        "Unique Pupil Number, 13 characters",
        "which records share a UPN",
        _one(normalise_upn),
    ),
    IndexSpec(
        "pnc_id",
        3,
        32,
        "PNC id as YY/NNNNNNNC",
        "which records share a PNC id",
        _one(normalise_pnc_id),
    ),
    IndexSpec(
        "given_token",
        4,
        16,
        "each given-name token and joined multi-part form",
        "coarse given-name equality; the most common names stand out by frequency",
        _tokens,
    ),
    IndexSpec(
        "family_token",
        5,
        16,
        "each family-name token and joined multi-part form",
        "coarse family-name equality; the most common names stand out by frequency",
        _tokens,
    ),
    IndexSpec(
        "given_phonetic",
        6,
        16,
        "Metaphone of each given-name token",
        "coarse sounds-alike equality of given names",
        _phonetics,
    ),
    IndexSpec(
        "family_phonetic",
        7,
        16,
        "Metaphone of each family-name token",
        "coarse sounds-alike equality of family names (e.g. a sibling group)",
        _phonetics,
    ),
    IndexSpec(
        "dob",
        8,
        16,
        "date of birth, ISO YYYY-MM-DD",
        "near-exact date-of-birth equality and the shape of the age profile",
        _one(normalise_dob),
    ),
    IndexSpec(
        "birth_year",
        9,
        8,
        "four-digit year of birth",
        "year-of-birth equality (about 120 values) and the age profile",
        _one(birth_year),
    ),
    IndexSpec(
        "postcode",
        10,
        20,
        "full UK postcode, upper case, no spaces",
        "which records share an address postcode (households)",
        _one(normalise_postcode),
    ),
    IndexSpec(
        "postcode_district",
        11,
        12,
        "postcode outward code",
        "district equality: how records spread over the hub's few districts",
        _one(postcode_district),
    ),
    IndexSpec(
        "family_phonetic_dob",
        12,
        32,
        "family-name Metaphone + date of birth",
        "records that are probably the same person (or twins)",
    ),
    IndexSpec(
        "given_family_token",
        13,
        32,
        "given-name token + family-name token",
        "records sharing a full name",
    ),
    IndexSpec(
        "dob_postcode_district",
        14,
        32,
        "date of birth + postcode district",
        "records sharing a birth date within one district",
    ),
    IndexSpec(
        "family_phonetic_birth_year",
        15,
        24,
        "family-name Metaphone + year of birth",
        "sounds-alike family name within one birth year (survives day/month typos)",
    ),
    IndexSpec(
        "name_deletion_pair",
        16,
        32,
        "first given-name key + family-name key, one of them replaced by each of its "
        "one-letter deletions; padded to a fixed number of terms per pair",
        "records whose full names are equal or one keying slip apart in one of the two names",
    ),
)

INDEX_SPECS: Mapping[str, IndexSpec] = {spec.name: spec for spec in _SPECS}


class IndexTerm(NamedTuple):
    """A row for the blind-index table: which index, and the truncated HMAC value."""

    index_id: int
    value: int


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value if item]


def _split_full_name(full: str) -> tuple[list[str], list[str]]:
    """Given and family tokens of a free-text alias; a one-word alias counts as both."""
    words = full.split()
    if len(words) <= 1:
        tokens = _tokens(full)
        return tokens, tokens
    return _tokens(" ".join(words[:-1])), _tokens(words[-1])


def deletion_pairs(
    given_first: str | None, family_parts: Iterable[str], *, padded: bool
) -> list[str]:
    """Keys of the ``name_deletion_pair`` index for one first given-name key and family parts.

    For each pair: (each member of the given key's deletion neighbourhood, family key) and
    (given key, each member of the family key's neighbourhood), so a slip in either name (not
    both) still shares a key with the record. Stored records pad each pair to
    :data:`DELETION_PAIR_TERMS` with keys no search asks for, so the number of rows says
    nothing about how long a name is; a search needs no padding.
    """
    if not given_first:
        return []
    given_first = given_first[:DELETION_MAX_CHARS]
    keys: list[str] = []
    for part in list(family_parts)[:DELETION_FAMILY_PARTS]:
        family = part[:DELETION_MAX_CHARS]
        pair = dict.fromkeys(
            [_JOIN.join((g, family)) for g in deletion_neighbourhood(given_first)]
            + [_JOIN.join((given_first, f)) for f in deletion_neighbourhood(family)]
        )
        if padded:
            pad = _JOIN.join((given_first, family))
            pair.update(
                dict.fromkeys(
                    f"{_PAD}{n}{_JOIN}{pad}" for n in range(DELETION_PAIR_TERMS - len(pair))
                )
            )
        keys += pair
    return keys


def _family_parts(family_name: Any) -> list[str]:
    """The parts of a family name, without the joined form of a multi-part one."""
    tokens = _tokens(family_name)
    return tokens[:-1] if len(tokens) > 1 else tokens


def _first_given(given_names: Any) -> str | None:
    for name in _as_list(given_names):
        tokens = _tokens(name)
        if tokens:
            return tokens[0]
    return None


def index_terms(person_fields: Mapping[str, Any], *, padded: bool = True) -> list[tuple[str, str]]:
    """(index name, normalised key) pairs for a person or a search query.

    Understood keys: ``given_names`` (list or str), ``family_name``, ``other_names`` (list of
    full alias names), ``date_of_birth`` (date or ISO str), ``birth_year`` (used when there is
    no date of birth), ``postcodes`` (list) or ``postcode``, ``nhs_number``, ``upn``,
    ``pnc_id``. Missing or unusable values are skipped. The first given name is the first
    of ``given_names`` (a search puts the typed name first, its variants after).
    ``padded`` adds the deletion index's padding keys (stored records, not searches).
    """
    given: list[str] = []
    for name in _as_list(person_fields.get("given_names")):
        given += _tokens(name)
    family = _tokens(person_fields.get("family_name"))
    for alias in _as_list(person_fields.get("other_names")):
        alias_given, alias_family = _split_full_name(alias)
        given += alias_given
        family += alias_family
    given, family = _dedupe(given), _dedupe(family)
    given_ph = _dedupe(code for t in given if (code := name_phonetic(t)))
    family_ph = _dedupe(code for t in family if (code := name_phonetic(t)))

    dob = normalise_dob(person_fields.get("date_of_birth"))
    raw_year = person_fields.get("birth_year")
    year = birth_year(dob) if dob else (f"{int(raw_year):04d}" if raw_year else None)
    postcodes = _as_list(person_fields.get("postcodes")) + _as_list(person_fields.get("postcode"))
    full_postcodes = _dedupe(p for raw in postcodes if (p := normalise_postcode(raw)))
    districts = _dedupe(d for raw in postcodes if (d := postcode_district(raw)))

    terms: list[tuple[str, str]] = []
    for index_name, normaliser in (
        ("nhs_number", normalise_nhs_number),
        ("upn", normalise_upn),
        ("pnc_id", normalise_pnc_id),
    ):
        for raw in _as_list(person_fields.get(index_name)):
            if key := normaliser(raw):
                terms.append((index_name, key))
    terms += [("given_token", t) for t in given]
    terms += [("family_token", t) for t in family]
    terms += [("given_phonetic", c) for c in given_ph]
    terms += [("family_phonetic", c) for c in family_ph]
    if dob:
        terms.append(("dob", dob))
    if year:
        terms.append(("birth_year", year))
    terms += [("postcode", p) for p in full_postcodes]
    terms += [("postcode_district", d) for d in districts]
    if dob:
        terms += [("family_phonetic_dob", _JOIN.join((c, dob))) for c in family_ph]
        terms += [("dob_postcode_district", _JOIN.join((dob, d))) for d in districts]
    if year:
        terms += [("family_phonetic_birth_year", _JOIN.join((c, year))) for c in family_ph]
    terms += [("given_family_token", _JOIN.join((g, f))) for g in given for f in family]
    terms += [
        ("name_deletion_pair", key)
        for key in deletion_pairs(
            _first_given(person_fields.get("given_names")),
            _family_parts(person_fields.get("family_name")),
            padded=padded,
        )
    ]
    return list(dict.fromkeys(terms))


class _Generation:
    """The keys of one root and the roots before it (oldest first), each derived once."""

    __slots__ = ("_chain", "_derived", "_index_keys", "_specs", "bank", "fingerprint", "fixed")

    def __init__(self, chain: tuple[bytes, ...], specs: Mapping[str, IndexSpec]) -> None:
        for root in chain:
            if len(root) != KEY_BYTES:
                raise ValueError(f"the blind-index root key must be {KEY_BYTES} bytes")
        self._chain = chain
        self._specs = specs
        self._derived: dict[tuple[int, bytes], bytes] = {}
        self._index_keys: dict[str, tuple[bytes, int, int]] = {}
        self.fingerprint = index_root_fingerprint(chain[-1])
        # Generation = rotations so far = roots before this one.
        self.bank = (len(chain) - 1) % 2
        self.fixed: BlindIndexer | None = None

    def _derive(self, position: int, info: bytes) -> bytes:
        key = self._derived.get((position, info))
        if key is None:
            key = HKDF(
                algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_HKDF_SALT, info=info
            ).derive(self._chain[position])
            self._derived[(position, info)] = key
        return key

    def index_key(self, index_name: str) -> tuple[bytes, int, int]:
        """(HMAC key, bits, index id) of one index under this root."""
        entry = self._index_keys.get(index_name)
        if entry is None:
            try:
                spec = self._specs[index_name]
            except KeyError:
                raise KeyError(f"unknown blind index {index_name!r}") from None
            key = self._derive(len(self._chain) - 1, _HKDF_INFO + index_name.encode("utf-8"))
            entry = (key, spec.bits, spec.index_id + BANK_OFFSET * self.bank)
            self._index_keys[index_name] = entry
        return entry

    def keyed_hash(self, purpose: str, message: bytes) -> bytes:
        """The full-length keyed hash under the oldest root, wrapped through each later one."""
        value = hmac.digest(self._derive(0, _BASE_INFO[purpose]), message, "sha256")
        for position in range(1, len(self._chain)):
            value = self.wrap(purpose, value, position)
        return value

    def wrap(self, purpose: str, value: bytes, position: int = -1) -> bytes:
        """One wrapping step under the root at ``position`` (by default this generation's)."""
        at = position % len(self._chain)
        key = self._derive(at, _WRAP_INFO + purpose.encode("ascii"))
        return hmac.digest(key, value, "sha256")


class _View:
    """What a process indexes under: the current generation and, during a rotation, the
    pending one; ``promoted`` once the database says the pending root has become current."""

    __slots__ = ("current", "pending", "promoted", "roots")

    def __init__(self, roots: IndexRoots, specs: Mapping[str, IndexSpec]) -> None:
        self.roots: IndexRoots | None = roots
        chain = (*roots.previous, roots.current)
        self.current = _Generation(chain, specs)
        self.pending = (
            None if roots.pending is None else _Generation((*chain, roots.pending), specs)
        )
        self.promoted = False

    @classmethod
    def single(cls, gen: _Generation) -> _View:
        view = cls.__new__(cls)
        view.roots = None
        view.current = gen
        view.pending = None
        view.promoted = False
        return view

    def active(self) -> _Generation:
        if self.promoted and self.pending is not None:
            return self.pending
        return self.current

    def next(self) -> _Generation | None:
        return None if self.promoted else self.pending


class BlindIndexer:
    """Computes blind-index values with one HKDF-derived HMAC key per index.

    Built from a provider, it follows the provider's roots: a pending root added by a
    rotation is noticed on the next call (the provider re-reads a changed keyring), and so
    is the switch to it.
    """

    __slots__ = ("_provider", "_specs", "_view_cache")

    def __init__(
        self,
        root_key: bytes | IndexRoots,
        specs: Mapping[str, IndexSpec] = INDEX_SPECS,
        *,
        provider: KeyProvider | None = None,
    ) -> None:
        ids = [spec.index_id for spec in specs.values()]
        if len(set(ids)) != len(ids):
            raise ValueError("index ids must be unique")
        for name, spec in specs.items():
            if name != spec.name or not 1 <= spec.bits <= 63:
                raise ValueError(f"bad index spec {name!r}: name mismatch or bits not in 1..63")
            if not 1 <= spec.index_id < BANK_OFFSET:
                raise ValueError(f"bad index spec {name!r}: index id not in 1..{BANK_OFFSET - 1}")
        roots = root_key if isinstance(root_key, IndexRoots) else IndexRoots(bytes(root_key))
        self._specs = dict(specs)
        self._provider = provider
        self._view_cache = _View(roots, self._specs)

    @classmethod
    def from_provider(cls, provider: KeyProvider) -> BlindIndexer:
        """Indexer keyed by the provider's blind-index roots, following their changes."""
        return cls(index_roots_of(provider), provider=provider)

    def __repr__(self) -> str:
        return f"<BlindIndexer indexes={len(self._specs)} (key hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("BlindIndexer holds keys and cannot be pickled")

    def _view(self) -> _View:
        view = self._view_cache
        if self._provider is not None:
            roots = index_roots_of(self._provider)
            if roots is not view.roots and roots != view.roots:  # a changed keyring
                view = _View(roots, self._specs)
                self._view_cache = view
        return view

    def _gen(self) -> _Generation:
        return self._view().active()

    # -- rotation ---------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the root new index values are computed under."""
        return self._gen().fingerprint

    @property
    def pending_fingerprint(self) -> str | None:
        following = self._view().next()
        return None if following is None else following.fingerprint

    def pending(self) -> BlindIndexer | None:
        """An indexer fixed on the pending root (the values a rotation switches to), if any."""
        following = self._view().next()
        return None if following is None else self._fixed(following)

    def current(self) -> BlindIndexer:
        """An indexer fixed on the current root (stable across a concurrent switch)."""
        return self._fixed(self._gen())

    def _fixed(self, gen: _Generation) -> BlindIndexer:
        """An indexer on one generation, sharing its derived keys (cached on it)."""
        if gen.fixed is None:
            fixed = BlindIndexer.__new__(BlindIndexer)
            fixed._specs = self._specs
            fixed._provider = None
            fixed._view_cache = _View.single(gen)
            gen.fixed = fixed
        return gen.fixed

    def align(self, database_fingerprint: str | None) -> None:
        """Agree with the database about which root is current.

        The database records a rotation's switch before the keyring is rewritten; in between
        (or if the rotation stopped there), a process that sees the switch uses the pending
        root as current, so it never searches or writes under a root the indexes left.
        """
        if database_fingerprint is None:
            return
        view = self._view()
        if database_fingerprint == view.active().fingerprint:
            return
        if view.pending is not None and database_fingerprint == view.pending.fingerprint:
            view.promoted = True
            return
        raise IndexRootMismatchError(
            f"the database's blind indexes are keyed by root {database_fingerprint}, which is "
            f"not the key provider's current root {view.active().fingerprint}: is this the "
            "keyring this database was built with?"
        )

    def wrap_for_pending(self, purpose: str, value: bytes) -> bytes:
        """Re-key a stored full-length keyed hash from the current root to the pending one."""
        following = self._view().next()
        if following is None:
            raise ValueError("there is no pending blind-index root")
        return following.wrap(purpose, value)

    # -- values -----------------------------------------------------------------------------

    def spec(self, index_name: str) -> IndexSpec:
        try:
            return self._specs[index_name]
        except KeyError:
            raise KeyError(f"unknown blind index {index_name!r}") from None

    @property
    def specs(self) -> Mapping[str, IndexSpec]:
        return self._specs

    def index_id(self, index_name: str) -> int:
        """The stored id of an index under the current root (see the module docstring)."""
        return self._gen().index_key(index_name)[2]

    @property
    def bank(self) -> tuple[int, int]:
        """The lowest and highest stored index id under the current root."""
        low = BANK_OFFSET * self._gen().bank
        return low + 1, low + BANK_OFFSET - 1

    def _key(self, index_name: str) -> bytes:
        return self._gen().index_key(index_name)[0]

    def compute(self, index_name: str, normalised_value: str) -> int:
        """HMAC-SHA256 of an already-normalised value, truncated to the index's bits."""
        return self.term(index_name, normalised_value).value

    def term(self, index_name: str, normalised_value: str) -> IndexTerm:
        """The (index_id, value) row for one normalised value."""
        return _term(self._gen(), index_name, normalised_value)

    def lookup(self, index_name: str, raw_value: Any) -> list[IndexTerm]:
        """Terms for one raw value of a single-field index (e.g. a typed-in NHS number)."""
        normaliser = self.spec(index_name).normaliser
        if normaliser is None:
            raise ValueError(f"{index_name!r} is a compound index; use query_terms()")
        gen = self._gen()
        return [_term(gen, index_name, key) for key in normaliser(raw_value)]

    def source_key(self, feed: str, source_record_id: str) -> bytes:
        """Full-length keyed hash of an agency's own record id, unique per feed.

        Lets a re-sent record find the version it replaces without storing the agency's id
        in clear; untruncated because it must not collide.
        """
        message = _JOIN.join((feed, source_record_id.strip())).encode("utf-8")
        return self._gen().keyed_hash(SOURCE_KEY, message)

    def content_hash(self, canonical: bytes) -> bytes:
        """Keyed hash of a record's canonical content, to spot unchanged re-sent records
        without decrypting (unkeyed, it would let anyone test a guessed record)."""
        return self._gen().keyed_hash(CONTENT_HASH, canonical)

    def terms_for(self, person_fields: Mapping[str, Any]) -> list[IndexTerm]:
        """(index_id, value) rows to store for a person."""
        return [IndexTerm(*row) for row in self.term_rows(person_fields)]

    def term_rows(self, person_fields: Mapping[str, Any]) -> list[tuple[int, int]]:
        """:meth:`terms_for` as plain tuples, for bulk writes: each index's key looked up
        once per record rather than once per term, one HMAC call per distinct key."""
        gen = self._gen()
        keys: dict[str, tuple[bytes, int, int]] = {}
        rows: dict[tuple[int, int], None] = {}
        digest = hmac.digest
        for name, value in index_terms(person_fields):
            entry = keys.get(name)
            if entry is None:
                entry = keys[name] = gen.index_key(name)
            key, bits, index_id = entry
            mac = digest(key, value.encode("utf-8"), "sha256")
            rows[(index_id, int.from_bytes(mac[:8], "big") >> (64 - bits))] = None
        return list(rows)

    def query_terms(
        self, query_fields: Mapping[str, Any], *, indexes: Collection[str] | None = None
    ) -> list[IndexTerm]:
        """The same terms for a search, optionally limited to some indexes (e.g. compounds)."""
        gen = self._gen()
        return list(
            dict.fromkeys(
                _term(gen, n, v)
                for n, v in index_terms(query_fields, padded=False)
                if indexes is None or n in indexes
            )
        )


def _term(gen: _Generation, index_name: str, normalised_value: str) -> IndexTerm:
    key, bits, index_id = gen.index_key(index_name)
    digest = hmac.digest(key, normalised_value.encode("utf-8"), "sha256")
    return IndexTerm(index_id, int.from_bytes(digest[:8], "big") >> (64 - bits))
