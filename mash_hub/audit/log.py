"""Appending to the hash-chained audit log: insert in the caller's transaction, chain after commit.

An entry commits with the access it records, or not at all: if the insert fails, the caller's
transaction fails and the data is not returned (fail closed). The insert takes no lock, so
concurrent writers do not wait for each other's transactions.

Chaining happens after commit (migration 0011): :func:`chain_pending` takes the chain lock,
reads the head, hashes the committed unchained entries in ``seq`` order, and has the
database's ``audit_log_chain`` function (SECURITY DEFINER) fill each entry's chain position,
``prev_hash`` (taken from the head by the function itself) and ``entry_hash``, once. A
rolled-back entry never becomes visible, so it is never chained and leaves no gap.

Who chains: a committing session wakes this process's chainer thread (one per process), so
the writer does not wait; the thread, every checkpoint, and disposing an engine (the end of a
CLI command) chain whatever is committed. Until chained, an entry is durable but not yet
tamper-evident; the verifier reports how many there are.
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

log = logging.getLogger(__name__)

GENESIS_HASH = bytes(32)
# The chain lock; migration 0011's audit_log_chain() takes the same one ("audc").
CHAIN_LOCK = 0x61756463
CHAIN_BATCH = 2000
# The chainer thread waits this long after a wake-up, so one chaining transaction serves the
# commits of many writers (at most ~50 chaining transactions a second per process).
CHAIN_DELAY_SECONDS = 0.02
_PENDING = "mash_hub.audit.pending"


@dataclass(frozen=True)
class AuditEvent:
    """What happened. ``details`` holds ids, counts and codes only, never personal data.

    Keep ``details`` to JSON strings, numbers, booleans, nulls, lists and objects. The hash
    covers the details as the database stores them (JSONB), so the chainer and the verifier
    always hash the same value.
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
    "INSERT INTO audit_log (entry_id, occurred_at, actor, action, subject_type, subject_id, "
    "details) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING seq"
)


def record(session: Session, event: AuditEvent) -> int:
    """Add ``event`` in the caller's transaction; returns its ``seq`` (its id).

    One INSERT on the session's own connection and transaction, straight to the driver
    (psycopg prepares it after a few uses), with no lock. When the session commits, this
    process's chainer links the entry into the hash chain.
    """
    session.flush()
    details = json.dumps(event.details)
    driver: Any = session.connection().connection.driver_connection
    try:
        with driver.cursor() as cursor:
            cursor.execute(
                _INSERT,
                (
                    uuid.uuid4(),
                    dt.datetime.now(dt.UTC),
                    event.actor,
                    event.action,
                    event.subject_type,
                    event.subject_id,
                    details,
                ),
            )
            row = cursor.fetchone()
    except psycopg.Error as exc:
        # Raised as SQLAlchemy raises driver errors (ProgrammingError, OperationalError, …),
        # without statement parameters; the caller's transaction then rolls back (fail closed).
        raise DBAPIError.instance(
            "audit_log append", None, exc, psycopg.Error, hide_parameters=True
        ) from exc
    session.info[_PENDING] = True
    return int(row[0])


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """Wake the chainer once a session that appended has committed."""
    if session.info.pop(_PENDING, False):
        bind = session.get_bind()
        CHAINER.notify(bind.engine if isinstance(bind, Connection) else bind)


# -- chaining --------------------------------------------------------------------------------

_HEAD = (
    "SELECT chain_seq, entry_hash FROM audit_log WHERE chain_seq IS NOT NULL "
    "ORDER BY chain_seq DESC LIMIT 1"
)
_UNCHAINED = (
    "SELECT seq, entry_id, occurred_at, actor, action, subject_type, subject_id, details "
    "FROM audit_log WHERE chain_seq IS NULL ORDER BY seq LIMIT %s"
)


def chain_pending(engine: Engine, *, batch: int = CHAIN_BATCH, durable: bool = True) -> int:
    """Chain every committed unchained entry; returns how many were chained.

    Any number of processes may call this at once: they take turns on the chain lock, and
    each batch is one short transaction of its own. ``durable=False`` (the chainer thread)
    commits without waiting for the WAL flush: the chain fields are derived data, and if a
    crash loses them the entries are simply chained again. A durable call (checkpoints, the
    end of a command) returns only once the whole chain it saw is on disk, so nothing it
    vouches for can be lost.
    """
    with engine.connect() as connection:
        return _chain(connection.connection.driver_connection, batch, durable)


