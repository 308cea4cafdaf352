"""Shared fixtures: a real PostgreSQL server for the whole run, a migrated database per worker.

By default the tests start the embedded server (so a fresh machine needs nothing else);
``MASH_TEST_DATABASE_URL`` points them at another server, where each worker creates (and
afterwards drops) databases of its own. Each test runs inside a transaction that is rolled
back, so tests are isolated even when the code under test flushes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url

# Property tests talk to a real database on a shared 2-core machine: timing is not what they
# test, so no per-example deadline anywhere (explicit @settings inherit this profile).
settings.register_profile("mash-hub", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mash-hub")


class PostgresServer:
    """A server the tests may create databases on."""

    def __init__(self, admin_url: str, embedded: EmbeddedPostgres | None) -> None:
        self.admin_url = admin_url
        self.embedded = embedded

    def _admin_conninfo(self) -> str:
        return (
            make_url(self.admin_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )

    def create_database(self, prefix: str = "mash_test") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self._admin_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        assert name is not None
        with psycopg.connect(self._admin_conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    """Where embedded test servers live.

    Not under pytest's own temp root: pytest resets that folder to mode 0700 when a session
    starts, which would lock the server's system user out of a running server's files.
    """
    root = Path(tempfile.mkdtemp(prefix="mash-hub-tests-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server_dir(server_root: Path) -> Path:
    """A fresh folder for one test's embedded server or hub data directory."""
    return Path(tempfile.mkdtemp(dir=server_root))


@pytest.fixture(scope="session")
def pg_server(server_root: Path) -> Iterator[PostgresServer]:
    external = os.environ.get("MASH_TEST_DATABASE_URL")
    if external:
        yield PostgresServer(normalise_url(external), None)
        return
    embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(dir=server_root)))
    url = embedded.acquire()
    try:
        yield PostgresServer(url, embedded)
    finally:
        embedded.release()


@pytest.fixture
def fresh_database_url(pg_server: PostgresServer) -> Iterator[str]:
    """An empty database of its own, for tests that commit or run the CLI."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture(scope="session")
def migrated_engine(pg_server: PostgresServer) -> Iterator[Engine]:
    """This worker's database, migrated once for the session."""
    url = pg_server.create_database()
    engine = create_engine(url, pool_size=5, max_overflow=10)
    migrate.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        pg_server.drop_database(url)


@pytest.fixture
def session(migrated_engine: Engine) -> Iterator[Session]:
    """A session whose every change is rolled back after the test, commits included."""
    with migrated_engine.connect() as connection:
        outer = connection.begin()
        db_session = Session(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield db_session
        finally:
            db_session.close()
            outer.rollback()


@pytest.fixture
def committing_database(fresh_database_url: str) -> Iterator[Database]:
    """A migrated database whose commits are real (for transaction and HTTP tests)."""
    engine = create_engine(fresh_database_url, pool_size=5, max_overflow=5)
    migrate.upgrade(engine)
    db = Database(engine)
    try:
        yield db
    finally:
        engine.dispose()


@pytest.fixture
def hub_env(tmp_path: Path, fresh_database_url: str) -> dict[str, str]:
    """Environment for running ``mash-hub`` as a subprocess against a fresh database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASH_")}
    env["MASH_DATABASE_URL"] = fresh_database_url
    env["MASH_DATA_DIR"] = str(tmp_path / "hub-data")
    return env
