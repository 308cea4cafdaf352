"""Append-only at the database level: the application role, the owner and a superuser."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from mash_hub.audit.checkpointer import create_checkpoint
from mash_hub.audit.verify import verify
from mash_hub.crypto.signing import AuditSigningKey
from mash_hub.db import migrate
from mash_hub.db.engine import APP_ROLE, Database, use_app_role
from tests.audit.conftest import append

Conn = psycopg.Connection[tuple[object, ...]]


def test_the_hub_engine_runs_as_the_app_role(app_db: Database) -> None:
    with app_db.engine.connect() as connection:
        assert connection.execute(text("SELECT current_user")).scalar() == APP_ROLE
    append(app_db, 3)  # INSERT and SELECT are allowed
    with app_db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar() == 3


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "UPDATE audit_checkpoints SET key_id = 'x'",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ],
)
def test_the_app_role_may_not_change_the_audit_tables(app_db: Database, statement: str) -> None:
    append(app_db, 2)
    with (
        pytest.raises(ProgrammingError, match="permission denied for table") as caught,
        app_db.transaction() as session,
    ):
        session.execute(text(statement))
    assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"],
)
def test_the_owner_is_refused_by_the_triggers(
    app_db: Database, superuser: Conn, statement: str
) -> None:
    append(app_db, 2)
    owner = superuser.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'")
    assert owner.fetchone() == (superuser.info.user,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        superuser.execute(statement)


def test_a_superuser_bypassing_triggers_can_change_a_row_and_verify_catches_it(
    app_db: Database, superuser: Conn, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    append(app_db, 5)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    superuser.execute("SET session_replication_role = replica")
    superuser.execute("UPDATE audit_log SET subject_id = 'someone-else' WHERE seq = 3")
    superuser.execute("RESET session_replication_role")
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (3, "content")


def test_tables_created_later_by_the_owner_are_granted_to_the_app_role(
    app_db: Database, superuser: Conn
) -> None:
    superuser.execute("CREATE TABLE later_feature (id integer PRIMARY KEY, note text)")
    superuser.execute("CREATE TABLE later_serial (id serial PRIMARY KEY)")
    with app_db.transaction() as session:
        session.execute(text("INSERT INTO later_feature VALUES (1, 'a')"))
        session.execute(text("UPDATE later_feature SET note = 'b'"))
        session.execute(text("INSERT INTO later_serial DEFAULT VALUES"))
        session.execute(text("DELETE FROM later_feature"))
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        app_db.transaction() as session,
    ):
        session.execute(text("TRUNCATE later_feature"))


def test_the_app_role_cannot_write_the_schema_version(app_db: Database) -> None:
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        app_db.transaction() as session,
    ):
        session.execute(text("UPDATE alembic_version SET version_num = '0001'"))


def test_migrating_through_a_hub_engine_runs_as_the_owner(fresh_database_url: str) -> None:
    engine = use_app_role(create_engine(fresh_database_url))
    try:
        with engine.connect() as connection:  # switched to the app role before migrating
            assert connection.execute(text("SELECT current_user")).scalar() == APP_ROLE
        assert migrate.upgrade(engine)[1] == migrate.head_revision()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == APP_ROLE
            owner = connection.execute(
                text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_checkpoints'")
            ).scalar()
            assert owner != APP_ROLE
    finally:
        engine.dispose()


def test_a_login_without_the_role_stays_itself(fresh_database_url: str, superuser: Conn) -> None:
    """A connecting user that may not assume mash_hub_app keeps its own identity."""
    superuser.execute("DROP ROLE IF EXISTS mash_test_outsider")
    superuser.execute("CREATE ROLE mash_test_outsider LOGIN")
    url = create_engine(fresh_database_url).url.set(username="mash_test_outsider")
    engine = use_app_role(create_engine(url))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == "mash_test_outsider"
    finally:
        engine.dispose()
        superuser.execute("DROP ROLE mash_test_outsider")