def _chain(driver: Any, batch: int, durable: bool) -> int:
    """The chaining loop on one psycopg connection (outside any transaction of its owner)."""
    chained = 0
    while True:
        try:
            with driver.cursor() as cursor, driver.cursor() as pending:
                # One round trip; in READ COMMITTED each statement's snapshot is taken after
                # the lock was granted, so the head and the entries are current.
                with driver.pipeline():
                    if durable:
                        # An xid makes the commit write (and flush) a commit record, which also
                        # flushes every earlier asynchronously committed chaining transaction.
                        cursor.execute("SELECT pg_current_xact_id()")
                    else:
                        cursor.execute("SET LOCAL synchronous_commit = off")
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
                    cursor.execute(_HEAD)
                    pending.execute(_UNCHAINED, (batch,))
                head = cursor.fetchone()
                prev = GENESIS_HASH if head is None else bytes(head[1])
                rows = pending.fetchall()
                seqs: list[int] = []
                hashes: list[bytes] = []
                for seq, entry_id, occurred_at, actor, action, s_type, s_id, details in rows:
                    event_ = AuditEvent(actor, action, s_type, s_id, details)
                    prev = chain_hash(prev, canonical_bytes(seq, entry_id, occurred_at, event_))
                    seqs.append(seq)
                    hashes.append(prev)
                if rows:
                    cursor.execute(
                        "SELECT audit_log_chain(%s::bigint[], %s::bytea[])", (seqs, hashes)
                    )
            driver.commit()
        except BaseException:
            driver.rollback()
            raise
        chained += len(rows)
        if len(rows) < batch:
            return chained


def drain(engine: Engine) -> int:
    """Chain what is committed now, durably, on a connection that is closed afterwards (not
    pooled), so a server or database about to go away is not kept busy."""
    with engine.connect() as connection:
        try:
            return _chain(connection.connection.driver_connection, CHAIN_BATCH, durable=True)
        finally:
            connection.invalidate()


class _Chainer:
    """This process's chainer thread: woken after commits, chains each engine's entries.

    It uses a pool of its own per engine (same settings and hooks, so the same role), never
    a connection the requests need. Failures are logged (class name only) and the entries
    stay unchained until the next wake-up, checkpoint or drain; the writer has already
    committed and is never affected.
    """

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._dirty: dict[Engine, None] = {}
        self._pools: weakref.WeakKeyDictionary[Engine, Pool] = weakref.WeakKeyDictionary()
        self._thread: threading.Thread | None = None
        self._busy: Engine | None = None

    def notify(self, engine: Engine) -> None:
        with self._wake:
            self._dirty[engine] = None
            if engine not in self._pools:
                self._pools[engine] = engine.pool.recreate()
                if not event.contains(engine, "engine_disposed", _drain_quietly):
                    event.listen(engine, "engine_disposed", _drain_quietly)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="mash-hub-audit-chainer", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def forget(self, engine: Engine) -> None:
        """Stop chaining for a disposed engine, and close the chainer's connections to it."""
        with self._wake:
            self._dirty.pop(engine, None)
            pool = self._pools.pop(engine, None)
        if pool is not None:
            pool.dispose()

    def pending(self) -> list[Engine]:
        """Engines with entries that may be unchained (to drain at exit)."""
        with self._wake:
            engines = list(self._dirty)
            self._dirty.clear()
            if self._busy is not None and all(e is not self._busy for e in engines):
                engines.append(self._busy)
            return engines

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._dirty:
                    self._wake.wait()
            time.sleep(CHAIN_DELAY_SECONDS)
            with self._wake:
                work = [(e, self._pools.get(e)) for e in self._dirty]
                self._dirty.clear()
            for engine, pool in work:
                if pool is None:
                    continue  # disposed meanwhile (and drained then)
                self._busy = engine
                try:
                    _chain_on(pool)
                except Exception as exc:  # the thread must outlive a database going away
                    log.warning(
                        "audit chaining failed (%s); entries stay unchained until the next "
                        "commit or checkpoint",
                        exc.__class__.__name__,
                    )
                finally:
                    self._busy = None

    def reset_after_fork(self) -> None:
        """A forked child has no chainer thread and must not share its parent's sockets."""
        self._wake = threading.Condition()
        self._dirty = {}
        self._pools = weakref.WeakKeyDictionary()
        self._thread = None
        self._busy = None


def _chain_on(pool: Pool) -> None:
    connection = pool.connect()
    try:
        _chain(connection.driver_connection, CHAIN_BATCH, durable=False)
    except psycopg.OperationalError:
        connection.invalidate()  # a broken connection is not put back
        raise
    finally:
        connection.close()


CHAINER = _Chainer()
os.register_at_fork(after_in_child=CHAINER.reset_after_fork)


def _drain_quietly(engine: Engine) -> None:
    """When an engine is disposed (a command ends, the server stops), chain what it wrote."""
    CHAINER.forget(engine)
    try:
        drain(engine)
    except Exception as exc:  # the database may already be gone
        log.warning("audit chaining at shutdown failed (%s)", exc.__class__.__name__)


@atexit.register
def _drain_at_exit() -> None:
    for engine in CHAINER.pending():
        _drain_quietly(engine)
