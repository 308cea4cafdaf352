"""Verifying the audit log: the hash chain from the first entry, and the signed checkpoints.

What is checked, in one pass over ``audit_log`` in chain order (``chain_seq``: a COPY stream,
one REPEATABLE READ snapshot):

* ``chain_seq`` runs 1, 2, 3, … with no gap (a gap is a deleted entry);
* each entry's ``prev_hash`` is the hash of the entry before it (a break is an inserted,
  reordered or replaced entry);
* each entry's ``entry_hash`` is SHA-256(prev_hash || canonical bytes of its contents),
  recomputed here in Python (an edited entry fails this);
* at each signed checkpoint's ``seq`` (a chain position) the recomputed head equals the signed
  head hash (a history rewritten *with* recomputed hashes fails this), and the log reaches the
  newest checkpoint (a truncated tail fails this).

Positions, problems and checkpoints count chain positions. An entry's own ``seq`` (its id, in
the hash) may have gaps where transactions rolled back; for entries written before migration
0011 it equals the position. Entries committed but not yet chained (see
:mod:`mash_hub.audit.log`) are counted in ``unchained``, not checked: they have no hash yet.

Only the hashing and the canonical encoding happen here; the database just returns column
values (as text), so a tampered database function cannot make a changed entry verify.
Entries after the newest checkpoint are chain-checked but not yet vouched for by a signature.
"""

from __future__ import annotations

import binascii
import bisect
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq, sql
from sqlalchemy import Engine

from mash_hub.audit.checkpoint import Checkpoint, CheckpointFileError, load_checkpoints
from mash_hub.audit.log import GENESIS_HASH
from mash_hub.crypto.signing import AuditVerifyKey

# The same encoders json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":"))
# uses, built once: json.dumps with keyword arguments builds a new encoder on every call.
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_encode_details = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
# The C encoder and scanner behind them, called directly (no per-call Python wrappers).
_encode_details_c: Callable[[Any, int], list[str]] = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, None, _encode_str, None, ":", ",", True, False, True
)
_scan_json: Callable[[str, int], tuple[Any, int]] = json.scanner.c_make_scanner(  # type: ignore[attr-defined]
    json.JSONDecoder()
)
_DETAILS_CACHE_LIMIT = 4096

