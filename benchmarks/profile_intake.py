"""Where one referral's time goes: each stage of ``POST /api/v1/referrals`` timed, and every
SQL statement and transaction it sends counted.

    python benchmarks/profile_intake.py [--people 10000] [--referrals 200] [--data-dir DIR]
        [--statements] [--json]

The hub is ``bench_load.py``'s (``mash-hub demo --no-serve`` in ``DIR/<people>``, built the
first time and reused after; each run adds its referrals to it), opened in this process; the
referrals are ``bench_load.py``'s (one child each, drawn from the council extract so most
match an existing person), sent one after another as the demo's partner (API key and an
``Idempotency-Key``) through the app in-process (Starlette's test client: no socket).

Stages are the existing functions they name, wrapped here with ``time.perf_counter`` (no
change to product code); times are exclusive, as in ``profile_search.py`` (whose ``Stages``
this uses): a stage's own time, less the stages it calls. "HTTP framework" is what is left
of the request. Statements are counted at the driver (every ``execute``, ``executemany`` and
``COPY`` of a psycopg cursor, so the audit append and the store's COPYs count too) on every
thread but the audit chainer's, by the stage that sent them; transactions are the engine's
``begin`` events. ``--statements`` lists them by their first words. Wall-clock on a shared
2-core machine: noisy. Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from bench_load import load_average, referral_body, set_up
from fastapi.testclient import TestClient
from profile_search import HTTP, Stages, percentile
from sqlalchemy import event

import mash_hub.audit as audit_package
from mash_hub.authz.policy import AccessPolicy
from mash_hub.crypto.blind_index import BlindIndexer
from mash_hub.crypto.envelope import FieldCipher
from mash_hub.crypto.keystore import KeyStore
from mash_hub.db.engine import Database, database
from mash_hub.matching import cluster as clustering
from mash_hub.matching import frequencies, incremental
from mash_hub.matching import review as reviewing
from mash_hub.persons.store import PersonStore
from mash_hub.referrals import service
from mash_hub.settings import Settings
from mash_hub.web.app import create_app
from mash_hub.web.auth import Authenticator
from mash_hub.web.deps import current_principal
from mash_hub.web.ratelimit import RateLimiter

AUTH = "auth: dependency (the rest)"
STAGES = Stages()
STATEMENTS: Counter[str] = Counter()
STATEMENTS_BY_STAGE: Counter[str] = Counter()
TRANSACTIONS: Counter[str] = Counter()
_COUNTING = threading.Event()


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return STAGES.call(name, function, *args, **kwargs)

    return wrapper


def _wrap(owner: Any, attribute: str, name: str) -> None:
    """Time ``owner.attribute`` as ``name``; absent in this version of the code: skipped (so
    the script also profiles the code before a change, for comparison)."""
    if hasattr(owner, attribute):
        setattr(owner, attribute, _timed(name, getattr(owner, attribute)))


def _shape(statement: Any) -> str:
    """A statement's first words, without values (parameters are never part of the text)."""
    text = statement if isinstance(statement, str) else str(statement)
    return re.sub(r"\s+", " ", text).strip()[:90]


