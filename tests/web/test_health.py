"""Liveness and readiness, through the app and through a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database
from mash_hub.web.app import create_app


def test_ready_when_migrated(committing_database: Database) -> None:
    client = TestClient(create_app(committing_database))
    assert client.get("/healthz").json() == {"status": "alive"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_not_ready_before_migration(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    try:
        client = TestClient(create_app(Database(engine)))
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "mash-hub db upgrade" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200
    finally:
        engine.dispose()


def test_not_ready_when_database_unreachable() -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    client = TestClient(create_app(Database(engine)))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_is_ready_on_the_embedded_default_with_no_configuration(server_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "serve", "--port", str(port)],
        cwd=server_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        output = (
            process.stdout.read().decode() if process.poll() is not None and process.stdout else ""
        )
        assert status == 200, output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    server = EmbeddedPostgres(server_dir / ".mash-hub")
    assert not server.is_running(), "serve must stop the embedded server it started"
