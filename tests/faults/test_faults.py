"""Faults under load: `serve` killed, then the PostgreSQL server killed during referral load,
during an ingest and during a full relink (all with SIGKILL).

After each: every acknowledged referral is there; retrying every Idempotency-Key of the load
gives one referral per key (the same one for acknowledged keys); while the database was down
the API answered 503 problem+json with Retry-After, never a 500 and never past the client's
timeout, and it recovered without a restart; the audit chain verifies; every feed batch and
linkage run is whole.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import FaultHub, Load, ingest_lock_held, relink_writing

pytestmark = pytest.mark.slow


def _until(condition: Callable[[], bool], within: float = 120, step: float = 0.01) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def _kill_postgres_under_load(hub: FaultHub, load: Load) -> int:
    """Kill the server once referrals are flowing; wait for 503s, then for recovery (same
    serve process). Returns the index of the first outcome after the kill."""
    assert load.wait_for(201), "no referral accepted before the fault"
    serve_pid = hub.serve_process.pid if hub.serve_process else None
    hub.kill_postgres()
    killed_at = len(load.outcomes)
    assert load.wait_for(503, after=killed_at), hub.log_text()[-3000:]
    assert load.wait_for(201, after=killed_at + 1), "the API did not recover"
    assert hub.serve_process is not None and hub.serve_process.poll() is None
    assert hub.serve_process.pid == serve_pid, "recovered only by restarting serve"
    return killed_at


def _check_after_fault(hub: FaultHub, load: Load) -> None:
    hub.wait_for_database()
    hub.check_referrals(load)
    hub.check_audit_chain()
    hub.check_batches_and_runs()


def test_serve_killed_during_referral_load(fault_hub: FaultHub) -> None:
    hub = fault_hub
    hub.ensure_serving()
    with Load(hub, "serve-kill") as load:
        assert load.wait_for(201)
        assert hub.serve_process is not None
        hub.serve_process.send_signal(signal.SIGKILL)
        hub.serve_process.wait(timeout=30)
        killed_at = len(load.outcomes)
        assert load.wait_for(None, after=killed_at)  # refused: nobody listens
        hub.ensure_serving()  # a new serve on the still-running server
        assert _until(lambda: 201 in load.statuses()[killed_at:], step=0.05)
    assert not [o for o in load.outcomes if o.timed_out or o.status == 500]
    _check_after_fault(hub, load)


def test_postgres_killed_during_referral_load(fault_hub: FaultHub) -> None:
    hub = fault_hub
    hub.ensure_serving()
    lines_before = len(hub.log_text().splitlines())
    with Load(hub, "pg-kill") as load:
        killed_at = _kill_postgres_under_load(hub, load)
    hub.check_outage_answers(load, from_index=killed_at)
    outage_log = hub.log_text().splitlines()[lines_before:]
    assert not [line for line in outage_log if "Traceback" in line or 'File "' in line]
    besides_access_log = [line for line in outage_log if "HTTP/1.1" not in line]
    assert len(besides_access_log) < 20, besides_access_log  # measured: 7 for 21 answers
    _check_after_fault(hub, load)


def test_postgres_killed_during_ingest(fault_hub: FaultHub) -> None:
    hub = fault_hub
    hub.ensure_serving()
    extract = _extract(hub)
    (batches_before,) = hub.query("SELECT count(*) FROM feed_batches")[0]
    with Load(hub, "pg-kill-ingest") as load:
        assert load.wait_for(201)
        ingest = hub.cli_process("ingest", "--feed", "council", "--no-link", str(extract))
        assert _until(lambda: ingest_lock_held(hub, "council", extract)), "ingest never wrote"
        killed_at = len(load.outcomes)
        hub.kill_postgres()
        _, stderr = ingest.communicate(timeout=120)
        assert ingest.returncode == 3, stderr  # the database went away: a one-line error
        assert "Traceback" not in stderr
        assert load.wait_for(503, after=killed_at)
        assert load.wait_for(201, after=killed_at + 1)
    hub.check_outage_answers(load, from_index=killed_at)
    (batches_after,) = hub.query("SELECT count(*) FROM feed_batches")[0]
    assert batches_after == batches_before, "the interrupted ingest left a batch"
    again = hub.cli("ingest", "--feed", "council", "--no-link", str(extract), "--json")
    assert again.returncode == 0, again.stderr
    _check_after_fault(hub, load)


def test_postgres_killed_during_relink(fault_hub: FaultHub) -> None:
    hub = fault_hub
    hub.ensure_serving()
    with Load(hub, "pg-kill-relink") as load:
        assert load.wait_for(201)
        relink = _relink_caught_writing(hub)
        (runs_before,) = hub.query("SELECT count(*) FROM link_runs WHERE mode = 'full'")[0]
        killed_at = len(load.outcomes)
        hub.kill_postgres()
        _, stderr = relink.communicate(timeout=120)
        assert relink.returncode == 3, stderr
        assert load.wait_for(503, after=killed_at)
        assert load.wait_for(201, after=killed_at + 1)
    hub.check_outage_answers(load, from_index=killed_at)
    (runs_after,) = hub.query("SELECT count(*) FROM link_runs WHERE mode = 'full'")[0]
    assert runs_after == runs_before, "the interrupted relink left a run"
    again = hub.cli("link", "run", "--json")
    assert again.returncode == 0, again.stderr
    _check_after_fault(hub, load)


def _relink_caught_writing(hub: FaultHub) -> subprocess.Popen[str]:
    """A full relink caught while it writes its run; a run that finished before its writing
    was seen is simply run again (at most three times)."""
    for _attempt in range(3):
        relink = hub.cli_process("link", "run", "--json")

        def writing_or_done(process: subprocess.Popen[str] = relink) -> bool:
            return relink_writing(hub) or process.poll() is not None

        _until(writing_or_done)
        if relink.poll() is None:
            return relink
        relink.communicate(timeout=300)
    pytest.fail("no relink was caught writing")


def _extract(hub: FaultHub) -> Path:
    """A council extract of people the demo does not hold (another seed)."""
    out = hub.folder / "fault-extracts"
    if not (out / "council.csv").exists():
        made = hub.cli("synth", "--people", "1500", "--seed", "77", "--out", str(out))
        assert made.returncode == 0, made.stderr
    return out / "council.csv"
