"""Verification names the first bad entry for each way a superuser can tamper with the log."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from mash_hub.audit import AuditEvent, record
from mash_hub.audit.checkpoint import Checkpoint, checkpoint_file
from mash_hub.audit.checkpointer import AuditTamperedError, create_checkpoint
from mash_hub.audit.log import GENESIS_HASH, canonical_bytes, chain_hash, chain_pending
from mash_hub.audit.verify import VerifyReport, _canonical_time, verify
from mash_hub.crypto.signing import AuditSigningKey, create_signing_key_file
from mash_hub.db.engine import Database
from tests.audit.conftest import append

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture(params=["serial", "parallel"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every tampering test runs with one process, and with three workers over small ranges."""
    MODE[0] = request.param
    return str(request.param)


MODE = ["serial"]


def check(db: Database, key: AuditSigningKey | None, directory: Path) -> VerifyReport:
    if MODE[0] == "parallel":
        return verify(
            db.engine, verify_key=key, checkpoint_dir=directory, workers=3, min_per_worker=4
        )
    return verify(db.engine, verify_key=key, checkpoint_dir=directory, workers=1)


def tamper(superuser: Conn, *statements: str) -> None:
    """Run statements as a superuser with triggers switched off."""
    superuser.execute("SET session_replication_role = replica")
    try:
        for statement in statements:
            superuser.execute(statement)
    finally:
        superuser.execute("RESET session_replication_role")


def first_problem(report: VerifyReport) -> tuple[int | None, str]:
    assert report.problem is not None, "tampering went unnoticed"
    return report.problem.seq, report.problem.kind


def test_an_intact_log_verifies(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    assert check(app_db, signing_key, checkpoint_dir).ok  # empty is fine
    append(app_db, 20)
    made = create_checkpoint(app_db, signing_key, checkpoint_dir)
    assert made is not None and made.seq == 20
    append(app_db, 5)
    report = check(app_db, signing_key, checkpoint_dir)
    assert report.ok, report.problem
    assert (report.entries, report.first_seq, report.last_seq) == (25, 1, 25)
    assert report.checkpoints == 1 and report.unsigned_tail == 5
    assert report.as_dict()["entries_checked"] == 25


def test_the_fast_canonical_form_matches_the_writer_for_awkward_values(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    awkward = [
        AuditEvent('user:Zoë "Ó\'Brien"', "person.view", None, None, {}),
        AuditEvent("cli:root", "x\\y\n\t\u0001", "person", "ü-1/\u2028", {"b": 1, "a": [1, "é"]}),
        AuditEvent(
            "svc",
            "keys.rotate",
            "kek",
            "k1",
            {"z": None, "nested": {"y": True, "x": [{"b": 2, "a": 1}]}, "n": -12, "f": 0.5},
        ),
        AuditEvent("svc", "emoji", "t", "😀", {"😀": "\U0001f600", "": ""}),
    ]
    with app_db.transaction() as session:
        for event in awkward:
            record(session, event)
    chain_pending(app_db.engine)
    report = check(app_db, signing_key, checkpoint_dir)
    assert report.ok, report.problem
    assert report.entries == len(awkward)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28 14:19:57.123456+00", "2026-11-28T14:19:57.123456+00:00"),
        ("2026-11-28 14:19:57.12+00", "2026-11-28T14:19:57.120000+00:00"),
        ("2026-11-28 14:19:57+00", "2026-11-28T14:19:57.000000+00:00"),
    ],
)
def test_database_times_are_put_in_the_chain_form(text: str, expected: str) -> None:
    assert _canonical_time(text) == expected
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.astimezone(dt.UTC).isoformat(timespec="microseconds") == expected


