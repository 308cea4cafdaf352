"""``mash-hub demo`` / ``serve`` stopped with Ctrl+C shut down in order: no failed chaining."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from mash_hub.db.embedded import EmbeddedPostgres
from tests.serving import free_port, wait_until_ready


def test_ctrl_c_chains_everything_before_the_embedded_server_stops(server_dir: Path) -> None:
    """`demo` serves inside its own use of the database. Before, the inner use's release
    stopped the embedded server (same process, one registration) while the outer one still
    had entries to chain: `audit chaining at shutdown failed (OperationalError)` on Ctrl+C,
    although the chain was intact."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "demo", "--people", "50", "--port", str(port)],
        cwd=server_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}", process, timeout=90)
        for _ in range(3):  # audited (auth.failed): something to chain at shutdown
            assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=10).status_code == 401
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl+C does
        output, _ = process.communicate(timeout=90)
    text = output.decode()
    assert process.returncode == 0, text
    assert "chaining at shutdown failed" not in text
    assert "Traceback" not in text
    server = EmbeddedPostgres(server_dir / ".mash-hub")
    assert not server.is_running()
    with server.running(), psycopg.connect(server.psql_url()) as conn:
        row = conn.execute("SELECT count(*), count(chain_seq) FROM audit_log").fetchone()
    assert row is not None and row[0] > 3 and row[0] == row[1]