# Columns whose text can never need escaping first, then the four text columns, then details.
_COPY = (
    "COPY (SELECT chain_seq, seq, entry_id, occurred_at, prev_hash, entry_hash, actor, action, "
    "subject_type, subject_id, details FROM audit_log WHERE {where} ORDER BY chain_seq) TO STDOUT"
)
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_COPY_ESCAPES = {
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"v": b"\v",
    b"\\": b"\\",
}
# What JSON (ensure_ascii=False) would escape in a string: '"', backslash, control characters;
# the tab (field separator) is excluded here and caught by the field count instead.
_JSON_SPECIAL = bytes(range(0x20)).replace(b"\t", b"") + b'"'
_FAST_BODY = (
    b'{"action":"%s","actor":"%s","details":%s,"entry_id":"%s","occurred_at":"%sT%s%s+00:00",'
    b'"seq":%s,"subject_id":"%s","subject_type":"%s"}'
)
_PROGRESS_EVERY = 1 << 16
# Below this many entries per worker, starting processes costs more than it saves.
_PARALLEL_MIN_PER_WORKER = 100_000


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the log. ``seq`` is the chain position of the first bad entry
    (or checkpoint's)."""

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
    unchained: int = 0
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
            "unchained": self.unchained,
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
        signer = verify_key.verifier_for(cp.key_id)
        if signer is None:
            report.problems.append(
                Problem(
                    cp.seq,
                    "checkpoint_signature",
                    f"checkpoint for seq {cp.seq} in {where} names signing key {cp.key_id}, "
                    f"neither the configured key {verify_key.key_id} nor a retired one "
                    "(forged or foreign)",
                )
            )
            return None
        if not signer.verify(cp.signature, cp.message()):
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
    workers: int | None = None,
    min_per_worker: int = _PARALLEL_MIN_PER_WORKER,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check the log (from its first entry, or from a trusted ``start`` checkpoint).

    ``checkpoints`` are (where it came from, checkpoint) pairs; each must carry a valid
    signature by ``verify_key``. Stops at the first problem. Long logs are split between up
    to ``workers`` processes (default: up to 4, one per CPU), each taking at least
    ``min_per_worker`` entries.
    """
    report = VerifyReport()
    started = time.perf_counter()
    by_seq = _collect_checkpoints(report, checkpoints, verify_key)
    if by_seq is None:
        return report
    if start is not None:
        by_seq.setdefault(start.seq, start)
    first = 1 if start is None else start.seq
    prev_hash = GENESIS_HASH if start is None else None
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        conn.rollback()
        _begin(conn)
        top, report.unchained = conn.execute(
            "SELECT max(chain_seq), count(*) FILTER (WHERE chain_seq IS NULL) FROM audit_log"
        ).fetchone()
        top = top or 0
        count = top - first + 1
        workers = min(workers or _default_workers(), count // max(1, min_per_worker))
        if workers > 1 and sys.executable:
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            ranges = _parallel(
                engine,
                snapshot=snapshot,
                first=first,
                top=top,
                prev_hash=prev_hash,
                by_seq=by_seq,
                workers=workers,
            )
            problem, entries, last = _combine(conn, ranges, prev_hash, top)
            if progress is not None:
                progress(entries)
        else:
            whole = _scan(
                conn,
                first=first,
                last=None,
                prev_hash=prev_hash,
                by_seq=by_seq,
                progress=progress,
            )
            problem, entries, last = whole.problem, whole.last_seq - first + 1, whole
        conn.rollback()
    finally:
        raw.close()
    report.entries = entries
    if problem is not None:
        report.problems.append(problem)
    elif entries:
        report.first_seq, report.last_seq, report.head_hash = first, last.last_seq, last.last_hash
    if report.ok and by_seq:
        newest = by_seq[max(by_seq)]
        expected = (report.last_seq or first - 1) + 1
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


@dataclass(frozen=True)
class _Range:
    """What scanning one run of entries found."""

    first: int
    last_seq: int  # the last entry checked and found good (first - 1 if none)
    last_hash: bytes | None
    first_prev: bytes | None  # the first entry's stored prev_hash, when it was taken as given
    problem: Problem | None


def _default_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _begin(conn: Any, snapshot: str | None = None) -> None:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot is not None:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")


def _range_to_json(part: _Range) -> dict[str, Any]:
    problem = part.problem
    return {
        "first": part.first,
        "last_seq": part.last_seq,
        "last_hash": part.last_hash.hex() if part.last_hash is not None else None,
        "first_prev": part.first_prev.hex() if part.first_prev is not None else None,
        "problem": None if problem is None else [problem.seq, problem.kind, problem.message],
    }


def _range_from_json(doc: dict[str, Any]) -> _Range:
    problem = doc["problem"]
    return _Range(
        first=doc["first"],
        last_seq=doc["last_seq"],
        last_hash=bytes.fromhex(doc["last_hash"]) if doc["last_hash"] else None,
        first_prev=bytes.fromhex(doc["first_prev"]) if doc["first_prev"] else None,
        problem=None if problem is None else Problem(*problem),
    )


def _worker() -> None:
    """Entry point of a worker process: a task as JSON on stdin, its result on stdout.

    Plain subprocesses rather than multiprocessing: spawning would re-run the CLI's
    ``__main__`` in every worker, and forking a threaded server is unsafe.
    """
    task = json.loads(sys.stdin.read())
    with psycopg.connect(task["conninfo"], application_name="mash-hub-audit-verify") as conn:
        _begin(conn, task["snapshot"])
        part = _scan(
            conn,
            first=task["first"],
            last=task["last"],
            prev_hash=bytes.fromhex(task["prev_hash"]) if task["prev_hash"] else None,
            by_seq={
                cp.seq: cp for cp in (Checkpoint.from_json(doc) for doc in task["checkpoints"])
            },
        )
    sys.stdout.write(json.dumps(_range_to_json(part)))


def _parallel(
    engine: Engine,
    *,
    snapshot: str,
    first: int,
    top: int,
    prev_hash: bytes | None,
    by_seq: dict[int, Checkpoint],
    workers: int,
) -> list[_Range]:
    """Split first..top into ``workers`` ranges checked by separate processes at once.

    Each range is chain-checked on its own, its first entry's link taken as given; the
    parent then checks that each range links to the previous one (see :func:`_combine`).
    All workers read the parent's exported snapshot, so they see one consistent log.
    """
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    size = -(-(top - first + 1) // workers)
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    running = []
    for a in range(first, top + 1, size):
        b = min(top, a + size - 1)
        task = {
            "conninfo": conninfo,  # on a pipe, never on a command line
            "snapshot": snapshot,
            "first": a,
            "last": b,
            "prev_hash": prev_hash.hex() if prev_hash is not None and a == first else None,
            # Its own checkpoints, and the earlier ones for naming where a rewrite starts.
            "checkpoints": [cp.to_json() for s, cp in by_seq.items() if s <= b],
        }
        process = subprocess.Popen(
            [sys.executable, "-c", "from mash_hub.audit.verify import _worker; _worker()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(task).encode())
        process.stdin.close()
        running.append(process)
    results = []
    try:
        for process in running:
            assert process.stdout is not None
            out = process.stdout.read()
            if process.wait() != 0:
                raise RuntimeError(
                    f"an audit verification worker failed (exit {process.returncode})"
                )
            results.append(_range_from_json(json.loads(out)))
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
    return results


def _previous(seqs: list[int], seq: int) -> int:
    """The largest of the sorted ``seqs`` below ``seq``, or 0."""
    index = bisect.bisect_left(seqs, seq)
    return seqs[index - 1] if index else 0


def _combine(
    conn: Any, ranges: list[_Range], prev_hash: bytes | None, top: int
) -> tuple[Problem | None, int, _Range]:
    """Join the ranges' results in order: (first problem, entries checked, last good range)."""
    entries = 0
    previous: _Range | None = None
    for index, part in enumerate(ranges):
        link_to = prev_hash if previous is None else previous.last_hash
        if part.first_prev is not None and link_to is not None and part.first_prev != link_to:
            conn.rollback()
            return _link_problem(conn, part.first, part.first_prev), entries, previous or part
        entries += part.last_seq - part.first + 1
        if part.problem is not None:
            return part.problem, entries, part
        end = ranges[index + 1].first - 1 if index + 1 < len(ranges) else top
        if part.last_seq < end:  # the range's tail is gone
            return (
                Problem(
                    part.last_seq + 1,
                    "missing",
                    f"entry {part.last_seq + 1} is missing: entries were deleted",
                ),
                entries,
                part,
            )
        previous = part
    assert previous is not None
    return None, entries, previous


def _copy_out(conn: Any, query: str) -> Generator[memoryview, None, None]:
    """The rows of ``COPY … TO STDOUT`` straight from libpq, one buffer per row.

    psycopg's ``Copy`` iterator costs a few microseconds a row in generator plumbing; reading
    libpq directly is several times faster. Closing the generator early cancels the COPY.
    """
    pgconn = conn.pgconn
    pgconn.send_query(query.encode())
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        message = pgconn.get_error_message().decode(errors="replace")
        while pgconn.get_result() is not None:
            pass
        raise psycopg.OperationalError(f"COPY of audit_log failed: {message}")
    done = False
    try:
        get = pgconn.get_copy_data
        while True:
            nbytes, data = get(0)
            if nbytes < 0:
                done = True
                break
            yield data
    finally:
        if not done:
            conn.cancel_safe()
            with contextlib.suppress(psycopg.Error):
                while pgconn.get_copy_data(0)[0] >= 0:
                    pass
        while pgconn.get_result() is not None:
            pass


class _Stop(Exception):  # noqa: N818 - control flow, never escapes _scan
    """Raised inside the COPY block so psycopg cancels the rest of the stream."""


def _unescape(field: bytes) -> bytes | None:
    """One field of COPY's text format: ``\\N`` is NULL, backslash escapes are undone."""
    if field == b"\\N":
        return None
    if b"\\" not in field:
        return field
    return _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), field)


