"""While the database is unavailable the API answers 503 problem+json, briefly logged.

Before: every request while PostgreSQL was down got a generic 500 and wrote a full traceback
to the log (about 15,000 lines per outage under load).
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import create_engine
from sqlalchemy.exc import PendingRollbackError

from mash_hub.crypto.tokens import TokenKey
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import (
    Database,
    DatabaseUnavailableError,
    is_database_unavailable,
    make_engine,
)
from mash_hub.settings import Settings
from mash_hub.web.app import create_app
from mash_hub.web.middleware import OutageLog


def _assert_unavailable(response: Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert body["status"] == 503
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.fixture
def own_server(server_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, which it may stop and start."""
    server = EmbeddedPostgres(server_dir)
    server.acquire()
    try:
        yield server
    finally:
        server.stop()


def test_stopped_database_gives_503_with_one_short_log_line_then_recovers(
    own_server: EmbeddedPostgres, server_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = Settings(
        data_dir=server_dir / "hub", pool_timeout_seconds=2, auth_failures_per_minute=1000
    )
    engine = make_engine(own_server.url(), cfg)
    migrate.upgrade(engine)
    try:
        client = TestClient(
            create_app(Database(engine), settings=cfg, token_key=TokenKey(secrets.token_bytes(32)))
        )
        assert client.get("/api/v1/me").status_code == 401  # audited: the database answers

        own_server.stop()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            for _ in range(20):
                _assert_unavailable(client.get("/api/v1/me"))
            _assert_unavailable(client.post("/api/v1/referrals", json={}, headers={}))
            assert client.get("/readyz").status_code == 503
        assert not any(r.exc_info or "\n" in r.getMessage() for r in caplog.records)
        outage = [r for r in caplog.records if r.name == "mash_hub.web.middleware"]
        assert len(outage) == 1, [r.getMessage() for r in caplog.records]
        assert "database unavailable" in outage[0].getMessage()

        own_server.start_pinned()  # back, without a new app or engine
        assert client.get("/api/v1/me").status_code == 401
        assert client.get("/readyz").status_code == 200
    finally:
        engine.dispose()


def test_exhausted_pool_gives_503_not_a_hang(committing_database: Database, tmp_path: Path) -> None:
    cfg = Settings(data_dir=tmp_path / "hub")
    url = committing_database.engine.url
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    try:
        client = TestClient(
            create_app(Database(engine), settings=cfg, token_key=TokenKey(secrets.token_bytes(32)))
        )
        with engine.connect():  # the only connection, held
            _assert_unavailable(client.get("/api/v1/me"))
        assert client.get("/api/v1/me").status_code == 401
    finally:
        engine.dispose()


def test_server_that_never_answers_is_bounded_by_the_connect_timeout(tmp_path: Path) -> None:
    """A listener that accepts TCP but never speaks: without connect_timeout, a hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        cfg = Settings(data_dir=tmp_path / "hub", connect_timeout_seconds=2)
        engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none", cfg)
        client = TestClient(
            create_app(Database(engine), settings=cfg, token_key=TokenKey(secrets.token_bytes(32)))
        )
        answers: list[Response] = []
        worker = threading.Thread(target=lambda: answers.append(client.get("/api/v1/me")))
        worker.start()
        worker.join(timeout=120)
        engine.dispose()
        assert not worker.is_alive(), "the request hung on a server that never answers"
        _assert_unavailable(answers[0])


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (psycopg.OperationalError("connection refused"), True),
        (psycopg.errors.AdminShutdown(), True),
        (psycopg.errors.CannotConnectNow(), True),
        (psycopg.errors.ConnectionFailure(), True),
        (psycopg.errors.TooManyConnections(), True),
        (DatabaseUnavailableError("down"), True),
        (PendingRollbackError("lost in a transaction", code="8s2b"), True),
        (PendingRollbackError("rolled back after a failed flush", code="7s2a"), False),
        (psycopg.errors.DeadlockDetected(), False),
        (psycopg.errors.QueryCanceled(), False),
        (psycopg.errors.UniqueViolation(), False),
        (ValueError("x"), False),
    ],
)
def test_which_errors_mean_the_database_is_unavailable(
    error: BaseException, unavailable: bool
) -> None:
    assert is_database_unavailable(error) is unavailable
    try:
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as wrapped:
        assert is_database_unavailable(wrapped) is unavailable


def test_outage_log_writes_one_line_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog(interval=3600)
    with caplog.at_level(logging.WARNING):
        for _ in range(500):
            outage.answered_503(psycopg.OperationalError("down"))
    assert len(caplog.records) == 1
    outage.interval = 0
    with caplog.at_level(logging.WARNING):
        outage.answered_503(psycopg.OperationalError("down"))
    assert "500 request(s)" in caplog.records[-1].getMessage()
