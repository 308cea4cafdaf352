"""A statement of an HTTP request that runs too long is cancelled and answered 503.

Before, a request whose query waited on a lock or ran away held its worker and pooled
connection for as long as PostgreSQL let it (no limit at all).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from mash_hub.crypto.tokens import TokenKey
from mash_hub.db.engine import Database, statement_time_limit
from mash_hub.settings import Settings
from mash_hub.web.app import create_app


def _statement_timeout(database: Database) -> str:
    with database.transaction() as session:
        return str(session.execute(text("SHOW statement_timeout")).scalar_one())


def test_a_request_stuck_on_a_lock_is_cancelled_with_503(
    committing_database: Database, tmp_path: Path
) -> None:
    cfg = Settings(data_dir=tmp_path / "hub", request_statement_timeout_seconds=0.5)
    engine = create_engine(committing_database.engine.url, pool_size=2, max_overflow=0)
    database = Database(engine)
    client = TestClient(
        create_app(database, settings=cfg, token_key=TokenKey(secrets.token_bytes(32)))
    )
    try:
        assert client.get("/api/v1/me").status_code == 401  # audited: a write to audit_log
        with committing_database.engine.connect() as blocker:
            blocker.execute(text("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE"))
            stuck = client.get("/api/v1/me")
            blocker.rollback()
        assert stuck.status_code == 503
        assert stuck.headers["content-type"].startswith("application/problem+json")
        assert int(stuck.headers["retry-after"]) > 0
        assert stuck.json()["code"] == "database_timeout"
        # The limit was the transaction's own: the pooled connections do not keep it.
        assert _statement_timeout(database) == "0"
        assert client.get("/api/v1/me").status_code == 401
    finally:
        engine.dispose()


def test_only_units_of_work_inside_the_limit_get_it(committing_database: Database) -> None:
    assert _statement_timeout(committing_database) == "0"
    with statement_time_limit(1.5):
        assert _statement_timeout(committing_database) == "1500ms"
    with statement_time_limit(0):
        assert _statement_timeout(committing_database) == "0"
    assert _statement_timeout(committing_database) == "0"
