"""``mash-hub serve --workers N``: a real server with worker processes on the embedded default."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from mash_hub.cli.serve import listening_socket
from mash_hub.db.embedded import EmbeddedPostgres
from tests.serving import free_port, wait_until_ready

WORKERS = 2
METRICS_TOKEN = "scraper-token-for-workers-test"


def _children(pid: int) -> list[str]:
    """Command lines of a process's direct children (Linux /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    ids = {int(c) for task in tasks.iterdir() for c in (task / "children").read_text().split()}
    lines = []
    for child in ids:
        try:
            lines.append(
                (Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
            )
        except FileNotFoundError:
            continue
    return lines


def test_serve_with_workers_answers_and_stops_cleanly(server_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    env["MASH_METRICS_TOKEN"] = METRICS_TOKEN
    env["MASH_AUTH_FAILURES_PER_MINUTE"] = "1000"  # this test sends many on purpose
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "serve", "--port", str(port), "--workers", str(WORKERS)],
        cwd=server_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = wait_until_ready(f"http://127.0.0.1:{port}", process)
        output = (
            process.stdout.read().decode() if process.poll() is not None and process.stdout else ""
        )
        assert ready, output
        workers = [line for line in _children(process.pid) if "spawn_main" in line]
        assert len(workers) == WORKERS
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(10):
                response = client.get("/api/v1/me")
                assert response.status_code == 401  # each worker authenticates (and audits)
                assert response.headers["content-type"].startswith("application/problem+json")
        # Requests on separate connections land on both workers; a scrape of either counts all.
        for _ in range(20):
            assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        for _ in range(3):
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=auth, timeout=10)
            assert scraped.status_code == 200
            count = re.search(
                r'_count\{method="GET",route="/api/v1/me",status="4xx"\} ([0-9.]+)', scraped.text
            )
            assert count is not None and float(count.group(1)) >= 30
        # The behaviour TCP_NODELAY exists for: no delayed-ACK stall on each response.
        assert fastest_keepalive_response(f"http://127.0.0.1:{port}") < 0.030
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0
    server = EmbeddedPostgres(server_dir / ".mash-hub")
    assert not server.is_running(), "serve and its workers must release the embedded server"


def test_worker_connections_have_nagle_off() -> None:
    """The listener ``serve --workers`` binds carries ``TCP_NODELAY``, and every connection it
    accepts inherits it (Linux), whatever uvicorn's own socket set-up does."""
    config = uvicorn.Config("mash_hub.web.app:worker_app", factory=True, port=free_port())
    listener = listening_socket(config)
    try:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        listener.listen()
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()


def fastest_keepalive_response(base: str, requests: int = 30) -> float:
    """The shortest round trip, in seconds, of ``requests`` keep-alive GETs on one connection.

    With Nagle's algorithm left on in a worker, a response written in two parts waits for the
    client's delayed ACK (40 ms or more on Linux) on every request after the first few, so not
    even the fastest of many gets under 40 ms; without it a loopback answer takes a few ms.
    The minimum ignores a busy machine's noise.
    """
    times = []
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(requests):
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            times.append(time.perf_counter() - started)
    return min(times[5:])  # past the connection's first (quick-ACK) exchanges
