"""A real hub for the fault suite: demo data on its own embedded server, `serve` as a process,
partner referral load over HTTP, and the checks every fault must pass.

Always the hub's own embedded server (never ``MASH_TEST_DATABASE_URL``): the faults kill it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine

from mash_hub.audit.log import chain_pending
from mash_hub.audit.verify import verify as verify_log
from mash_hub.crypto.signing import load_signing_key
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.settings import Settings
from tests.referrals.conftest import body
from tests.serving import free_port, wait_until_ready

# Seconds a client waits for any answer. The API must answer within the pool timeout plus
# the connect timeout (10 + 5 s by default) even while the database is down.
CLIENT_TIMEOUT = 30.0
LOAD_THREADS = 3


@dataclass
class Outcome:
    key: str
    status: int | None  # None: no HTTP answer (connection refused or reset)
    reference: str | None = None
    problem: dict[str, Any] | None = None
    retry_after: str | None = None
    timed_out: bool = False


@dataclass
class Load:
    """Partner threads submitting referrals, each with a fresh Idempotency-Key."""

    hub: FaultHub
    prefix: str
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for number in range(LOAD_THREADS):
            thread = threading.Thread(target=self._run, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT * 2)

    def _run(self, number: int) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            count = 0
            while not self._stop.is_set():
                key = f"{self.prefix}-{number}-{count}-{uuid.uuid4().hex[:8]}"
                count += 1
                outcome = self.hub.submit(client, key)
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status != 201:
                    time.sleep(0.5)  # as a client backing off (Retry-After asks for more)

    def statuses(self) -> list[int | None]:
        with self._lock:
            return [o.status for o in self.outcomes]

    def wait_for(self, status: int | None, *, after: int = 0, within: float = 120) -> bool:
        """Until an answer with ``status`` arrives among the outcomes from index ``after``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if status in self.statuses()[after:]:
                return True
            time.sleep(0.05)
        return False


