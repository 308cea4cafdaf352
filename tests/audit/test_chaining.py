"""Chaining after commit: writers never wait for each other, and the chain stays whole.

Writers insert unchained entries; committed ones are chained in order by ``chain_pending``
(the chainer thread, checkpoints, engine disposal), through the database's
``audit_log_chain`` function. These tests hold the chain lock, interleave transactions and
roll some back, and check what the verifier and the database allow.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from mash_hub.audit import AuditEvent, record
from mash_hub.audit.checkpointer import create_checkpoint
from mash_hub.audit.log import (
    CHAIN_LOCK,
    GENESIS_HASH,
    canonical_bytes,
    chain_hash,
    chain_pending,
)
from mash_hub.audit.models import AuditEntry
from mash_hub.audit.verify import verify
from mash_hub.crypto.signing import AuditSigningKey
from mash_hub.db import migrate
from mash_hub.db.engine import Database, use_app_role
from tests.audit.conftest import append

Conn = psycopg.Connection[tuple[object, ...]]


def _event(n: int) -> AuditEvent:
    return AuditEvent("user:test", "person.view", "person", str(n), {"n": n})


@pytest.fixture
def chain_held(superuser: Conn) -> Iterator[Conn]:
    """The chain lock, held by someone else until released: nothing gets chained meanwhile."""
    superuser.execute("SELECT pg_advisory_lock(%s)", (CHAIN_LOCK,))
    try:
        yield superuser
    finally:
        superuser.execute("SELECT pg_advisory_unlock_all()")


def _chained(db: Database) -> list[tuple[int, int | None]]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(AuditEntry.seq, AuditEntry.chain_seq).order_by(AuditEntry.seq)
        )
        return [(seq, pos) for seq, pos in rows]


def test_a_committed_entry_waits_unchained_and_is_reported_until_chained(
    app_db: Database, chain_held: Conn, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    with app_db.transaction() as session:
        seqs = [record(session, _event(i)) for i in range(3)]
    assert seqs == [1, 2, 3]  # the writer knows its entries' ids before commit
    time.sleep(0.2)  # the chainer thread is woken, and blocks on the lock
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.ok and report.entries == 0 and report.unchained == 3
    chain_held.execute("SELECT pg_advisory_unlock_all()")
    chain_pending(app_db.engine)
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.ok and report.entries == 3 and report.unchained == 0


def test_the_chainer_thread_chains_after_commit_on_its_own(app_db: Database) -> None:
    with app_db.transaction() as session:
        record(session, _event(1))
    deadline = time.monotonic() + 10
    while _chained(app_db) != [(1, 1)]:
        assert time.monotonic() < deadline, "the chainer thread did not chain the entry"
        time.sleep(0.02)


def test_disposing_the_engine_chains_what_it_wrote(fresh_database_url: str) -> None:
    engine = use_app_role(create_engine(fresh_database_url))
    migrate.upgrade(engine)
    db = Database(engine)
    owner = create_engine(fresh_database_url)
    try:
        with owner.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": CHAIN_LOCK})
            with db.transaction() as session:
                record(session, _event(1))
            assert _chained(db) == [(1, None)]
            holder.execute(text("SELECT pg_advisory_unlock_all()"))
        engine.dispose()  # as `open_hub()` does at the end of a command
        assert _chained(db) == [(1, 1)]
    finally:
        engine.dispose()
        owner.dispose()


def test_a_long_transaction_is_chained_after_later_ones_without_a_gap(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    with app_db.sessions() as slow:
        early = record(slow, _event(1))  # not committed yet
        later = append(app_db, 2)
        assert later == [early + 1, early + 2]
        assert _chained(app_db) == [(later[0], 1), (later[1], 2)]  # the early one is unseen
        slow.commit()
    chain_pending(app_db.engine)
    assert _chained(app_db) == [(early, 3), (later[0], 1), (later[1], 2)]
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.ok and report.entries == 3


def test_a_rolled_back_entry_leaves_an_unused_id_and_no_gap(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    append(app_db, 2)
    with pytest.raises(RuntimeError), app_db.transaction() as session:
        record(session, _event(99))
        raise RuntimeError
    append(app_db, 2)
    assert _chained(app_db) == [(1, 1), (2, 2), (4, 3), (5, 4)]
    assert create_checkpoint(app_db, signing_key, checkpoint_dir) is not None
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.ok and report.entries == 4 and report.checkpoints == 1


def test_a_checkpoint_chains_first_and_signs_the_whole_chain(
    app_db: Database, chain_held: Conn, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    append(app_db, 4, chain=False)
    chain_held.execute("SELECT pg_advisory_unlock_all()")
    made = create_checkpoint(app_db, signing_key, checkpoint_dir)
    assert made is not None and made.seq == 4


@settings(
    max_examples=12,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 4), st.booleans(), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_any_interleaving_of_commits_rollbacks_and_chaining_verifies(
    app_db: Database,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    steps: list[tuple[int, int, bool, bool]],
) -> None:
    """Open sessions append; each step ends one (commit or roll back) and maybe chains."""
    open_sessions = [app_db.sessions() for _ in range(4)]
    committed: set[int] = set()
    pending: dict[int, list[int]] = {i: [] for i in range(4)}
    try:
        for which, count, commit, chain_now in steps:
            session = open_sessions[which]
            pending[which] += [record(session, _event(n)) for n in range(count)]
            if commit:
                session.commit()
                committed.update(pending[which])
            else:
                session.rollback()
            pending[which] = []
            if chain_now:
                chain_pending(app_db.engine)
    finally:
        for session in open_sessions:
            session.rollback()
            session.close()
    chain_pending(app_db.engine)
    with app_db.engine.connect() as connection:
        rows = connection.execute(
            select(AuditEntry.seq, AuditEntry.chain_seq).order_by(AuditEntry.chain_seq)
        ).all()
        total = connection.execute(select(func.count()).select_from(AuditEntry)).scalar()
    assert committed <= {seq for seq, _ in rows}
    assert [pos for _, pos in rows] == list(range(1, len(rows) + 1))
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.ok, report.problem
    assert report.entries == total and report.unchained == 0


# -- what the database allows -----------------------------------------------------------------


def _expect_refusal(db: Database, statement: str, params: dict[str, object], match: str) -> None:
    with pytest.raises(DBAPIError, match=match), db.transaction() as session:
        session.execute(text(statement), params)


def test_the_app_role_cannot_fill_chain_fields_itself(app_db: Database) -> None:
    append(app_db, 1, chain=False)
    with (
        pytest.raises(ProgrammingError, match="permission denied for table audit_log"),
        app_db.transaction() as session,
    ):
        session.execute(
            text("UPDATE audit_log SET chain_seq = 1, prev_hash = :h, entry_hash = :h"),
            {"h": bytes(32)},
        )


def test_the_app_role_cannot_insert_a_chained_entry(app_db: Database) -> None:
    _expect_refusal(
        app_db,
        "INSERT INTO audit_log (entry_id, occurred_at, actor, action, details, chain_seq,"
        " prev_hash, entry_hash) VALUES (:id, now(), 'x', 'y', '{}', 1, :h, :h)",
        {"id": uuid.uuid4(), "h": bytes(32)},
        "inserted unchained",
    )


def test_the_chain_function_fills_each_entry_once(app_db: Database) -> None:
    append(app_db, 2)
    _expect_refusal(
        app_db,
        "SELECT audit_log_chain(ARRAY[1]::bigint[], ARRAY[:h]::bytea[])",
        {"h": bytes(32)},
        "1 of 1 entries are missing, uncommitted, repeated or already chained",
    )


@pytest.mark.parametrize(
    ("seqs", "hashes", "match"),
    [
        ("ARRAY[1, 1]", "ARRAY[:h, :h]", "repeated"),
        ("ARRAY[1, 2]", "ARRAY[:h]", "one hash for each entry"),
        ("ARRAY[]::bigint[]", "ARRAY[]::bytea[]", "one hash for each entry"),
        ("ARRAY[1]", "ARRAY[:short]", "every hash is 32 bytes"),
        ("ARRAY[7]", "ARRAY[:h]", "missing"),
    ],
)
def test_the_chain_function_refuses_malformed_calls(
    app_db: Database, seqs: str, hashes: str, match: str
) -> None:
    append(app_db, 2, chain=False)
    _expect_refusal(
        app_db,
        f"SELECT audit_log_chain({seqs}::bigint[], {hashes}::bytea[])",
        {"h": bytes(32), "short": bytes(31)},
        match,
    )


def test_an_uncommitted_entry_cannot_be_chained_by_someone_else(app_db: Database) -> None:
    with app_db.sessions() as writer:
        seq = record(writer, _event(1))
        _expect_refusal(
            app_db,
            "SELECT audit_log_chain(ARRAY[:s]::bigint[], ARRAY[:h]::bytea[])",
            {"s": seq, "h": bytes(32)},
            "missing, uncommitted",
        )
        writer.rollback()


def test_the_function_links_entries_itself_and_a_wrong_hash_is_caught(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    """The caller gives only hashes; the function takes prev_hash from the head. A wrong
    hash (a buggy or hostile caller) is chained, and the verifier names it."""
    append(app_db, 2)
    with app_db.transaction() as session:  # inserted and chained in one transaction, so the
        seq = session.execute(  # chainer thread never sees it unchained
            text(
                "INSERT INTO audit_log (entry_id, occurred_at, actor, action, details)"
                " VALUES (:id, now(), 'user:test', 'person.view', '{}') RETURNING seq"
            ),
            {"id": uuid.uuid4()},
        ).scalar_one()
        session.execute(
            text("SELECT audit_log_chain(ARRAY[:s]::bigint[], ARRAY[:h]::bytea[])"),
            {"s": seq, "h": bytes(range(32))},
        )
    rows = _hashes(app_db)
    assert rows[2][1] == rows[1][2]  # entry 3's prev_hash is entry 2's hash
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (3, "content")


def _hashes(db: Database) -> list[tuple[int, bytes, bytes]]:
    with db.engine.connect() as connection:
        return [
            (pos, bytes(prev), bytes(entry))
            for pos, prev, entry in connection.execute(
                text(
                    "SELECT chain_seq, prev_hash, entry_hash FROM audit_log"
                    " WHERE chain_seq IS NOT NULL ORDER BY chain_seq"
                )
            )
        ]


@pytest.mark.parametrize(
    "statement",
    [
        # Re-chaining a chained entry, even by the owner.
        "UPDATE audit_log SET prev_hash = '\\x00'::bytea WHERE seq = 1",
        # Filling the chain fields while changing the contents.
        "UPDATE audit_log SET chain_seq = 2, prev_hash = '\\x00'::bytea,"
        " entry_hash = '\\x00'::bytea, actor = 'someone else' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
    ],
)
def test_the_owner_may_only_fill_empty_chain_fields(
    app_db: Database, superuser: Conn, statement: str
) -> None:
    append(app_db, 1)
    superuser.execute("SELECT pg_advisory_lock(%s)", (CHAIN_LOCK,))  # entry 2 stays unchained
    try:
        append(app_db, 1, chain=False)
        assert _chained(app_db) == [(1, 1), (2, None)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            superuser.execute(statement)
    finally:
        superuser.execute("SELECT pg_advisory_unlock_all()")


# -- upgrading a log written before chaining moved after commit -------------------------------


def _before_0011() -> str:
    revision = ScriptDirectory.from_config(migrate.alembic_config()).get_revision("0011")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


def _legacy_append(engine_url: str, count: int) -> None:
    """Entries as the pre-0011 writer made them: chained on insert, ``seq`` gapless."""
    conninfo = engine_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (0, GENESIS_HASH) if row is None else (int(row[0]), bytes(row[1]))
        for _ in range(count):
            seq += 1
            event, entry_id = _event(seq), uuid.uuid4()
            when = dt.datetime.now(dt.UTC)
            digest = chain_hash(prev, canonical_bytes(seq, entry_id, when, event))
            conn.execute(
                "INSERT INTO audit_log (seq, entry_id, occurred_at, actor, action, subject_type,"
                " subject_id, details, prev_hash, entry_hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                (
                    seq,
                    entry_id,
                    when,
                    event.actor,
                    event.action,
                    event.subject_type,
                    event.subject_id,
                    json.dumps(event.details),
                    prev,
                    digest,
                ),
            )
            prev = digest


def test_a_log_written_before_0011_still_verifies_and_grows(
    fresh_database_url: str, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    engine = use_app_role(create_engine(fresh_database_url))
    db = Database(engine)
    try:
        migrate.upgrade(engine, _before_0011())
        _legacy_append(fresh_database_url, 5)
        migrate.upgrade(engine)
        assert _chained(db) == [(n, n) for n in range(1, 6)]
        report = verify(engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
        assert report.ok and report.entries == 5
        assert append(db, 2) == [6, 7]  # the identity continues after the old entries
        assert create_checkpoint(db, signing_key, checkpoint_dir) is not None
        report = verify(engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
        assert report.ok and report.entries == 7 and report.checkpoints == 1
    finally:
        engine.dispose()


def test_downgrade_below_0011_is_refused_once_the_chain_differs_from_seq(
    fresh_database_url: str,
) -> None:
    engine = use_app_role(create_engine(fresh_database_url))
    db = Database(engine)
    try:
        migrate.upgrade(engine)
        with pytest.raises(RuntimeError), db.transaction() as session:
            record(session, _event(1))
            raise RuntimeError
        append(db, 1)  # id 2 at chain position 1
        with (
            pytest.raises(DBAPIError, match="cannot downgrade below 0011"),
            engine.begin() as connection,
        ):
            connection.execute(text("SET LOCAL ROLE NONE"))
            command.downgrade(migrate.alembic_config(connection), _before_0011())
    finally:
        engine.dispose()


def test_many_threads_append_while_the_chainer_runs(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    """Writers and explicit chain calls at once: the chain lock makes them take turns."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                with app_db.transaction() as session:
                    record(session, _event(n * 100 + i))
                if i % 5 == 0:
                    chain_pending(app_db.engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    chain_pending(app_db.engine)
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert report.ok and report.entries == 80 and report.unchained == 0
