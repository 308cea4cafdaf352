"""Audit log: append latency under concurrent writers, before and after chaining moved
after commit (migration 0011), and verification throughput.

    python benchmarks/bench_audit.py [--appends 2000] [--entries 1000000] [--json]

Uses MASH_DATABASE_URL when set (it creates and drops its databases there), otherwise a
throwaway embedded PostgreSQL server. Appends run as the application role, each in its own
transaction, timed from the start of the transaction to the end of its commit (what a caller
waits for). "before" is the pre-0011 append (an advisory lock held until commit, the chain
extended inside the writer's transaction) on a database migrated to the revision before 0011;
"after" is today's ``record`` (an unlocked insert; this process's chainer thread links
committed entries); "floor" is the same insert into a plain table with no audit machinery,
the cost of any durable one-insert transaction on this machine. All run in the same process,
in turn, for ``--rounds`` rounds. After each "after" run
the bench reports how many entries were still unchained when the writers finished, how long
the chainer took to catch up, and checks that the whole chain verifies. Verification runs over
``--entries`` valid chained entries bulk-loaded with COPY (0 skips it). Not part of the test
run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import secrets
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent, record
from mash_hub.audit.checkpointer import create_checkpoint
from mash_hub.audit.log import GENESIS_HASH, canonical_bytes, chain_hash
from mash_hub.audit.verify import verify, verify_chain
from mash_hub.crypto.signing import create_signing_key_file
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url, use_app_role

ACTIONS = ["person.view", "person.search", "record.ingest", "person.erase", "keys.rotate"]


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(base: str) -> str:
    name = f"mash_bench_{secrets.token_hex(4)}"
    with psycopg.connect(libpq(base), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    assert name is not None
    base = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(libpq(base), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def event(i: int) -> AuditEvent:
    return AuditEvent(
        actor=f"user:{i % 97}",
        action=ACTIONS[i % len(ACTIONS)],
        subject_type="person",
        subject_id=str(uuid.UUID(int=i * 7919 + 1)),
        details={"groups": ["identity", "contact"], "purpose": "s47", "request": i},
    )


_LEGACY_LOCK = 0x61756474  # the pre-0011 append lock ("audt")


def legacy_record(session: Session, ev: AuditEvent) -> int:
    """The pre-0011 append, kept here only to measure against: the lock is held until the
    writer's transaction ends, and the entry is chained inside it."""
    session.flush()
    details = json.dumps(ev.details)
    entry_id = uuid.uuid4()
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor:
        with driver.pipeline():
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_LEGACY_LOCK,))
            cursor.execute("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        last = cursor.fetchone()
        seq = 1 if last is None else last[0] + 1
        prev_hash = GENESIS_HASH if last is None else bytes(last[1])
        occurred_at = dt.datetime.now(dt.UTC)
        entry_hash = chain_hash(prev_hash, canonical_bytes(seq, entry_id, occurred_at, ev))
        cursor.execute(
            "INSERT INTO audit_log (seq, entry_id, occurred_at, actor, action, subject_type, "
            "subject_id, details, prev_hash, entry_hash) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
            (
                seq,
                entry_id,
                occurred_at,
                ev.actor,
                ev.action,
                ev.subject_type,
                ev.subject_id,
                details,
                prev_hash,
                entry_hash,
            ),
        )
    return int(seq)


_FLOOR_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_floor (seq bigint GENERATED BY DEFAULT AS IDENTITY "
    "PRIMARY KEY, entry_id uuid, occurred_at timestamptz, actor text, action text, "
    "subject_type text, subject_id text, details jsonb)"
)


def floor_record(session: Session, ev: AuditEvent) -> int:
    """The same insert into a plain table (no indexes beyond its key, no triggers, no chain):
    what any durable append costs on this machine, to compare the designs against."""
    session.flush()
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_floor (entry_id, occurred_at, actor, action, subject_type, "
            "subject_id, details) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING seq",
            (
                uuid.uuid4(),
                dt.datetime.now(dt.UTC),
                ev.actor,
                ev.action,
                ev.subject_type,
                ev.subject_id,
                json.dumps(ev.details),
            ),
        )
        return int(cursor.fetchone()[0])


def revision_before_0011() -> str:
    revision = ScriptDirectory.from_config(migrate.alembic_config()).get_revision("0011")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_appends(
    url: str,
    writers: int,
    total: int,
    *,
    durable: bool = True,
    rate: float | None = None,
    design: str = "after",
) -> dict[str, Any]:
    """Writers append back to back (saturation), or each at ``rate`` appends/s (paced).

    ``durable=False`` turns synchronous_commit off, to show the cost apart from the fsync.
    ``design``: ``before`` (the pre-0011 append, on a database migrated to before 0011),
    ``after`` (today's ``record``) or ``floor`` (:func:`floor_record`).
    """
    append = {"before": legacy_record, "after": record, "floor": floor_record}[design]
    options = {} if durable else {"options": "-c synchronous_commit=off"}
    engine = use_app_role(
        create_engine(url, pool_size=writers, max_overflow=0, connect_args=options)
    )
    db = Database(engine)
    latencies: list[float] = []
    in_append: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(writers)
    per_writer = total // writers

    def run(n: int) -> None:
        mine: list[float] = []
        calls: list[float] = []
        with db.transaction() as session:  # warm the connection
            session.connection()
        barrier.wait()
        due = time.perf_counter() + (random.random() / rate if rate else 0.0)
        for i in range(per_writer):
            if rate:
                time.sleep(max(0.0, due - time.perf_counter()))
                due += random.expovariate(rate)  # Poisson arrivals
            started = time.perf_counter()
            with db.transaction() as session:
                session.connection()
                call = time.perf_counter()
                append(session, event(n * per_writer + i))
                calls.append(time.perf_counter() - call)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            in_append.extend(calls)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    chain: dict[str, Any] = {}
    if design == "after":
        chain = catch_up(engine, writers * per_writer)
    engine.dispose()
    return {"latencies": latencies, "calls": in_append, "elapsed": elapsed, **chain}


def compare(
    before: str, after: str, writers: int, total: int, rounds: int, **options: Any
) -> dict[str, dict[str, Any]]:
    """The designs in turn, for ``rounds`` rounds, so that a change in the machine's load
    (other processes) hits all alike; percentiles over all rounds' appends pooled."""
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": [], "floor": []}
    for _ in range(rounds):
        for design, url in (("before", before), ("after", after), ("floor", after)):
            runs[design].append(bench_appends(url, writers, total, design=design, **options))
    out: dict[str, dict[str, Any]] = {}
    for label, done in runs.items():
        ms = [x * 1000 for run in done for x in run["latencies"]]
        calls = [x * 1000 for run in done for x in run["calls"]]
        row: dict[str, Any] = {
            "writers": writers,
            "rate_per_writer": options.get("rate"),
            "appends": len(ms),
            "p50_ms": round(percentile(ms, 0.50), 3),
            "p95_ms": round(percentile(ms, 0.95), 3),
            "p99_ms": round(percentile(ms, 0.99), 3),
            "mean_ms": round(statistics.fmean(ms), 3),
            # The append call alone (before: including the wait for the lock).
            "call_p50_ms": round(percentile(calls, 0.50), 3),
            "call_p95_ms": round(percentile(calls, 0.95), 3),
            "appends_per_s": round(len(ms) / sum(run["elapsed"] for run in done)),
            "p95_ms_per_round": [
                round(percentile([x * 1000 for x in run["latencies"]], 0.95), 3) for run in done
            ],
        }
        if label == "after":
            row["unchained_when_writers_stopped"] = max(
                run["unchained_when_writers_stopped"] for run in done
            )
            row["chainer_caught_up_ms"] = max(run["chainer_caught_up_ms"] for run in done)
        out[label] = row
    return out


def catch_up(engine: Any, appended: int) -> dict[str, Any]:
    """How far the chainer was behind when the writers stopped, and how long it took to
    catch up (polled, not helped); then the whole chain must verify."""
    query = text("SELECT count(*) FROM audit_log WHERE chain_seq IS NULL")
    started = time.perf_counter()
    with engine.connect() as connection:
        behind = connection.execute(query).scalar_one()
        left = behind
        while left:
            time.sleep(0.005)
            left = connection.execute(query).scalar_one()
            if time.perf_counter() - started > 60:
                raise RuntimeError("the chainer did not catch up within 60 s")
    report = verify_chain(engine)
    assert report.ok and report.unchained == 0, report.problem
    assert report.entries >= appended
    return {
        "unchained_when_writers_stopped": behind,
        "chainer_caught_up_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def bulk_load(url: str, entries: int) -> float:
    """``entries`` valid chained entries via COPY, hashed by the writer's own code."""
    started = time.perf_counter()
    base_time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    prev = GENESIS_HASH
    with psycopg.connect(libpq(url)) as conn, conn.cursor() as cursor:
        with cursor.copy(
            "COPY audit_log (seq, chain_seq, entry_id, occurred_at, actor, action, "
            "subject_type, subject_id, details, prev_hash, entry_hash) FROM STDIN"
        ) as copy:
            for seq in range(1, entries + 1):
                ev = event(seq)
                entry_id = uuid.UUID(int=seq)
                when = base_time + dt.timedelta(microseconds=seq * 1237)
                digest = chain_hash(prev, canonical_bytes(seq, entry_id, when, ev))
                copy.write_row(
                    (
                        seq,
                        seq,
                        entry_id,
                        when,
                        ev.actor,
                        ev.action,
                        ev.subject_type,
                        ev.subject_id,
                        json.dumps(ev.details),
                        prev,
                        digest,
                    )
                )
                prev = digest
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE audit_log")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--appends", type=int, default=2000, help="appends per run (split between the writers)"
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="0: no verify run")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="appends/s per writer in the paced runs"
    )
    parser.add_argument("--runs", type=int, default=3, help="verification runs (best is kept)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating before/after rounds per append test"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mash-bench-audit-") as tmp:
        embedded = None
        if os.environ.get("MASH_DATABASE_URL"):
            base = normalise_url(os.environ["MASH_DATABASE_URL"])
        else:
            embedded = EmbeddedPostgres(Path(tmp) / "pg")
            base = embedded.acquire()
        urls: list[str] = []
        try:
            before = create_database(base)
            urls.append(before)
            migrate.upgrade(create_engine(before), revision_before_0011())
            after = create_database(base)
            urls.append(after)
            migrate.upgrade(create_engine(after))
            with psycopg.connect(libpq(after), autocommit=True) as conn:
                conn.execute(_FLOOR_TABLE)
            paced = min(args.appends, 800)
            kinds: list[tuple[str, tuple[int, ...], int, dict[str, Any]]] = [
                ("append", (1, 4, 8), args.appends, {}),
                ("append_paced", (4, 8), paced, {"rate": args.rate}),
                ("append_synchronous_commit_off", (1, 4, 8), args.appends, {"durable": False}),
            ]
            for kind, counts, total, options in kinds:
                results = [compare(before, after, n, total, args.rounds, **options) for n in counts]
                for label in ("before", "after", "floor"):
                    summary[f"{kind}_{label}"] = [r[label] for r in results]
            if args.entries > 0:
                url = create_database(base)
                urls.append(url)
                bench_verify(url, args.entries, args.runs, Path(tmp), summary)
        finally:
            for url in urls:
                drop_database(url)
            if embedded is not None:
                embedded.release()

    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for kind in ("append", "append_paced", "append_synchronous_commit_off"):
        for label in ("before", "after", "floor"):
            for row in summary[f"{kind}_{label}"]:
                lag = (
                    f"; {row['unchained_when_writers_stopped']} unchained at the end, "
                    f"caught up in {row['chainer_caught_up_ms']} ms"
                    if label == "after"
                    else ""
                )
                print(
                    f"{kind} {label}, {row['writers']} writer(s): p50 {row['p50_ms']} ms, "
                    f"p95 {row['p95_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"{row['appends_per_s']} appends/s; the append call alone p50 "
                    f"{row['call_p50_ms']} ms, p95 {row['call_p95_ms']} ms{lag}"
                )
    if "verify" in summary:
        v = summary["verify"]
        print(f"bulk load of {v['entries']:,} entries: {summary['bulk_load_seconds']} s")
        print(
            f"verify {v['entries']:,} entries: {v['best_seconds']} s = "
            f"{v['entries_per_s']:,} entries/s"
        )


def bench_verify(url: str, entries: int, runs: int, tmp: Path, summary: dict[str, Any]) -> None:
    engine = use_app_role(create_engine(url))
    migrate.upgrade(engine)
    summary["bulk_load_seconds"] = round(bulk_load(url, entries), 1)
    key = create_signing_key_file(tmp / "audit-signing.key")
    db = Database(engine)
    checkpoints = tmp / "checkpoints"
    create_checkpoint(db, key, checkpoints)
    seconds = []
    for _ in range(runs):
        report = verify(engine, verify_key=key, checkpoint_dir=checkpoints)
        assert report.ok and report.entries == entries, report.problem
        seconds.append(report.seconds)
    best = min(seconds)
    summary["verify"] = {
        "entries": entries,
        "best_seconds": round(best, 2),
        "entries_per_s": round(entries / best),
        "all_runs_seconds": [round(r, 2) for r in seconds],
    }
    engine.dispose()


if __name__ == "__main__":
    main()
