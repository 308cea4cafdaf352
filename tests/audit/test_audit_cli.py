"""``mash-hub audit`` as an operator runs it: a real process against its own database."""

from __future__ import annotations

import csv
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, select

from mash_hub.audit.models import AuditEntry
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.engine import Database, use_app_role
from tests.audit.conftest import append

Conn = psycopg.Connection[tuple[object, ...]]


def hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mash_hub", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def cli_db(fresh_database_url: str) -> Iterator[Database]:
    engine = use_app_role(create_engine(fresh_database_url))
    migrate.upgrade(engine)
    try:
        yield Database(engine)
    finally:
        engine.dispose()


def test_checkpoint_verify_query_and_export(
    cli_db: Database, hub_env: dict[str, str], tmp_path: Path, superuser: Conn
) -> None:
    append(cli_db, 12, actor="user:alice")
    append(cli_db, 3, actor="user:bob")

    made = hub("checkpoint", "--json", env=hub_env)
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["signed"] and doc["seq"] == 15
    data_dir = Path(hub_env["MASH_DATA_DIR"])
    assert (data_dir / "audit-signing.key").stat().st_mode & 0o777 == 0o600
    line = json.loads((data_dir / "audit-checkpoints" / "checkpoints.jsonl").read_text())
    assert line["seq"] == 15 and line["key_id"] == doc["key_id"]

    ok = hub("verify", "--json", env=hub_env)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and report["entries_checked"] == 15 and report["checkpoints_checked"] == 1
    human = hub("verify", env=hub_env)
    assert human.returncode == 0 and "Audit log OK: 15 entries" in human.stderr

    found = hub("query", "--actor", "user:bob", "--json", env=hub_env)
    assert found.returncode == 0, found.stderr
    rows = json.loads(found.stdout)
    assert [r["seq"] for r in rows] == [13, 14, 15]
    assert rows[0]["action"] == "person.view" and len(rows[0]["entry_hash"]) == 64
    limited = json.loads(
        hub("query", "--limit", "2", "--since", "2000-01-01", "--json", env=hub_env).stdout
    )
    assert [r["seq"] for r in limited] == [1, 2]
    table = hub("query", "--action", "audit.query", env=hub_env)
    assert table.returncode == 0 and "audit.query" in table.stdout
    bad = hub("query", "--since", "yesterday", env=hub_env)
    assert bad.returncode == 2 and "--since" in bad.stderr

    out = tmp_path / "export.csv"
    exported = hub(
        "export", "--format", "csv", "--out", str(out), "--actor", "user:alice", env=hub_env
    )
    assert exported.returncode == 0, exported.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    with out.open(newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [int(r["seq"]) for r in csv_rows] == list(range(1, 13))
    assert json.loads(csv_rows[0]["details"])["purpose"] == "s47"
    again = hub("export", "--format", "csv", "--out", str(out), env=hub_env)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    as_json = tmp_path / "export.json"
    assert hub("export", "--format", "json", "--out", str(as_json), env=hub_env).returncode == 0
    everything = json.loads(as_json.read_text())
    assert everything[0]["seq"] == 1 and len(everything) >= 15

    with cli_db.transaction() as session:
        exports = (
            session.execute(select(AuditEntry).where(AuditEntry.action == "audit.export"))
            .scalars()
            .all()
        )
    assert [e.details["format"] for e in exports] == ["csv", "json"]
    assert exports[0].details["rows"] == 12
    assert exports[0].details["filters"] == {"actor": "user:alice"}

    # A superuser edits an entry behind the triggers: verify fails naming it.
    superuser.execute("SET session_replication_role = replica")
    superuser.execute("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 7")
    superuser.execute("RESET session_replication_role")
    failed = hub("verify", env=hub_env)
    assert failed.returncode == 1
    message = " ".join(failed.stderr.split())
    assert "FAILED at entry 7" in message and "edited" in message
    # Checkpoints verify only what is new since the last one, then sign; an edit there stops it.
    superuser.execute("SET session_replication_role = replica")
    superuser.execute("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 16")
    superuser.execute("RESET session_replication_role")
    refused = hub("checkpoint", env=hub_env)
    assert refused.returncode == 1 and "no checkpoint signed" in " ".join(refused.stderr.split())
    as_doc = hub("verify", "--json", env=hub_env)
    assert as_doc.returncode == 1 and json.loads(as_doc.stdout)["problem"]["seq"] == 7


def test_verify_and_checkpoint_on_an_empty_log(cli_db: Database, hub_env: dict[str, str]) -> None:
    assert hub("verify", env=hub_env).returncode == 0
    empty = hub("checkpoint", "--json", env=hub_env)
    assert empty.returncode == 0 and json.loads(empty.stdout)["signed"] is False


def test_serve_signs_checkpoints_periodically(cli_db: Database, hub_env: dict[str, str]) -> None:
    append(cli_db, 4)
    data_dir = Path(hub_env["MASH_DATA_DIR"])
    data_dir.mkdir(mode=0o700, parents=True)
    LocalKeyringProvider.create(data_dir / "keyring.json")
    env = hub_env | {"MASH_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0.3"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "mash_hub", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    exported = data_dir / "audit-checkpoints" / "checkpoints.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not exported.exists() and time.monotonic() < deadline:
            assert process.poll() is None, "serve exited"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert json.loads(exported.read_text().splitlines()[0])["seq"] == 4
    assert hub("verify", env=hub_env).returncode == 0


def test_rotating_the_signing_key_keeps_old_checkpoints_verifiable(
    cli_db: Database, hub_env: dict[str, str]
) -> None:
    append(cli_db, 5, actor="user:alice")
    first = hub("checkpoint", "--json", env=hub_env)
    assert first.returncode == 0, first.stderr
    old_key_id = json.loads(first.stdout)["key_id"]
    data_dir = Path(hub_env["MASH_DATA_DIR"])
    old_key = (data_dir / "audit-signing.key").read_text()

    rotated = hub("rotate-signing-key", "--json", env=hub_env)
    assert rotated.returncode == 0, rotated.stderr
    doc = json.loads(rotated.stdout)
    assert doc["old_key_id"] == old_key_id and doc["new_key_id"] != old_key_id
    assert (data_dir / "audit-signing.key").read_text() != old_key
    assert (data_dir / "audit-signing.key").stat().st_mode & 0o777 == 0o600
    retired = json.loads((data_dir / "audit-retired-keys.json").read_text())
    assert [k["key_id"] for k in retired["keys"]] == [old_key_id]
    assert "seed" not in json.dumps(retired) and old_key.strip() not in json.dumps(retired)

    append(cli_db, 2, actor="user:bob")
    assert hub("checkpoint", env=hub_env).returncode == 0
    exported = data_dir / "audit-checkpoints" / "checkpoints.jsonl"
    signers = [json.loads(line)["key_id"] for line in exported.read_text().splitlines()]
    assert signers[0] == old_key_id and set(signers[-2:]) == {doc["new_key_id"]}
    report = json.loads(hub("verify", "--json", env=hub_env).stdout)
    assert report["ok"], report
    assert report["checkpoints_checked"] == len(signers)
    with cli_db.transaction() as session:
        (entry,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "audit.signing_key_rotated")
        )
        assert entry.details == {"old_key_id": old_key_id, "new_key_id": doc["new_key_id"]}

    # Without the retired keys file the old checkpoints cannot be checked: verify says so.
    (data_dir / "audit-retired-keys.json").unlink()
    failed = hub("verify", "--json", env=hub_env)
    assert failed.returncode != 0
    assert "nor a retired one" in failed.stdout