def _counted(kind: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if _COUNTING.is_set() and threading.current_thread().name != "mash-hub-audit-chainer":
            STATEMENTS[f"{kind} {_shape(query)}"] += 1
            STATEMENTS_BY_STAGE[STAGES.current() or HTTP] += 1
        return method(self, query, *args, **kwargs)

    return wrapper


def instrument(app: Any, engine: Any) -> None:
    """Wrap the functions an intake calls, in the namespaces it calls them from."""
    _wrap(service, "submit", "submit (the rest: referral row, subjects, ORM flushes)")
    _wrap(service, "_request_hash", "request hash (JSON + HMAC)")
    _wrap(service, "_key_hash", "idempotency key hash (HMAC)")
    _wrap(service, "_claim", "idempotency claim (lock + look-up)")
    _wrap(service, "_new_reference", "new reference (uniqueness check)")
    _wrap(service, "has_index", "has a full run (SQL)")
    _wrap(service, "_link", "link: new persons for the unlinked (SQL)")
    _wrap(service, "_matched_existing", "matched existing (SQL)")
    _wrap(service, "link_records", "link_records (the rest)")
    _wrap(PersonStore, "prepare", "store: seal + index terms (AES, HMAC)")
    _wrap(PersonStore, "write", "store: write (COPY)")
    _wrap(PersonStore, "align", "blind-index root check")
    _wrap(PersonStore, "read", "store: ciphertext fetch (SQL)")
    _wrap(PersonStore, "candidates", "link: blind-index look-up (SQL)")
    _wrap(KeyStore, "ciphers", "data-key rows (SQL)")
    _wrap(KeyStore, "open_wrapped", "key unwrapping")
    _wrap(KeyStore, "issue", "data key issued")
    _wrap(FieldCipher, "decrypt_group", "decryption (AES-GCM + decode)")
    _wrap(FieldCipher, "encrypt_group", "encryption (AES-GCM + encode)")
    _wrap(BlindIndexer, "query_terms", "link: query terms (HMAC)")
    _wrap(incremental, "unlinked", "link: unlinked records (SQL)")
    _wrap(incremental, "record_features", "link: features")
    _wrap(incremental, "_lock", "link: link-run + term locks (SQL)")
    _wrap(incremental, "_lock_keys", "link: person locks (SQL)")
    _wrap(incremental, "_persons_of", "link: persons of candidates (SQL)")
    _wrap(PersonStore, "candidate_persons", "link: blind-index look-up (SQL)")
    _wrap(incremental, "_records_of", "link: records of persons (SQL)")
    _wrap(PersonStore, "read_persons", "link: candidates' records, keys, ciphertexts (SQL)")
    _wrap(incremental, "predict_new", "link: scoring")
    _wrap(frequencies, "latest", "link: name frequencies (latest run)")
    _wrap(reviewing, "load_constraints", "link: review decisions in force (SQL)")
    _wrap(clustering, "cluster", "link: clustering")
    _wrap(incremental, "_write", "link: write (persons, moves; the rest)")
    _wrap(incremental, "new_run", "link: new link run row")
    _wrap(incremental, "store_links", "link: person links")
    _wrap(reviewing, "sync_tasks", "link: review tasks")
    _wrap(incremental, "write_events", "link: link events")
    _wrap(incremental, "audit", "audit append")
    _wrap(audit_package, "record", "audit append")
    _wrap(AccessPolicy, "for_session", "policy version")
    _wrap(Authenticator, "authenticate", "auth: API key + client look-up")
    _wrap(RateLimiter, "take", "auth: rate limiter (own connection)")

    begin_commit = Database.transaction

    @contextlib.contextmanager
    def transaction(self: Database) -> Iterator[Any]:
        where = "auth" if STAGES.current() == AUTH else "intake"
        name = f"{where}: transaction begin + commit"
        unit = begin_commit(self)
        session = STAGES.call(name, unit.__enter__)
        done = False
        try:
            yield session
            done = True
        finally:
            if done:
                STAGES.call(name, unit.__exit__, None, None, None)
            else:
                unit.__exit__(*sys.exc_info())

    Database.transaction = transaction  # type: ignore[method-assign]
    app.dependency_overrides[current_principal] = _timed(AUTH, current_principal)

    for kind in ("execute", "executemany", "copy"):
        setattr(psycopg.Cursor, kind, _counted(kind, getattr(psycopg.Cursor, kind)))

    @event.listens_for(engine, "begin")
    def _begun(conn: Any) -> None:
        if _COUNTING.is_set():
            TRANSACTIONS[STAGES.current() or HTTP] += 1

    @event.listens_for(engine, "before_cursor_execute")
    def _began(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        conn.info.setdefault("profile_began", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _ended(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        STAGES.add_sql(time.perf_counter() - conn.info["profile_began"].pop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--referrals", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path(".bench-load"))
    parser.add_argument("--statements", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve() / str(args.people)
    demo, setup_seconds = set_up(data_dir, args.people)
    for name in [k for k in os.environ if k.startswith("MASH_")]:
        del os.environ[name]  # the hub in the data dir, as bench_load.py serves it
    settings = Settings(data_dir=data_dir, rate_limit_per_minute=1_000_000)
    with (data_dir / "demo" / "extracts" / "council.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["date_of_birth"]]
    rng = random.Random(7)
    chosen = rng.sample(rows, min(args.referrals + 10, len(rows)))
    tag = os.urandom(4).hex()
    headers = {"X-API-Key": demo["partner"]["api_key"]}
    report: dict[str, Any] = {
        "people": args.people,
        "records": demo["records"],
        "persons": demo["persons"],
        "setup_seconds": round(setup_seconds, 1),
        "load_average_before": load_average(),
    }
    with database(settings) as db:
        app = create_app(db, settings=settings)
        instrument(app, db.engine)
        client = TestClient(app)

        def refer(i: int) -> None:
            response = client.post(
                "/api/v1/referrals",
                json=referral_body(chosen[i], rng),
                headers={**headers, "Idempotency-Key": f"profile-{tag}-{i}"},
            )
            if response.status_code != 201:
                raise SystemExit(f"referral answered {response.status_code}: {response.text[:300]}")

        for i in range(10):  # policy compiled, model loaded, statements prepared
            refer(i)
        totals: list[float] = []
        STAGES.active = True
        _COUNTING.set()
        for i in range(10, 10 + args.referrals):
            began = time.perf_counter()
            refer(i)
            totals.append(time.perf_counter() - began)
        _COUNTING.clear()
        STAGES.active = False
        report["load_average_after"] = load_average()
    n = len(totals)
    total_ms = 1000 * sum(totals) / n
    rows_ms = {name: 1000 * seconds / n for name, seconds in STAGES.seconds.items()}
    rows_ms[HTTP] = total_ms - sum(rows_ms.values())
    report |= {
        "referrals": n,
        "request_ms": {
            "mean": round(total_ms, 2),
            "p50": round(1000 * percentile(totals, 0.5), 2),
            "p95": round(1000 * percentile(totals, 0.95), 2),
        },
        "statements_per_referral": round(sum(STATEMENTS.values()) / n, 2),
        "transactions_per_referral": round(sum(TRANSACTIONS.values()) / n, 2),
        "stages": [
            {
                "stage": name,
                "ms_per_referral": round(ms, 3),
                "share": round(ms / total_ms, 3),
                "calls_per_referral": round(STAGES.calls.get(name, n) / n, 1),
                "sql_ms_per_referral": round(1000 * STAGES.sql.get(name, 0.0) / n, 3),
                "statements_per_referral": round(STATEMENTS_BY_STAGE.get(name, 0) / n, 2),
            }
            for name, ms in sorted(rows_ms.items(), key=lambda item: -item[1])
        ],
        "statements": {k: round(v / n, 2) for k, v in STATEMENTS.most_common()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if key not in ("stages", "statements"):
            print(f"{key}: {value}")
    print("\n| stage | ms per referral | share | calls | of which SQL, ms | statements |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in report["stages"]:
        print(
            f"| {row['stage']} | {row['ms_per_referral']:.2f} | {100 * row['share']:.1f} % "
            f"| {row['calls_per_referral']} | {row['sql_ms_per_referral']:.2f} "
            f"| {row['statements_per_referral']} |"
        )
    if args.statements:
        print("\n| statement | per referral |\n|---|---:|")
        for shape, per in report["statements"].items():
            print(f"| `{shape}` | {per} |")


if __name__ == "__main__":
    main()
