"""Liveness and readiness, through the app and through a real server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database
from mash_hub.web.app import create_app
from tests.serving import free_port, wait_until_ready


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


def test_serve_is_ready_on_the_embedded_default_with_no_configuration(server_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "serve", "--port", str(port)],
        cwd=server_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = wait_until_ready(f"http://127.0.0.1:{port}", process, timeout=60)
        output = (
            process.stdout.read().decode() if process.poll() is not None and process.stdout else ""
        )
        assert ready, output
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    server = EmbeddedPostgres(server_dir / ".mash-hub")
    assert not server.is_running(), "serve must stop the embedded server it started"
