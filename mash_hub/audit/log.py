"""Appending to the hash-chained audit log, inside the caller's transaction.

An entry commits with the access it records, or not at all: if the append fails, the caller's
transaction fails and the data is not returned (fail closed). Appends are serialised with a
transaction-scoped advisory lock so concurrent writers extend one unbroken chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditEntry

GENESIS_HASH = bytes(32)
_APPEND_LOCK = 0x61756474  # "audt"


@dataclass(frozen=True)
class AuditEvent:
    """What happened. ``details`` holds ids, counts and codes only, never personal data.

    Keep ``details`` to JSON strings, integers, booleans, nulls, lists and objects: floats
    such as ``1e20`` come back from JSONB as integers and would no longer verify.
    """

    actor: str
    action: str
    subject_type: str | None = None
    subject_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def canonical_bytes(
    seq: int, entry_id: uuid.UUID, occurred_at: dt.datetime, event: AuditEvent
) -> bytes:
    """The exact bytes an entry's hash covers; the verifier recomputes the same."""
    document = {
        "seq": seq,
        "entry_id": str(entry_id),
        "occurred_at": occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "details": event.details,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: bytes, body: bytes) -> bytes:
    return hashlib.sha256(prev_hash + body).digest()


def record(session: Session, event: AuditEvent) -> int:
    """Append ``event`` to the chain in the caller's transaction; returns its sequence number."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else last.seq + 1
    prev_hash = GENESIS_HASH if last is None else bytes(last.entry_hash)
    entry_id = uuid.uuid4()
    occurred_at = dt.datetime.now(dt.UTC)
    entry_hash = chain_hash(prev_hash, canonical_bytes(seq, entry_id, occurred_at, event))
    # A Core INSERT: one round trip, no identity-map bookkeeping for a row nobody re-reads.
    session.execute(
        insert(AuditEntry).values(
            seq=seq,
            entry_id=entry_id,
            occurred_at=occurred_at,
            actor=event.actor,
            action=event.action,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            details=event.details,
            prev_hash=prev_hash,
            entry_hash=entry_hash,
        )
    )
    return seq
