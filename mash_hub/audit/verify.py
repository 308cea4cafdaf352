"""Verifying the audit log: the hash chain from the first entry, and the signed checkpoints.

What is checked, in one pass over ``audit_log`` in ``seq`` order (a server-side cursor, large
batches, one REPEATABLE READ snapshot):

* ``seq`` runs 1, 2, 3, … with no gap (a gap is a deleted entry);
* each entry's ``prev_hash`` is the hash of the entry before it (a break is an inserted,
  reordered or replaced entry);
* each entry's ``entry_hash`` is SHA-256(prev_hash || canonical bytes of its contents),
  recomputed here in Python (an edited entry fails this);
* at each signed checkpoint's ``seq`` the recomputed head equals the signed head hash (a
  history rewritten *with* recomputed hashes fails this), and the log reaches the newest
  checkpoint (a truncated tail fails this).

Only the hashing and the canonical encoding happen here; the database just returns column
values (as text), so a tampered database function cannot make a changed entry verify.
Entries after the newest checkpoint are chain-checked but not yet vouched for by a signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from mash_hub.audit.checkpoint import Checkpoint, CheckpointFileError, load_checkpoints
from mash_hub.audit.log import GENESIS_HASH
from mash_hub.crypto.signing import AuditVerifyKey

# The same encoders json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":"))
# uses, built once: json.dumps with keyword arguments builds a new encoder on every call.
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_encode_details = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_DETAILS_CACHE_LIMIT = 4096

_SELECT = (
    "SELECT seq, entry_id::text, occurred_at::text, actor, action, subject_type, subject_id, "
    "details::text, prev_hash, entry_hash FROM audit_log WHERE seq >= %s ORDER BY seq"
)


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the log. ``seq`` is the first bad entry (or checkpoint's)."""

    seq: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class VerifyReport:
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: bytes | None = None
    seconds: float = 0.0
    checkpoints: int = 0
    latest_checkpoint: Checkpoint | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    @property
    def unsigned_tail(self) -> int:
        """Entries after the newest signed checkpoint: chain-checked, not yet signed."""
        if self.last_seq is None:
            return 0
        signed = self.latest_checkpoint.seq if self.latest_checkpoint else 0
        return max(0, self.last_seq - signed)

    def as_dict(self) -> dict[str, Any]:
        problem = self.problem
        return {
            "ok": self.ok,
            "entries_checked": self.entries,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head_hash": self.head_hash.hex() if self.head_hash else None,
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(self.rate),
            "checkpoints_checked": self.checkpoints,
            "latest_checkpoint_seq": self.latest_checkpoint.seq if self.latest_checkpoint else None,
            "unsigned_tail": self.unsigned_tail,
            "problem": None
            if problem is None
            else {"seq": problem.seq, "kind": problem.kind, "message": problem.message},
        }