class FaultHub:
    """The demo hub in ``folder``; ``serve`` runs as a child process writing to a log file."""

    def __init__(self, folder: Path, env: dict[str, str], api_key: str) -> None:
        self.folder = folder
        self.env = env
        self.api_key = api_key
        self.server = EmbeddedPostgres(folder / ".mash-hub")
        self.serve_process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = folder / "serve.log"
        self.keys_used: set[str] = set()
        self._poller: psycopg.Connection[tuple[Any, ...]] | None = None
        self._keys_lock = threading.Lock()

    # -- processes --------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mash_hub", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_process(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mash_hub", *args],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ensure_serving(self) -> None:
        if self.serve_process is not None and self.serve_process.poll() is None:
            return
        self.port = free_port()
        log = self.log_path.open("ab")
        self.serve_process = subprocess.Popen(
            [sys.executable, "-m", "mash_hub", "serve", "--port", str(self.port)],
            cwd=self.folder,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        assert wait_until_ready(self.base, self.serve_process, timeout=120), self.log_text()

    def stop_serving(self) -> None:
        if self.serve_process is not None and self.serve_process.poll() is None:
            self.serve_process.send_signal(signal.SIGTERM)
            self.serve_process.wait(timeout=60)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def postmaster_pid(self) -> int:
        return int((self.server.pgdata / "postmaster.pid").read_text().splitlines()[0])

    def kill_postgres(self) -> None:
        os.kill(self.postmaster_pid(), signal.SIGKILL)

    # -- HTTP -------------------------------------------------------------------------------

    def submit(self, client: httpx.Client, key: str) -> Outcome:
        with self._keys_lock:
            self.keys_used.add(key)
        headers = {"X-API-Key": self.api_key, "Idempotency-Key": key}
        try:
            response = client.post(f"{self.base}/api/v1/referrals", json=body(), headers=headers)
        except httpx.TimeoutException:
            return Outcome(key, None, timed_out=True)
        except httpx.TransportError:
            return Outcome(key, None)
        outcome = Outcome(
            key, response.status_code, retry_after=response.headers.get("retry-after")
        )
        if response.status_code == 201:
            outcome.reference = response.json()["reference"]
        elif response.headers.get("content-type", "").startswith("application/problem+json"):
            outcome.problem = response.json()
        return outcome

    # -- the checks after every fault -------------------------------------------------------

    def query(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.server.psql_url(), connect_timeout=5) as conn:
            return conn.execute(statement, params).fetchall()

    def poll(self, statement: str) -> list[tuple[Any, ...]]:
        """``statement`` on one kept connection: polled every few milliseconds."""
        if self._poller is not None:
            try:
                return self._poller.execute(statement).fetchall()
            except psycopg.OperationalError:  # broken by an earlier fault: connect again
                self._poller.close()
        self._poller = psycopg.connect(self.server.psql_url(), autocommit=True)
        return self._poller.execute(statement).fetchall()

    def wait_for_database(self, within: float = 120) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                self.query("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def check_referrals(self, load: Load) -> dict[str, int]:
        """Every acknowledged referral is there; retrying every key of the load (answered or
        not) gives each exactly one referral, the same one for the acknowledged keys."""
        acked = {o.key: o.reference for o in load.outcomes if o.status == 201}
        stored = {r for (r,) in self.query("SELECT reference FROM referrals")}
        missing = [ref for ref in acked.values() if ref not in stored]
        assert not missing, f"{len(missing)} acknowledged referrals lost"
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client, ThreadPoolExecutor(4) as pool:
            retries = list(pool.map(lambda o: self.submit(client, o.key), load.outcomes))
        assert all(r.status == 201 and r.reference for r in retries), [
            r for r in retries if r.status != 201
        ][:3]
        replayed = {r.key: str(r.reference) for r in retries}
        for key, reference in acked.items():
            assert replayed[key] == reference, "a retry of an acknowledged referral differs"
        assert len(set(replayed.values())) == len(replayed), "two keys share a referral"
        with self._keys_lock:
            keys = len(self.keys_used)
        ((referrals,),) = self.query("SELECT count(*) FROM referrals")
        assert referrals == keys + self.baseline_referrals, "a referral was duplicated"
        return {"acknowledged": len(acked), "sent": len(load.outcomes), "referrals": referrals}

    def check_outage_answers(self, load: Load, *, from_index: int) -> dict[str, int]:
        """During the outage: 503 problem+json with Retry-After, never a 500, never a hang."""
        during = load.outcomes[from_index:]
        assert not [o for o in load.outcomes if o.timed_out], "a request hung past its timeout"
        errors = [line for line in self.log_text().splitlines() if "unhandled" in line]
        assert not [o for o in load.outcomes if o.status == 500], errors
        unavailable = [o for o in during if o.status == 503]
        assert unavailable, "no 503 while the database was down"
        for outcome in unavailable:
            assert outcome.problem is not None and outcome.problem["code"] == "database_unavailable"
            assert outcome.retry_after is not None and int(outcome.retry_after) > 0
        return {"answered_503": len(unavailable)}

    def check_audit_chain(self) -> None:
        """Everything committed is chained, and the whole chain and its checkpoints verify."""
        engine = create_engine(self.server.url())
        try:
            chain_pending(engine)
            ((unchained,),) = self.query("SELECT count(*) FROM audit_log WHERE chain_seq IS NULL")
            assert unchained == 0
            cfg = Settings(data_dir=self.folder / ".mash-hub")
            report = verify_log(
                engine,
                verify_key=load_signing_key(cfg),
                checkpoint_dir=cfg.resolved_audit_checkpoint_dir,
            )
        finally:
            engine.dispose()
        assert report.problem is None, report.as_dict()
        assert report.last_seq is not None and report.last_seq > 0

    def check_batches_and_runs(self) -> None:
        """Every batch and every run is whole: its counts match the rows it wrote."""
        batches = self.query(
            "SELECT b.id, b.counts, (SELECT count(*) FROM source_records r WHERE r.batch_id = b.id),"
            " (SELECT count(*) FROM quarantined_rows q WHERE q.batch_id = b.id) FROM feed_batches b"
        )
        for batch_id, counts, records, quarantined in batches:
            assert records == counts["accepted"] + counts["updated"], (batch_id, counts, records)
            assert quarantined == counts["quarantined"], (batch_id, counts, quarantined)
        runs = self.query(
            "SELECT r.id, r.counts, (SELECT count(*) FROM person_links l WHERE l.run_id = r.id)"
            " FROM link_runs r WHERE r.mode = 'full'"
        )
        for run_id, counts, links in runs:
            assert links == counts["auto_links"] + counts["review_pairs"], (run_id, counts, links)

    baseline_referrals = 0


def ingest_lock_held(hub: FaultHub, feed: str, path: Path) -> bool:
    """An ingest of ``path`` has its batch transaction open and has written to it."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return _writer_holds(hub, f"hashtextextended('feed-batch|{feed}|{sha}', 0)")


def relink_writing(hub: FaultHub) -> bool:
    """A full relink holds the link-run lock exclusively and has begun writing."""
    return _writer_holds(hub, "hashtextextended('link-run', 0)")


def _writer_holds(hub: FaultHub, key_sql: str) -> bool:
    rows = hub.poll(
        f"WITH k AS (SELECT {key_sql} AS key) "  # a fixed expression from this module
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid), k "
        "WHERE l.locktype = 'advisory' AND l.mode = 'ExclusiveLock' AND l.granted "
        "AND a.backend_xid IS NOT NULL "
        "AND l.classid = ((k.key >> 32) & 4294967295)::oid "
        "AND l.objid = (k.key & 4294967295)::oid"
    )
    return bool(rows[0][0])


@pytest.fixture(scope="module")
def fault_hub(server_root: Path) -> Iterator[FaultHub]:
    import tempfile  # noqa: PLC0415

    folder = Path(tempfile.mkdtemp(dir=server_root))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    env.update(
        MASH_RATE_LIMIT_PER_MINUTE="100000",
        MASH_AUTH_FAILURES_PER_MINUTE="100000",
        MASH_INGEST_WORKERS="1",
        MASH_AUDIT_CHECKPOINT_INTERVAL_SECONDS="3",  # checkpoints signed under load, verified after
    )
    setup = subprocess.run(
        [sys.executable, "-m", "mash_hub", "demo", "--people", "600", "--no-serve", "--json"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    hub = FaultHub(folder, env, json.loads(setup.stdout)["partner"]["api_key"])
    hub.ensure_serving()
    ((hub.baseline_referrals,),) = hub.query("SELECT count(*) FROM referrals")
    try:
        yield hub
    finally:
        if hub._poller is not None:
            hub._poller.close()
        hub.stop_serving()
        if hub.server.is_running():
            hub.server.stop()
