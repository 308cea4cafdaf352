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

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

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


_INSERT = (
    "INSERT INTO audit_log (seq, entry_id, occurred_at, actor, action, subject_type, "
    "subject_id, details, prev_hash, entry_hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)"
)


def record(session: Session, event: AuditEvent) -> int:
    """Append ``event`` to the chain in the caller's transaction; returns its sequence number.

    The append lock is held until the caller's transaction ends, so the critical section is
    kept short: pending ORM changes are flushed first, the details are serialised before the
    lock, and the three statements go straight to the driver (psycopg prepares them after a
    few uses) on the session's own connection and transaction.
    """
    session.flush()
    details = json.dumps(event.details)
    entry_id = uuid.uuid4()
    driver: Any = session.connection().connection.driver_connection
    try:
        return _append(driver, event, details, entry_id)
    except psycopg.Error as exc:
        # Raised as SQLAlchemy raises driver errors (ProgrammingError, OperationalError, …),
        # without statement parameters; the caller's transaction then rolls back (fail closed).
        raise DBAPIError.instance(
            "audit_log append", None, exc, psycopg.Error, hide_parameters=True
        ) from exc


def _append(driver: Any, event: AuditEvent, details: str, entry_id: uuid.UUID) -> int:
    with driver.cursor() as cursor:
        # One round trip for both; still two statements, so in READ COMMITTED the head is
        # read with a snapshot taken after the lock was granted.
        with driver.pipeline():
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
            cursor.execute("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        last = cursor.fetchone()
        seq = 1 if last is None else last[0] + 1
        prev_hash = GENESIS_HASH if last is None else bytes(last[1])
        occurred_at = dt.datetime.now(dt.UTC)
        entry_hash = chain_hash(prev_hash, canonical_bytes(seq, entry_id, occurred_at, event))
        cursor.execute(
            _INSERT,
            (
                seq,
                entry_id,
                occurred_at,
                event.actor,
                event.action,
                event.subject_type,
                event.subject_id,
                details,
                prev_hash,
                entry_hash,
            ),
        )
    return seq
