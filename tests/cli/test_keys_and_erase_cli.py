"""``mash-hub keys`` and ``mash-hub erase`` as an operator runs them.

Each test runs the real CLI in a subprocess against its own fresh PostgreSQL database with
real keys (a keyring file in the test's data directory). Records are written and checked
in-process through the same store the hub uses, with a keyring loaded afresh from disk, so
what the CLI did is checked against the database and keyring, not against its own report.
"""

from __future__ import annotations

import contextlib
import json
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from mash_hub.audit.models import AuditEntry
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, PersonStore
from tests.persons.conftest import person_record

ALL_GROUPS = {IDENTITY, IDENTIFIERS, CONTACT, "details.case"}
NHS = "9434765919"
OTHER_NHS = "4010232137"


def hub_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mash_hub", *args]


def run_hub(
    *args: str, env: dict[str, str], input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``mash-hub ARGS`` in a child process; stdin is empty unless ``input`` is given."""
    return subprocess.run(
        hub_command(*args),
        env=env,
        cwd=Path(env["MASH_DATA_DIR"]).parent,
        input="" if input is None else input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_hub_concurrently(
    commands: list[list[str]], *, env: dict[str, str], timeout: float
) -> list[subprocess.CompletedProcess[str]]:
    """Several ``mash-hub`` commands at once (to keep the file fast); all killed on timeout."""
    procs = [
        subprocess.Popen(
            hub_command(*args),
            env=env,
            cwd=Path(env["MASH_DATA_DIR"]).parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    try:
        results = []
        for args, proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def json_output(result: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a successful ``--json`` command prints (and nothing else)."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)  # raises if anything but one JSON document is on stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a clean exit 2 (one error, no traceback, nothing on stdout); return stderr."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
    assert result.stdout == ""
    return result.stderr


def keyring_path(env: dict[str, str]) -> Path:
    """Where ``keys init`` puts the keyring when MASH_KEYRING_PATH is unset."""
    return Path(env["MASH_DATA_DIR"]) / "keyring.json"


def prepare_hub(env: dict[str, str]) -> LocalKeyringProvider:
    """Migrate the database and create the keyring in-process (for tests about other steps)."""
    with hub_database(env) as db:
        migrate.upgrade(db.engine)
    path = keyring_path(env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return LocalKeyringProvider.create(path)


@contextlib.contextmanager
def hub_database(env: dict[str, str]) -> Iterator[Database]:
    engine = create_engine(env["MASH_DATABASE_URL"], pool_size=2, max_overflow=0)
    try:
        yield Database(engine)
    finally:
        engine.dispose()


def fresh_store(env: dict[str, str]) -> PersonStore:
    """A store over a keyring read from disk now, as a new hub process would see it."""
    return PersonStore.from_provider(LocalKeyringProvider(keyring_path(env)))


def seed(env: dict[str, str], n: int, person_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    store = fresh_store(env)
    with hub_database(env) as db, db.transaction() as session:
        return store.add(
            session,
            [person_record(f"SC-{i}", given=f"Name{i}", person_id=person_id) for i in range(n)],
        )


def given_names(env: dict[str, str], ids: list[uuid.UUID]) -> list[str]:
    store = fresh_store(env)
    with hub_database(env) as db, db.transaction() as session:
        records = store.read(session, ids, {IDENTITY})
    return sorted(r.groups[IDENTITY]["given_names"][0] for r in records.values())


def audit_entries(env: dict[str, str], action: str) -> list[AuditEntry]:
    with hub_database(env) as db, db.transaction() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- keys init --------------------------------------------------------------------------------


def test_keys_init_creates_a_private_keyring_once(hub_env: dict[str, str]) -> None:
    path = keyring_path(hub_env)
    report = json_output(run_hub("keys", "init", "--json", env=hub_env))
    assert report["keyring"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    on_disk = json.loads(path.read_text())
    assert report["primary"] == on_disk["primary"]
    assert list(on_disk["keks"]) == [report["primary"]]
    assert LocalKeyringProvider(path).primary_kek_id() == report["primary"]

    before = (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns)
    again = run_hub("keys", "init", "--json", env=hub_env)
    message = refused(again)
    assert str(path) in message and "already exists" in message
    assert (path.read_bytes(), path.stat().st_ino, path.stat().st_mtime_ns) == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- refusing unsafe or missing keys -------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640], ids=["0644", "0640"])
def test_a_keyring_others_can_read_is_refused_by_status_and_serve(
    hub_env: dict[str, str], mode: int
) -> None:
    path = keyring_path(hub_env)
    path.parent.mkdir(mode=0o700, parents=True)
    LocalKeyringProvider.create(path)
    path.chmod(mode)

    # serve must refuse before it listens: if it started, the timeout would fail the test.
    commands = [["keys", "status"], ["serve", "--port", str(free_port())]]
    for args, result in zip(
        commands, run_hub_concurrently(commands, env=hub_env, timeout=30), strict=True
    ):
        message = refused(result)
        assert str(path) in message, args
        assert f"{mode:04o}" in message, args
        assert f"chmod 600 {path}" in message, args
        assert "listening" not in message, args
    assert stat.S_IMODE(path.stat().st_mode) == mode  # the hub reports; it does not "fix"


def test_an_external_database_without_a_keyring_asks_for_keys_init(
    hub_env: dict[str, str],
) -> None:
    message = refused(run_hub("keys", "status", env=hub_env))
    assert str(keyring_path(hub_env)) in message
    assert "mash-hub keys init" in message
    assert not keyring_path(hub_env).exists()  # no development keys against a real database


# -- rotation and retirement ---------------------------------------------------------------------


def test_rotate_then_retire_the_old_kek(hub_env: dict[str, str]) -> None:
    n = 7
    assert run_hub("db", "upgrade", env=hub_env).returncode == 0
    old = json_output(run_hub("keys", "init", "--json", env=hub_env))["primary"]
    ids = seed(hub_env, n)
    expected = given_names(hub_env, ids)
    assert expected == sorted(f"Name{i}" for i in range(n))

    status = json_output(run_hub("keys", "status", "--json", env=hub_env))
    assert status["provider"] == "local-keyring"
    assert status["primary"] == old
    assert status["outstanding_rewraps"] == 0
    assert status["keks"] == [
        {"kek_id": old, "primary": True, "in_provider": True, "data_keys": n, "retired": False}
    ]

    # --verbose logs to stderr; stdout must still be exactly one JSON document.
    rotated = json_output(
        run_hub("--verbose", "keys", "rotate", "--json", "--batch-size", "3", env=hub_env)
    )
    new = rotated["primary"]
    assert new != old
    assert rotated == {"primary": new, "created": new, "rewrapped": n}

    status = json_output(run_hub("keys", "status", "--json", env=hub_env))
    assert status["primary"] == new
    assert status["outstanding_rewraps"] == 0
    by_id = {row["kek_id"]: row for row in status["keks"]}
    assert set(by_id) == {old, new}
    assert by_id[new] == {
        "kek_id": new,
        "primary": True,
        "in_provider": True,
        "data_keys": n,
        "retired": False,
    }
    assert by_id[old]["data_keys"] == 0 and not by_id[old]["primary"]

    assert json_output(run_hub("keys", "retire", old, "--json", env=hub_env)) == {
        "retired": old,
        "key_material_destroyed": True,
    }
    message = refused(run_hub("keys", "retire", new, "--json", env=hub_env))
    assert new in message and "primary" in message

    # A keyring read afresh holds only the new KEK, is still private, and decrypts everything.
    provider = LocalKeyringProvider(keyring_path(hub_env))
    assert provider.kek_ids() == [new] and provider.primary_kek_id() == new
    assert stat.S_IMODE(keyring_path(hub_env).stat().st_mode) == 0o600
    on_disk = json.loads(keyring_path(hub_env).read_text())
    assert on_disk["keks"][old]["state"] == "retired" and "key" not in on_disk["keks"][old]
    assert given_names(hub_env, ids) == expected

    [start] = audit_entries(hub_env, "keys.rotate.start")
    assert start.subject_id == new
    assert start.details == {"previous_primary": old, "created": new, "resumed": False}
    assert start.actor.startswith("cli:")
    [finish] = audit_entries(hub_env, "keys.rotate.finish")
    assert finish.subject_id == new and finish.details == {"rewrapped": n}
    [retired] = audit_entries(hub_env, "keys.retire")  # the refused retire left no entry
    assert retired.subject_id == old
    assert start.seq < finish.seq < retired.seq


def test_retire_is_refused_while_data_keys_depend_on_the_kek(hub_env: dict[str, str]) -> None:
    provider = prepare_hub(hub_env)
    old = provider.primary_kek_id()
    ids = seed(hub_env, 4)
    new = provider.add_kek(make_primary=True)  # a new primary, but no rotation yet

    message = refused(run_hub("keys", "retire", old, "--json", env=hub_env))
    assert old in message
    assert "still wraps 4 data key(s)" in message
    assert "mash-hub keys rotate" in message

    reloaded = LocalKeyringProvider(keyring_path(hub_env))
    assert reloaded.kek_ids() == sorted([old, new])  # nothing destroyed
    assert given_names(hub_env, ids) == sorted(f"Name{i}" for i in range(4))
    assert audit_entries(hub_env, "keys.retire") == []
    status = json_output(run_hub("keys", "status", "--json", env=hub_env))
    assert status["primary"] == new
    assert status["outstanding_rewraps"] == 4


# -- erase -----------------------------------------------------------------------------------


def seed_two_people(env: dict[str, str]) -> tuple[uuid.UUID, list[uuid.UUID], list[uuid.UUID]]:
    """A person with two records (NHS), and a bystander with one (OTHER_NHS)."""
    store = fresh_store(env)
    with hub_database(env) as db, db.transaction() as session:
        person = store.new_person(session)
        bystander = store.new_person(session)
        mine = store.add(
            session,
            [
                person_record("SC-1", person_id=person),
                person_record("PN-9", person_id=person, feed="police"),
            ],
        )
        theirs = store.add(
            session, [person_record("SC-2", given="Zofia", nhs=OTHER_NHS, person_id=bystander)]
        )
    return person, mine, theirs


def test_erase_crypto_shreds_a_person(hub_env: dict[str, str]) -> None:
    prepare_hub(hub_env)
    person, mine, theirs = seed_two_people(hub_env)

    report = json_output(
        run_hub(
            "erase", "--person", str(person), "--reason", "REF-1", "--yes", "--json", env=hub_env
        )
    )
    assert report["person_id"] == str(person)
    assert report["records"] == 2
    assert report["data_keys_destroyed"] == 2
    assert report["index_entries_removed"] > 0
    # The destroyed keys' dead row versions were vacuumed away (as the owner, not the app role).
    libpq = make_url(hub_env["MASH_DATABASE_URL"]).set(drivername="postgresql")
    with psycopg.connect(libpq.render_as_string(hide_password=False)) as conn:
        vacuumed = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL"
        ).fetchall()
    assert {"data_keys", "blind_index", "record_field_groups"} <= {row[0] for row in vacuumed}

    store = fresh_store(hub_env)
    with hub_database(hub_env) as db, db.transaction() as session:
        records = store.read(session, mine, ALL_GROUPS)
        assert set(records) == set(mine)  # tombstones remain...
        assert all(record.groups == {} for record in records.values())  # ...unreadable
        assert store.candidates(session, store.indexer.lookup("nhs_number", NHS)) == set()
        assert sorted(store.records_of_person(session, person)) == sorted(mine)
        # The bystander is untouched.
        assert store.candidates(session, store.indexer.lookup("nhs_number", OTHER_NHS)) == set(
            theirs
        )
        assert store.read(session, theirs, {IDENTITY})[theirs[0]].groups[IDENTITY][
            "given_names"
        ] == ["Zofia"]

    [entry] = audit_entries(hub_env, "person.erase")
    assert entry.subject_type == "person" and entry.subject_id == str(person)
    assert entry.actor.startswith("cli:")
    assert entry.details["reason"] == "REF-1"
    assert entry.details["records"] == 2 and entry.details["data_keys_destroyed"] == 2


def test_erase_refuses_a_malformed_id_without_echoing_it(hub_env: dict[str, str]) -> None:
    typed = "Amelia Kowalczyk 14/03/2014"  # an operator pasting personal data by mistake
    message = refused(
        run_hub("erase", "--person", typed, "--reason", "REF-1", "--yes", "--json", env=hub_env)
    )
    assert "--person must be a person id" in message
    assert "Amelia" not in message and "Kowalczyk" not in message and "2014" not in message


def test_erase_of_an_unknown_person_changes_nothing(hub_env: dict[str, str]) -> None:
    prepare_hub(hub_env)
    _, mine, _ = seed_two_people(hub_env)
    unknown = uuid.uuid4()
    message = refused(
        run_hub("erase", "--person", str(unknown), "--reason", "REF-1", "--yes", env=hub_env)
    )
    assert "no person" in message and str(unknown) in message
    assert given_names(hub_env, mine) == ["Amelia", "Amelia"]
    assert audit_entries(hub_env, "person.erase") == []


@pytest.mark.parametrize("answer", ["", "n\n"], ids=["no-stdin", "answered-no"])
def test_erase_without_yes_needs_confirmation(hub_env: dict[str, str], answer: str) -> None:
    prepare_hub(hub_env)
    person, mine, _ = seed_two_people(hub_env)
    result = run_hub(
        "erase", "--person", str(person), "--reason", "REF-1", "--json", env=hub_env, input=answer
    )
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "error: not confirmed; nothing erased" in result.stderr
    # Typer's confirm echoes the prompt's last character (a space) to stdout even with
    # err=True; nothing else may appear there.
    assert result.stdout.strip() == ""
    assert given_names(hub_env, mine) == ["Amelia", "Amelia"]
    assert audit_entries(hub_env, "person.erase") == []