def _canonical_time(text: str) -> str:
    """``occurred_at::text`` under TimeZone UTC and DateStyle ISO, as Python's isoformat.

    PostgreSQL prints ``2026-11-28 14:19:57.12+00`` (trailing zeros of the fraction dropped);
    the chain covers ``2026-11-28T14:19:57.120000+00:00``.
    """
    if len(text) >= 22 and text[-3:] == "+00" and text[10] == " ":
        frac = text[19:-3]
        return f"{text[:10]}T{text[11:19]}{(frac or '.').ljust(7, '0')}+00:00"
    parsed = dt.datetime.fromisoformat(text)  # years beyond 9999 and the like: slow path
    return parsed.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _collect_checkpoints(
    report: VerifyReport,
    checkpoints: Iterable[tuple[str, Checkpoint]],
    verify_key: AuditVerifyKey | None,
) -> dict[int, Checkpoint] | None:
    """Signature-checked checkpoints by seq; None (with a problem recorded) if any is bad."""
    by_seq: dict[int, Checkpoint] = {}
    for where, cp in checkpoints:
        if verify_key is None:
            report.problems.append(
                Problem(
                    cp.seq,
                    "checkpoint_key",
                    f"cannot check the checkpoint in {where}: no signing key is configured",
                )
            )
            return None
        if cp.key_id != verify_key.key_id:
            report.problems.append(
                Problem(
                    cp.seq,
                    "checkpoint_signature",
                    f"checkpoint for seq {cp.seq} in {where} names signing key {cp.key_id}, "
                    f"not the configured key {verify_key.key_id} (forged or foreign)",
                )
            )
            return None
        if not verify_key.verify(cp.signature, cp.message()):
            report.problems.append(
                Problem(
                    cp.seq,
                    "checkpoint_signature",
                    f"checkpoint for seq {cp.seq} in {where} has a bad signature "
                    "(forged or altered)",
                )
            )
            return None
        known = by_seq.get(cp.seq)
        if known is not None and known.head_hash != cp.head_hash:
            report.problems.append(
                Problem(
                    cp.seq,
                    "checkpoint",
                    f"two validly signed checkpoints disagree about seq {cp.seq} ({where}): "
                    "the log was rewritten between them",
                )
            )
            return None
        by_seq[cp.seq] = cp
        latest = report.latest_checkpoint
        if latest is None or cp.seq > latest.seq:
            report.latest_checkpoint = cp
    report.checkpoints = len(by_seq)
    return by_seq