def test_an_edited_entry_is_named(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    append(app_db, 30)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    tamper(superuser, "UPDATE audit_log SET details = '{\"n\": 999}' WHERE seq = 17")
    report = check(app_db, signing_key, checkpoint_dir)
    assert first_problem(report) == (17, "content")
    assert "entry 17" in str(report.problem)
    assert report.entries == 16


def test_a_deleted_entry_is_named(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    append(app_db, 30)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    tamper(superuser, "DELETE FROM audit_log WHERE seq = 12")
    assert first_problem(check(app_db, signing_key, checkpoint_dir)) == (12, "missing")


def test_a_deleted_first_entry_is_named(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    append(app_db, 5)
    tamper(superuser, "DELETE FROM audit_log WHERE seq = 1")
    assert first_problem(check(app_db, signing_key, checkpoint_dir)) == (1, "missing")


def test_an_inserted_entry_is_named(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    """The forger moves the later entries up the chain and chains a well-formed entry after
    position 10 (with an unused id)."""
    append(app_db, 30)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    prev = superuser.execute("SELECT entry_hash FROM audit_log WHERE chain_seq = 10").fetchone()
    assert prev is not None
    prev_hash = bytes(prev[0])  # type: ignore[call-overload]
    event = AuditEvent("user:forger", "person.view", "person", "p-1", {})
    entry_id, when = uuid.uuid4(), dt.datetime.now(dt.UTC)
    entry_hash = chain_hash(prev_hash, canonical_bytes(5000, entry_id, when, event))
    tamper(
        superuser,
        "UPDATE audit_log SET chain_seq = chain_seq + 1000 WHERE chain_seq > 10",
        "UPDATE audit_log SET chain_seq = chain_seq - 999 WHERE chain_seq > 1000",
    )
    superuser.execute(
        "INSERT INTO audit_log (seq, entry_id, occurred_at, actor, action, subject_type,"
        " subject_id, details, chain_seq, prev_hash, entry_hash) VALUES (5000, %s, %s, %s, %s,"
        " %s, %s, '{}', 11, %s, %s)",
        (entry_id, when, event.actor, event.action, "person", "p-1", prev_hash, entry_hash),
    )
    report = check(app_db, signing_key, checkpoint_dir)
    assert first_problem(report) == (11, "inserted")
    assert report.entries == 11  # the forged entry itself chains correctly


def test_reordered_entries_are_named(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    append(app_db, 30)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    tamper(
        superuser,
        "UPDATE audit_log SET chain_seq = 1008 WHERE chain_seq = 8",
        "UPDATE audit_log SET chain_seq = 8 WHERE chain_seq = 9",
        "UPDATE audit_log SET chain_seq = 9 WHERE chain_seq = 1008",
    )
    assert first_problem(check(app_db, signing_key, checkpoint_dir)) == (8, "reordered")


def test_swapped_entry_ids_are_named(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    """An entry's id (``seq``, which break-glass rows and API answers quote) is in its hash."""
    append(app_db, 30)
    tamper(
        superuser,
        "UPDATE audit_log SET seq = 1008 WHERE seq = 8",
        "UPDATE audit_log SET seq = 8 WHERE seq = 9",
        "UPDATE audit_log SET seq = 9 WHERE seq = 1008",
    )
    assert first_problem(check(app_db, signing_key, checkpoint_dir)) == (8, "content")


def test_an_entry_taken_out_of_the_chain_is_named(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    """Un-chaining an entry (to pass it off as not yet chained) leaves a gap."""
    append(app_db, 30)
    tamper(
        superuser,
        "UPDATE audit_log SET chain_seq = NULL, prev_hash = NULL, entry_hash = NULL"
        " WHERE chain_seq = 12",
    )
    report = check(app_db, signing_key, checkpoint_dir)
    assert first_problem(report) == (12, "missing")
    assert report.unchained == 1


def test_truncation_back_before_a_checkpoint_is_detected(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    append(app_db, 30)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    append(app_db, 5)
    tamper(superuser, "DELETE FROM audit_log WHERE seq > 24")
    report = check(app_db, signing_key, checkpoint_dir)
    assert first_problem(report) == (25, "missing")
    assert "truncated" in str(report.problem)


def test_truncation_of_everything_is_detected(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    append(app_db, 10)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    tamper(superuser, "DELETE FROM audit_log", "DELETE FROM audit_checkpoints")
    assert first_problem(check(app_db, signing_key, checkpoint_dir)) == (1, "missing")


def test_truncation_after_the_newest_checkpoint_is_not_detectable(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    """The documented limit: entries after the newest checkpoint have no signature yet."""
    append(app_db, 10)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    append(app_db, 5)
    tamper(superuser, "DELETE FROM audit_log WHERE seq > 12")
    assert check(app_db, signing_key, checkpoint_dir).ok


def test_a_rewritten_history_with_recomputed_hashes_fails_the_checkpoint(
    app_db: Database,
    superuser: Conn,
    signing_key: AuditSigningKey,
    checkpoint_dir: Path,
    mode: str,
) -> None:
    append(app_db, 10)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    append(app_db, 10)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    rows = superuser.execute(
        "SELECT seq, entry_id, occurred_at, actor, action, subject_type, subject_id, details"
        " FROM audit_log ORDER BY seq"
    ).fetchall()
    prev = GENESIS_HASH
    superuser.execute("SET session_replication_role = replica")
    for seq, entry_id, when, actor, action, stype, stored_sid, details in rows:
        sid = "someone-else" if seq == 14 else stored_sid
        event = AuditEvent(str(actor), str(action), stype, sid, details)  # type: ignore[arg-type]
        digest = chain_hash(prev, canonical_bytes(seq, entry_id, when, event))  # type: ignore[arg-type]
        superuser.execute(
            "UPDATE audit_log SET subject_id = %s, prev_hash = %s, entry_hash = %s WHERE seq = %s",
            (sid, prev, digest, seq),
        )
        prev = digest
    superuser.execute("RESET session_replication_role")
    report = check(app_db, signing_key, checkpoint_dir)
    assert first_problem(report) == (11, "checkpoint")
    assert "entries after 10 up to 20 were rewritten" in str(report.problem)
    with pytest.raises(AuditTamperedError):
        create_checkpoint(app_db, signing_key, checkpoint_dir)


def test_a_forged_checkpoint_line_is_detected(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    append(app_db, 10)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    path = checkpoint_file(checkpoint_dir)
    doc = json.loads(path.read_text())
    doc["seq"] = 9  # claim the head is earlier, to cover a truncation
    path.write_text(json.dumps(doc) + "\n")
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert first_problem(report) == (9, "checkpoint_signature")
    assert "bad signature" in str(report.problem)


def test_a_checkpoint_signed_by_another_key_is_rejected(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path, tmp_path: Path
) -> None:
    append(app_db, 3)
    intruder = create_signing_key_file(tmp_path / "intruder.key")
    create_checkpoint(app_db, intruder, tmp_path / "elsewhere")
    report = verify(app_db.engine, verify_key=signing_key, checkpoint_dir=checkpoint_dir)
    assert first_problem(report)[1] == "checkpoint_signature"  # the database copy is foreign


def test_a_malformed_checkpoint_file_is_reported(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    checkpoint_dir.mkdir()
    checkpoint_file(checkpoint_dir).write_text("{not json\n")
    assert first_problem(check(app_db, signing_key, checkpoint_dir)) == (None, "checkpoint_file")


def test_checkpoints_without_a_key_cannot_be_trusted(
    app_db: Database, signing_key: AuditSigningKey, checkpoint_dir: Path
) -> None:
    append(app_db, 3)
    create_checkpoint(app_db, signing_key, checkpoint_dir)
    assert first_problem(check(app_db, None, checkpoint_dir))[1] == "checkpoint_key"


def test_checkpoint_round_trips_through_json(signing_key: AuditSigningKey) -> None:
    cp = Checkpoint.sign(signing_key, 5, bytes(range(32)), dt.datetime.now(dt.UTC))
    again = Checkpoint.from_json(json.loads(json.dumps(cp.to_json())))
    assert again == cp and signing_key.verify(again.signature, again.message())
    with pytest.raises(ValueError):
        Checkpoint.from_json({"version": 1, "seq": "5"})