def _slow_row(fields: list[bytes]) -> tuple[int, bytes, bytes, bytes, bytes]:
    """(position, prev hex, stored hex, details, body template) for rows with escapes or
    NULLs."""
    if len(fields) != 11:
        raise ValueError(f"audit_log row with {len(fields)} fields")
    raw = [_unescape(f) for f in fields]
    pos_b, seq_b, entry_id, at, prev_x, entry_x, actor, action, s_type, s_id, details = raw
    if None in (pos_b, seq_b, entry_id, at, prev_x, entry_x, actor, action, details):
        raise ValueError("a NOT NULL column of audit_log is NULL")
    assert pos_b and seq_b and entry_id and at and prev_x and entry_x and details is not None

    def text(value: bytes | None) -> str:
        return "null" if value is None else _encode_str(value.decode("utf-8"))

    seq = int(seq_b)
    template = (
        f'{{"action":{text(action)},"actor":{text(actor)},"details":\x00,'
        f'"entry_id":"{entry_id.decode()}","occurred_at":"{_canonical_time(at.decode())}",'
        f'"seq":{seq},"subject_id":{text(s_id)},"subject_type":{text(s_type)}}}'
    ).encode()
    return int(pos_b), prev_x[2:], entry_x[2:], details, template


def _scan(  # noqa: PLR0912, PLR0915 - one hot loop, kept flat for speed
    conn: Any,
    *,
    first: int,
    last: int | None,
    prev_hash: bytes | None,
    by_seq: dict[int, Checkpoint],
    progress: Callable[[int], None] | None = None,
) -> _Range:
    """Check entries ``first``..``last`` (to the end if None), streamed with COPY.

    ``prev_hash`` is the hash the first entry must link to; None takes the first entry's
    stored ``prev_hash`` as given (returned in ``first_prev`` for the caller to check).

    Most rows take the fast path: the canonical bytes are assembled from the raw field bytes
    (no escapes or NULLs in the row, nothing needing JSON escaping in its text columns); the
    rest are decoded and JSON-encoded the general way. Both give the writer's canonical bytes.
    """
    # Locals, for speed in the loop below.
    sha256, hexlify, scan_json, canon_details, special = (
        hashlib.sha256,
        binascii.hexlify,
        _scan_json,
        _encode_details_c,
        _JSON_SPECIAL,
    )
    cache: dict[bytes, bytes] = {}
    all_cps = sorted(by_seq)
    cp_seqs = [c for c in all_cps if c >= first and (last is None or c <= last)]
    cp_index = 0
    next_cp = cp_seqs[0] if cp_seqs else -1
    expected = first
    prev = prev_hash if prev_hash is not None else GENESIS_HASH
    prev_hex: bytes | None = hexlify(prev_hash) if prev_hash is not None else None
    first_prev: bytes | None = None
    problem: Problem | None = None
    broken_link: tuple[int, bytes] | None = None
    query = _COPY.format(
        where=f"chain_seq >= {int(first)}"
        + ("" if last is None else f" AND chain_seq <= {int(last)}")
    )
    try:
        with contextlib.closing(_copy_out(conn, query)) as stream:
            for data in stream:
                row = bytes(data)
                fields = row[:-1].split(b"\t")
                details = fields[-1]
                if (
                    len(fields) == 11
                    and row.count(b"\\") == 4  # only the two bytea fields' "\\x"
                    and len(text := b"\t".join(fields[6:10])) == len(text.translate(None, special))
                    and fields[3][-3:] == b"+00"
                    and len(fields[3]) >= 22
                ):
                    pos_b, seq_b, entry_id, at, prev_x, entry_x, actor, action, s_type, s_id = (
                        fields[:10]
                    )
                    seq = int(pos_b)
                    prev_x, entry_x = prev_x[3:], entry_x[3:]
                    template = None
                else:
                    try:
                        seq, prev_x, entry_x, details, template = _slow_row(fields)
                    except ValueError:  # includes UnicodeDecodeError
                        problem = Problem(
                            expected, "content", f"entry {expected} is unreadable: altered"
                        )
                        raise _Stop from None
                if seq != expected:
                    problem = _missing_problem(expected, seq)
                    raise _Stop
                if prev_hex is None:  # the first row, linking to something trusted elsewhere
                    prev = first_prev = binascii.unhexlify(prev_x)
                elif prev_x != prev_hex:
                    broken_link = (seq, binascii.unhexlify(prev_x))
                    raise _Stop
                canonical = cache.get(details)
                if canonical is None:
                    canonical = "".join(
                        canon_details(scan_json(details.decode(), 0)[0], 0)
                    ).encode()
                    if len(cache) >= _DETAILS_CACHE_LIMIT:
                        cache.clear()
                    cache[details] = canonical
                if template is None:
                    body = _FAST_BODY % (
                        action,
                        actor,
                        canonical,
                        entry_id,
                        at[:10],
                        at[11:19],
                        (at[19:-3] or b".").ljust(7, b"0"),
                        seq_b,
                        s_id,
                        s_type,
                    )
                else:
                    body = template.replace(b"\x00", canonical, 1)
                digest = sha256(prev + body).digest()
                prev_hex = hexlify(digest)
                if prev_hex != entry_x:
                    problem = Problem(
                        seq, "content", f"entry {seq}'s contents do not match its hash: edited"
                    )
                    raise _Stop
                if seq == next_cp:
                    if digest != by_seq[seq].head_hash:
                        after = (
                            all_cps[bisect.bisect_left(all_cps, seq) - 1] if seq > all_cps[0] else 0
                        )
                        problem = _checkpoint_problem(by_seq[seq], after)
                        raise _Stop
                    cp_index += 1
                    next_cp = cp_seqs[cp_index] if cp_index < len(cp_seqs) else -1
                prev = digest
                expected = seq + 1
                if progress is not None and not expected % _PROGRESS_EVERY:
                    progress(expected - 1)
    except _Stop:
        conn.rollback()  # the COPY was cancelled, which aborts the transaction
    if broken_link is not None:
        problem = _link_problem(conn, *broken_link)
    if progress is not None:
        progress(expected - 1)
    return _Range(
        first=first,
        last_seq=expected - 1,
        last_hash=prev if expected > first else None,
        first_prev=first_prev,
        problem=problem,
    )


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
        "SELECT chain_seq FROM audit_log WHERE entry_hash = %s ORDER BY chain_seq LIMIT 1",
        (prev_hash,),
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
    workers: int | None = None,
    min_per_worker: int = _PARALLEL_MIN_PER_WORKER,
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
        workers=workers,
        min_per_worker=min_per_worker,
        progress=progress,
    )
