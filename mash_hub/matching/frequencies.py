"""Term frequencies of the values the linkage model adjusts for (first and family names).

Agreeing on "Mohammed Khan" is weaker evidence of one person than agreeing on a rare name: at
200,000 people most false merges were namesakes with common names. Splink's term-frequency
adjustment scales an exact agreement by how common the value is (see
``comparisons.TF_MINIMUM_U``). A full run counts the values of every current record; the
counts of values that at least ``TF_MINIMUM_COUNT`` records share are kept (encrypted) with
the run, so incremental linkage scores against the same frequencies without reading the
whole index. Every rarer value counts at the floor, in full runs and incremental ones alike:
one definition, so Splink's predictions and the Python scorer agree exactly.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ScalarSelect, select
from sqlalchemy.orm import Session

from mash_hub.crypto.keystore import KeyStore
from mash_hub.matching import comparisons as comp
from mash_hub.matching.models import LinkRun

# The feature columns whose exact agreement is adjusted, in definition order.
TF_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(lv.tf_column for c in comp.COMPARISONS for lv in c.levels if lv.tf_column)
)


@dataclass(frozen=True)
class TermFrequencies:
    """How many records hold each common value, and of how many records with a value."""

    totals: Mapping[str, int] = field(default_factory=dict)
    counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    def count(cls, values: Mapping[str, Iterable[Any]]) -> TermFrequencies:
        """Count each column's non-null values, keeping only the common ones."""
        totals: dict[str, int] = {}
        counts: dict[str, dict[str, int]] = {}
        for column in TF_COLUMNS:
            counter = Counter(v for v in values.get(column, ()) if v is not None)
            total = sum(counter.values())
            totals[column] = total
            counts[column] = {
                value: n
                for value, n in sorted(counter.items())
                if n >= comp.TF_MINIMUM_COUNT and n > comp.TF_MINIMUM_U * total
            }
        return cls(totals, counts)

    def frequency(self, column: str, value: Any) -> float | None:
        """The value's frequency as the adjustment uses it (never below the floor); ``None``
        for a missing value (no adjustment)."""
        if value is None:
            return None
        total = self.totals.get(column, 0)
        n = self.counts.get(column, {}).get(value)
        if n is None or not total:
            return comp.TF_MINIMUM_U
        return max(n / total, comp.TF_MINIMUM_U)

    def lookup_rows(self, column: str, values: Iterable[Any]) -> list[dict[str, Any]]:
        """Rows for Splink's ``register_term_frequency_lookup``: each distinct value with the
        frequency :meth:`frequency` gives it, so Splink adjusts exactly as the scorer does."""
        distinct = sorted({v for v in values if v is not None})
        return [{column: v, f"tf_{column}": self.frequency(column, v)} for v in distinct]

    def to_json(self) -> dict[str, Any]:
        return {"totals": dict(self.totals), "counts": {c: dict(v) for c, v in self.counts.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TermFrequencies:
        return cls(
            {str(c): int(n) for c, n in doc["totals"].items()},
            {str(c): {str(v): int(n) for v, n in vs.items()} for c, vs in doc["counts"].items()},
        )


# -- kept with the full run that counted them ------------------------------------------------

_TABLE = "link_runs"
_GROUP = "term_frequencies"
# Decrypted tables by run id: an incremental link (a referral) needs them on every call, and
# they only change with a full run. Common names only (see TF_MINIMUM_COUNT).
_CACHE: dict[uuid.UUID, TermFrequencies] = {}
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()  # the API serves searches and referrals from several threads


def seal(keys: KeyStore, session: Session, run: LinkRun, frequencies: TermFrequencies) -> None:
    """Encrypt ``frequencies`` under a data key issued for the run, onto the run's row."""
    issued = keys.issue(run.id)
    keys.save(session, [issued.row])
    run.term_frequencies = issued.cipher.encrypt_group(
        frequencies.to_json(), table=_TABLE, group=_GROUP, row_id=run.id
    )


def latest_full_run() -> ScalarSelect[uuid.UUID]:
    """The latest full run's id as a scalar subquery, so a caller can ask for it alongside
    what it asks anyway (a search: with the policy version) instead of in a round trip of its
    own."""
    return (
        select(LinkRun.id)
        .where(LinkRun.mode == "full")
        .order_by(LinkRun.started_at.desc(), LinkRun.id)
        .limit(1)
        .scalar_subquery()
    )


def latest(session: Session, keys: KeyStore) -> TermFrequencies | None:
    """The term frequencies of the latest full run (``None``: no full run yet, or one made
    before they were kept: every name then counts at the floor until the next full run)."""
    return of_run(session, keys, session.scalar(select(latest_full_run())))


def of_run(session: Session, keys: KeyStore, run_id: uuid.UUID | None) -> TermFrequencies | None:
    """The term frequencies the full run ``run_id`` kept, decrypted once per process: a run's
    are written with it and never change, so its id is the cache key, and a new full run
    (a new id) is read at its first use."""
    if run_id is None:
        return None
    with _CACHE_LOCK:
        cached = _CACHE.get(run_id)
    if cached is not None:
        return cached
    ciphertext = session.scalar(select(LinkRun.term_frequencies).where(LinkRun.id == run_id))
    cipher = keys.ciphers(session, [run_id]).get(run_id)
    if ciphertext is None or cipher is None:
        return None
    found = TermFrequencies.from_json(
        cipher.decrypt_group(bytes(ciphertext), table=_TABLE, group=_GROUP, row_id=run_id)
    )
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[run_id] = found
    return found