def verify_chain(
    engine: Engine,
    *,
    checkpoints: Iterable[tuple[str, Checkpoint]] = (),
    verify_key: AuditVerifyKey | None = None,
    start: Checkpoint | None = None,
    batch_size: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check the log (from its first entry, or from a trusted ``start`` checkpoint).

    ``checkpoints`` are (where it came from, checkpoint) pairs; each must carry a valid
    signature by ``verify_key``. Stops at the first problem.
    """
    report = VerifyReport()
    started = time.perf_counter()
    by_seq = _collect_checkpoints(report, checkpoints, verify_key)
    if by_seq is None:
        return report
    if start is not None:
        by_seq.setdefault(start.seq, start)
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        conn.rollback()
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
        _scan(
            conn,
            report,
            by_seq=by_seq,
            start=start,
            batch_size=batch_size,
            progress=progress,
        )
        conn.rollback()
    finally:
        raw.close()
    if report.ok and by_seq:
        newest = by_seq[max(by_seq)]
        expected = (report.last_seq or (start.seq - 1 if start else 0)) + 1
        if newest.seq >= expected:
            report.problems.append(
                Problem(
                    expected,
                    "missing",
                    f"the log ends at entry {expected - 1}, but a checkpoint signed at "
                    f"{newest.signed_at.isoformat()} covers entry {newest.seq}: entries from "
                    f"{expected} were deleted (truncated)",
                )
            )
    report.seconds = time.perf_counter() - started
    return report


def _scan(
    conn: Any,
    report: VerifyReport,
    *,
    by_seq: dict[int, Checkpoint],
    start: Checkpoint | None,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    # Locals, for speed in the loop below.
    sha256, enc, canon_details, loads, canon_time = (
        hashlib.sha256,
        _encode_str,
        _encode_details,
        json.loads,
        _canonical_time,
    )
    cache: dict[str, str] = {}
    cp_seqs = sorted(s for s in by_seq if start is None or s >= start.seq)
    cp_index = 0
    next_cp = cp_seqs[0] if cp_seqs else -1
    expected = 1 if start is None else start.seq
    # From a start checkpoint, the first row's stored prev_hash is taken as given; its
    # recomputed hash must still equal the checkpoint's head.
    prev: bytes | None = GENESIS_HASH if start is None else None
    problem: Problem | None = None
    with conn.cursor(name="mash_hub_audit_verify") as cursor:
        cursor.itersize = batch_size
        cursor.execute(_SELECT, (expected,))
        while problem is None and (rows := cursor.fetchmany(batch_size)):
            for seq, entry_id, at, actor, action, s_type, s_id, details, prev_hash, stored in rows:
                if seq != expected:
                    problem = _missing_problem(expected, seq)
                    break
                if prev is not None and prev_hash != prev:
                    problem = _link_problem(conn, seq, prev_hash)
                    break
                canonical = cache.get(details)
                if canonical is None:
                    canonical = canon_details(loads(details))
                    if len(cache) >= _DETAILS_CACHE_LIMIT:
                        cache.clear()
                    cache[details] = canonical
                body = (
                    f'{{"action":{enc(action)},"actor":{enc(actor)},"details":{canonical},'
                    f'"entry_id":"{entry_id}","occurred_at":"{canon_time(at)}","seq":{seq},'
                    f'"subject_id":{"null" if s_id is None else enc(s_id)},'
                    f'"subject_type":{"null" if s_type is None else enc(s_type)}}}'
                ).encode()
                digest = sha256(prev_hash + body).digest()
                if digest != stored:
                    problem = Problem(
                        seq, "content", f"entry {seq}'s contents do not match its hash: edited"
                    )
                    break
                if seq == next_cp:
                    if digest != by_seq[seq].head_hash:
                        after = cp_seqs[cp_index - 1] if cp_index else 0
                        problem = _checkpoint_problem(by_seq[seq], after)
                        break
                    cp_index += 1
                    next_cp = cp_seqs[cp_index] if cp_index < len(cp_seqs) else -1
                prev = digest
                expected = seq + 1
            if progress is not None:
                progress(expected - 1)
    report.entries = expected - (1 if start is None else start.seq)
    if problem is not None:
        report.problems.append(problem)
    elif report.entries:
        report.first_seq = 1 if start is None else start.seq
        report.last_seq = expected - 1
        report.head_hash = prev


def _missing_problem(expected: int, found: int) -> Problem:
    return Problem(
        expected,
        "missing",
        f"entry {expected} is missing (the next entry is {found}): entries were deleted",
    )


def _checkpoint_problem(cp: Checkpoint, after: int) -> Problem:
    return Problem(
        after + 1,
        "checkpoint",
        f"the log up to entry {cp.seq} does not match the checkpoint signed at "
        f"{cp.signed_at.isoformat()}: entries after {after} up to {cp.seq} were rewritten",
    )


def _link_problem(conn: Any, seq: int, prev_hash: bytes) -> Problem:
    """Say why entry ``seq`` does not follow the entry before it."""
    row = conn.execute(
        "SELECT seq FROM audit_log WHERE entry_hash = %s ORDER BY seq LIMIT 1", (prev_hash,)
    ).fetchone()
    if row is not None and row[0] < seq - 1:
        first = row[0] + 1
        return Problem(
            first,
            "inserted",
            f"entry {seq} links back to entry {row[0]}: entries {first} to {seq - 1} were inserted",
        )
    if row is not None and row[0] > seq:
        return Problem(
            seq,
            "reordered",
            f"entry {seq} links to entry {row[0]}, which comes after it: entries were reordered",
        )
    return Problem(
        seq,
        "link",
        f"entry {seq} does not link to entry {seq - 1}: an entry was replaced or reordered",
    )


def verify(
    engine: Engine,
    *,
    verify_key: AuditVerifyKey | None,
    checkpoint_dir: Path | None,
    include_database_checkpoints: bool = True,
    batch_size: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """The whole check: every exported (and in-database) checkpoint, then the chain."""
    try:
        found = load_checkpoints(
            engine, checkpoint_dir, include_database=include_database_checkpoints
        )
    except CheckpointFileError as exc:
        report = VerifyReport()
        report.problems.append(Problem(None, "checkpoint_file", str(exc)))
        return report
    return verify_chain(
        engine,
        checkpoints=found,
        verify_key=verify_key,
        batch_size=batch_size,
        progress=progress,
    )
