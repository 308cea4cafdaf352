"""Audit fixtures: a migrated database reached as the application role, a superuser
connection to tamper with it, a signing key and a checkpoint directory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from mash_hub.audit import AuditEvent, record
from mash_hub.audit.log import chain_pending
from mash_hub.crypto.signing import AuditSigningKey, create_signing_key_file
from mash_hub.db import migrate
from mash_hub.db.engine import Database, use_app_role


@pytest.fixture
def app_db(fresh_database_url: str) -> Iterator[Database]:
    """A migrated database whose every connection runs as ``mash_hub_app`` (as the hub's)."""
    engine = use_app_role(create_engine(fresh_database_url, pool_size=10, max_overflow=10))
    migrate.upgrade(engine)  # runs as the owner despite the hook
    db = Database(engine)
    try:
        yield db
    finally:
        engine.dispose()


@pytest.fixture
def superuser(fresh_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """The server's superuser (who owns the tables), autocommit: the tamperer."""
    conninfo = (
        make_url(fresh_database_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def signing_key(tmp_path: Path) -> AuditSigningKey:
    return create_signing_key_file(tmp_path / "audit-signing.key")


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit-checkpoints"


def append(db: Database, n: int, *, actor: str = "user:test", chain: bool = True) -> list[int]:
    """``n`` entries in one committed transaction; returns their ids (``seq``). With ``chain``
    they are chained before returning (not left to the chainer thread's timing)."""
    with db.transaction() as session:
        seqs = [
            record(
                session,
                AuditEvent(
                    actor,
                    "person.view",
                    "person",
                    str(uuid.uuid4()),
                    {"groups": ["identity"], "purpose": "s47", "n": i},
                ),
            )
            for i in range(n)
        ]
    if chain:
        chain_pending(db.engine)
    return seqs
