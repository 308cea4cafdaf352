"""A hub whose database login may not create roles (a managed PostgreSQL service often gives
no CREATEROLE): the migrations still succeed, the audit log still refuses changes, and the
hub still appends, chains and verifies its log."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from mash_hub.audit import AuditEvent, record
from mash_hub.audit.log import chain_pending
from mash_hub.audit.verify import verify_chain
from mash_hub.db import migrate
from mash_hub.db.engine import Database, use_app_role
from tests.conftest import PostgresServer


@pytest.fixture
def limited_url(pg_server: PostgresServer) -> Iterator[str]:
    """A database owned by a fresh login role without CREATEROLE, CREATEDB or SUPERUSER."""
    suffix = secrets.token_hex(4)
    role, database = f"mash_limited_{suffix}", f"mash_limited_db_{suffix}"
    admin = make_url(pg_server.admin_url).set(drivername="postgresql")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOCREATEROLE NOCREATEDB NOSUPERUSER").format(
                sql.Identifier(role)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
    try:
        yield (
            make_url(pg_server.admin_url)
            .set(username=role, password=None, database=database)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_login_without_createrole_migrates_and_keeps_the_log_tamper_evident(
    limited_url: str,
) -> None:
    engine = use_app_role(create_engine(limited_url, pool_size=2, max_overflow=0))
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            creates_roles = conn.scalar(
                text("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = session_user")
            )
        assert creates_roles is False
        database = Database(engine)
        for n in range(3):
            with database.transaction() as session:
                record(session, AuditEvent("test:limited", "test.append", "thing", str(n)))
        chain_pending(engine)
        report = verify_chain(engine, workers=1)
        assert report.ok, report.problems
        assert report.entries >= 3

        with pytest.raises(DBAPIError), database.transaction() as session:
            session.execute(text("UPDATE audit_log SET actor = 'someone else'"))
        with pytest.raises(DBAPIError), database.transaction() as session:
            session.execute(text("DELETE FROM audit_log"))
        assert verify_chain(engine, workers=1).ok
    finally:
        engine.dispose()
