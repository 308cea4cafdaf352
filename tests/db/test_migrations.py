"""Models and migrations agree, and migrations run forwards and backwards cleanly."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, create_engine

from mash_hub.db import migrate


def test_migrated_schema_matches_the_models(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as connection:
        assert migrate.current_revision(connection) == migrate.head_revision()
        assert migrate.drift(connection) == []


def test_drift_is_detected_when_the_schema_differs(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE not_in_models (id integer primary key)")
        with engine.connect() as connection:
            diffs = migrate.drift(connection)
        assert any("not_in_models" in str(diff) for diff in diffs)
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    try:
        before, after = migrate.upgrade(engine)
        assert before is None
        assert after == migrate.head_revision()
        with engine.begin() as connection:
            command.downgrade(migrate.alembic_config(connection), "base")
            assert migrate.current_revision(connection) is None
        assert migrate.upgrade(engine) == (None, migrate.head_revision())
        assert migrate.upgrade(engine) == (after, after)
    finally:
        engine.dispose()
