"""Where one person search's time goes: each stage of ``POST /api/v1/persons/search`` timed.

    python benchmarks/profile_search.py [--people 10000] [--searches 300] [--data-dir DIR]
        [--json]

The hub is ``bench_load.py``'s (``mash-hub demo --no-serve`` in ``DIR/<people>``, built the
first time and reused after), opened in this process; the queries are ``bench_load.py``'s
(a third perturbed), sent one after another as the demo's MASH officer through the app
in-process (Starlette's test client: no socket, so "HTTP" here is the framework's share).

Each stage is the existing function it names, wrapped here with ``time.perf_counter`` (no
change to product code): blind-index root check, blind-index terms (HMAC), the candidates
look-up (blind index joined to the current records), the fetch of ciphertexts with their
data keys, key unwrapping, decryption, features, scoring, explanations, the audit append,
the policy and purpose check, authentication, the rate limiter, and each transaction's begin
and commit. Times are exclusive: a stage's own time, less the stages it calls (a
transaction counts two calls, its begin and its commit); "HTTP framework" is what is left of
the request (routing, validation, middleware, response models, JSON, the test client's
thread hand-offs; and in the search service's row, the one query of policy version and
latest full run). "of which SQL" is the time SQLAlchemy spent executing statements inside
the stage (the audit append writes through the driver directly, so its SQL shows only in
its own row; the sealed purpose text's row is flushed by the next statement, the ciphertext
fetch). The audit chainer thread runs beside the searches and is not in any row.
``per_search`` counts SQL statements, transactions (each a BEGIN and a COMMIT) and
connection checkouts (each a pre-ping) per search. Wall-clock on a shared 2-core machine:
noisy, and the wrappers add about a microsecond per call. Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_load import PURPOSE, load_average, queries, set_up
from fastapi.testclient import TestClient
from sqlalchemy import event

from mash_hub.casework import search as casework_search
from mash_hub.crypto.envelope import FieldCipher
from mash_hub.crypto.keystore import KeyStore
from mash_hub.db.engine import Database, database
from mash_hub.matching import frequencies
from mash_hub.matching.model import LinkageModel
from mash_hub.matching.scorer import PairScorer
from mash_hub.persons.store import PersonStore
from mash_hub.settings import Settings
from mash_hub.web import search as web_search
from mash_hub.web.app import create_app
from mash_hub.web.auth import Authenticator
from mash_hub.web.deps import current_principal
from mash_hub.web.ratelimit import RateLimiter

HTTP = "HTTP framework (routing, validation, middleware, JSON)"
AUTH = "auth: dependency (the rest)"


class Stages:
    """Exclusive time and SQL time per stage, per search; one stack of open stages per thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.sql: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()
        self.active = False

    def _stack(self) -> list[list[Any]]:
        stack: list[list[Any]] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def call(self, name: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``function`` timed as ``name``, less the time of stages opened inside it."""
        if not self.active:
            return function(*args, **kwargs)
        frame: list[Any] = [name, 0.0]  # name, time spent in nested stages
        stack = self._stack()
        stack.append(frame)
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - began
            stack.pop()
            self.seconds[name] += elapsed - frame[1]
            self.calls[name] += 1
            if stack:
                stack[-1][1] += elapsed

    def current(self) -> str | None:
        stack = self._stack()
        return stack[-1][0] if stack else None

    def add_sql(self, seconds: float) -> None:
        if self.active:
            self.sql[self.current() or HTTP] += seconds


STAGES = Stages()


class Counts:
    """Statements, transactions and connection checkouts while the searches are timed."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        if STAGES.active:
            with self._lock:
                self.seen[what] += 1


COUNTS = Counts()


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return STAGES.call(name, function, *args, **kwargs)

    return wrapper


def _wrap(owner: Any, attribute: str, name: str) -> None:
    setattr(owner, attribute, _timed(name, getattr(owner, attribute)))


def instrument(app: Any, engine: Any) -> None:
    """Wrap the functions a search calls, in the namespaces it calls them from."""
    _wrap(web_search, "search_persons", "search service (ranking, sorting, the rest)")
    _wrap(casework_search, "authorise_search", "policy + purpose check")
    _wrap(PersonStore, "align", "blind-index root check")
    _wrap(casework_search, "query_terms", "blind-index terms (standardise, variants, HMAC)")
    _wrap(PersonStore, "current_candidates", "blind-index look-up + current candidates (SQL)")
    _wrap(casework_search, "seal_text", "purpose text sealed (encrypt + insert)")
    _wrap(frequencies, "of_run", "name frequencies (cached per full run)")
    _wrap(LinkageModel, "scorer", "scorer built")
    _wrap(PersonStore, "read", "ciphertext + key fetch (SQL; flushes sealed text)")
    _wrap(KeyStore, "ciphers", "data-key rows (SQL)")
    _wrap(KeyStore, "open_wrapped", "key unwrapping")
    _wrap(FieldCipher, "decrypt_group", "decryption (AES-GCM + decode)")
    _wrap(casework_search, "record_features", "features")
    _wrap(PairScorer, "score", "scoring")
    _wrap(casework_search, "explain", "explanations")
    _wrap(casework_search, "_audit", "audit append")
    _wrap(Authenticator, "authenticate", "auth: token check + user look-up")
    _wrap(RateLimiter, "take", "auth: rate limiter (own connection)")

    begin_commit = Database.transaction

    @contextlib.contextmanager
    def transaction(self: Database) -> Iterator[Any]:
        where = "auth" if STAGES.current() == AUTH else "search"
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

    @event.listens_for(engine, "before_cursor_execute")
    def _began(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        conn.info.setdefault("profile_began", []).append(time.perf_counter())

    @event.listens_for(engine, "begin")
    def _transaction(conn: Any) -> None:
        COUNTS.count("transactions")

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        COUNTS.count("checkouts (each a pre-ping)")

    @event.listens_for(engine, "after_cursor_execute")
    def _ended(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        STAGES.add_sql(time.perf_counter() - conn.info["profile_began"].pop())
        COUNTS.count("SQL statements (through SQLAlchemy)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=Path(".bench-load"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve() / str(args.people)
    demo, setup_seconds = set_up(data_dir, args.people)
    for name in [k for k in os.environ if k.startswith("MASH_")]:
        del os.environ[name]  # the hub in the data dir, as bench_load.py serves it
    settings = Settings(data_dir=data_dir, rate_limit_per_minute=1_000_000)

    officer = next(a["token"] for a in demo["accounts"] if a["role"] == "mash_officer")
    headers = {"Authorization": f"Bearer {officer}", **PURPOSE}
    bodies = queries(data_dir / "demo" / "extracts", args.searches, seed=11)
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

        def search(body: dict[str, str]) -> dict[str, Any]:
            response = client.post("/api/v1/persons/search", json=body, headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"search answered {response.status_code}")
            answer: dict[str, Any] = response.json()
            return answer

        for body in bodies[:10]:  # policy compiled, model loaded, statements prepared
            search(body)
        totals: list[float] = []
        candidates: list[int] = []
        STAGES.active = True
        for body in bodies:
            began = time.perf_counter()
            answer = search(body)
            totals.append(time.perf_counter() - began)
            candidates.append(answer["candidates"])
        STAGES.active = False
        report["load_average_after"] = load_average()
    n = len(totals)
    total_ms = 1000 * sum(totals) / n
    rows = {name: 1000 * seconds / n for name, seconds in STAGES.seconds.items()}
    rows[HTTP] = total_ms - sum(rows.values())
    per_search = {what: round(seen / n, 2) for what, seen in sorted(COUNTS.seen.items())}
    # The audit append writes through the driver, past SQLAlchemy's events: one per search.
    per_search["SQL statements (through SQLAlchemy)"] = per_search.get(
        "SQL statements (through SQLAlchemy)", 0.0
    )
    per_search["SQL statements (audit append, driver)"] = 1.0
    report |= {
        "per_search": per_search,
        "searches": n,
        "request_ms": {
            "mean": round(total_ms, 2),
            "p50": round(1000 * percentile(totals, 0.5), 2),
            "p95": round(1000 * percentile(totals, 0.95), 2),
        },
        "candidates": {"median": statistics.median(candidates), "max": max(candidates)},
        "stages": [
            {
                "stage": name,
                "ms_per_search": round(ms, 3),
                "share": round(ms / total_ms, 3),
                "calls_per_search": round(STAGES.calls.get(name, n) / n, 1),
                "sql_ms_per_search": round(1000 * STAGES.sql.get(name, 0.0) / n, 3),
            }
            for name, ms in sorted(rows.items(), key=lambda item: -item[1])
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if key != "stages":
            print(f"{key}: {value}")
    print("\n| stage | ms per search | share | calls per search | of which SQL, ms |")
    print("|---|---:|---:|---:|---:|")
    for row in report["stages"]:
        print(
            f"| {row['stage']} | {row['ms_per_search']:.2f} | {100 * row['share']:.1f} % "
            f"| {row['calls_per_search']} | {row['sql_ms_per_search']:.2f} |"
        )


if __name__ == "__main__":
    main()
