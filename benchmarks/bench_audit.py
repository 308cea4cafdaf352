"""Audit log: append latency under concurrent writers, and verification throughput.

    python benchmarks/bench_audit.py [--appends 2000] [--entries 1000000] [--json]

Uses MASH_DATABASE_URL when set (it creates and drops two databases there), otherwise a
throwaway embedded PostgreSQL server. Appends run as the application role, each in its own
transaction, timed from the start of the transaction to the end of its commit (the append
lock is held until commit, so this is what a caller waits for). Verification runs over
``--entries`` valid chained entries bulk-loaded with COPY. Not part of the test run.
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
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from mash_hub.audit import AuditEvent, record
from mash_hub.audit.checkpointer import create_checkpoint
from mash_hub.audit.log import GENESIS_HASH, canonical_bytes, chain_hash
from mash_hub.audit.verify import verify
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_appends(
    url: str, writers: int, total: int, *, durable: bool = True, rate: float | None = None
) -> dict[str, Any]:
    """Writers append back to back (saturation), or each at ``rate`` appends/s (paced).

    ``durable=False`` turns synchronous_commit off, to show the cost apart from the fsync.
    """
    options = {} if durable else {"options": "-c synchronous_commit=off"}
    engine = use_app_role(
        create_engine(url, pool_size=writers, max_overflow=0, connect_args=options)
    )
    db = Database(engine)
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(writers)
    per_writer = total // writers

    def run(n: int) -> None:
        mine: list[float] = []
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
                record(session, event(n * per_writer + i))
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    engine.dispose()
    ms = [x * 1000 for x in latencies]
    return {
        "writers": writers,
        "rate_per_writer": rate,
        "appends": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p95_ms": round(percentile(ms, 0.95), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "appends_per_s": round(len(ms) / elapsed),
    }


def bulk_load(url: str, entries: int) -> float:
    """``entries`` valid chained entries via COPY, hashed by the writer's own code."""
    started = time.perf_counter()
    base_time = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    prev = GENESIS_HASH
    with psycopg.connect(libpq(url)) as conn, conn.cursor() as cursor:
        with cursor.copy(
            "COPY audit_log (seq, entry_id, occurred_at, actor, action, subject_type, "
            "subject_id, details, prev_hash, entry_hash) FROM STDIN"
        ) as copy:
            for seq in range(1, entries + 1):
                ev = event(seq)
                entry_id = uuid.UUID(int=seq)
                when = base_time + dt.timedelta(microseconds=seq * 1237)
                digest = chain_hash(prev, canonical_bytes(seq, entry_id, when, ev))
                copy.write_row(
                    (
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
    parser.add_argument("--appends", type=int, default=2000, help="appends per writer count")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument(
        "--rate", type=float, default=50.0, help="appends/s per writer in the paced runs"
    )
    parser.add_argument("--runs", type=int, default=3, help="verification runs (best is kept)")
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
            url = create_database(base)
            urls.append(url)
            migrate.upgrade(create_engine(url))
            summary["append"] = [bench_appends(url, n, args.appends) for n in (1, 4, 8)]
            summary["append_paced"] = [
                bench_appends(url, n, min(args.appends, 800), rate=args.rate) for n in (4, 8)
            ]
            summary["append_synchronous_commit_off"] = [
                bench_appends(url, n, args.appends, durable=False) for n in (1, 4, 8)
            ]

            url = create_database(base)
            urls.append(url)
            engine = use_app_role(create_engine(url))
            migrate.upgrade(engine)
            summary["bulk_load_seconds"] = round(bulk_load(url, args.entries), 1)
            key = create_signing_key_file(Path(tmp) / "audit-signing.key")
            db = Database(engine)
            checkpoints = Path(tmp) / "checkpoints"
            create_checkpoint(db, key, checkpoints)
            runs = []
            for _ in range(args.runs):
                report = verify(engine, verify_key=key, checkpoint_dir=checkpoints)
                assert report.ok and report.entries == args.entries, report.problem
                runs.append(report.seconds)
            best = min(runs)
            summary["verify"] = {
                "entries": args.entries,
                "best_seconds": round(best, 2),
                "entries_per_s": round(args.entries / best),
                "all_runs_seconds": [round(r, 2) for r in runs],
            }
            engine.dispose()
        finally:
            for url in urls:
                drop_database(url)
            if embedded is not None:
                embedded.release()

    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for label in ("append", "append_paced", "append_synchronous_commit_off"):
        for row in summary[label]:
            print(
                f"{label}, {row['writers']} writer(s): p50 {row['p50_ms']} ms, "
                f"p95 {row['p95_ms']} ms, p99 {row['p99_ms']} ms, {row['appends_per_s']} appends/s"
            )
    v = summary["verify"]
    print(f"bulk load of {v['entries']:,} entries: {summary['bulk_load_seconds']} s")
    print(
        f"verify {v['entries']:,} entries: {v['best_seconds']} s = {v['entries_per_s']:,} entries/s"
    )


if __name__ == "__main__":
    main()
