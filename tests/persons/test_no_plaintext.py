"""No plaintext personal data at rest: not in a pg_dump, not in the server's files or logs."""

from __future__ import annotations

import datetime as dt
import logging
import random
import string
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, delete
from sqlalchemy.engine import make_url

from mash_hub.crypto.blind_index import INDEX_SPECS
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import client_program
from mash_hub.db.engine import Database
from mash_hub.persons.backfill import backfill_index
from mash_hub.persons.models import BlindIndexEntry
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, NewRecord, PersonStore

CONTROL = "Plaintextcontrolvalue"


def _nhs_number(rng: random.Random) -> str:
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 10:
            continue
        return "".join(map(str, digits)) + str(0 if check == 11 else check)


def _synthetic_people(n: int, seed: int) -> list[dict[str, object]]:
    """People with distinctive values, so a hit in the files cannot be a coincidence."""
    rng = random.Random(seed)
    people = []
    for i in range(n):

        def word(k: int) -> str:
            return rng.choice(string.ascii_uppercase) + "".join(
                rng.choices(string.ascii_lowercase, k=k)
            )

        people.append(
            {
                "given": word(8),
                "family": word(9) + "-" + word(6),
                "dob": dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(25_000)),
                "postcode": f"Q{rng.choice('WXZ')}{rng.randrange(10, 99)} {rng.randrange(10)}{rng.choice('JQX')}{rng.choice('JQX')}",
                "nhs": _nhs_number(rng),
                "upn": f"A{rng.randrange(100, 999)}{rng.randrange(10**8, 10**9 - 1)}",
                "pnc": f"{rng.randrange(10, 99)}/{rng.randrange(10**6, 10**7)}{rng.choice('ABCDEFGH')}",
                "phone": f"07700 9{rng.randrange(10**4, 10**5)}",
                "email": f"{word(7).lower()}@example.org",
                "id": f"NOM{seed}{i:05d}",
            }
        )
    return people


def _needles(person: dict[str, object]) -> list[str]:
    dob = person["dob"]
    assert isinstance(dob, dt.date)
    return [
        str(person["given"]),
        str(person["family"]).split("-")[0],
        str(person["family"]).upper(),
        dob.isoformat(),
        dob.strftime("%d/%m/%Y"),
        str(person["postcode"]),
        str(person["postcode"]).replace(" ", ""),
        str(person["nhs"]),
        str(person["upn"]),
        str(person["pnc"]),
        str(person["phone"]),
        str(person["email"]),
        str(person["id"]),
    ]


def _record(person: dict[str, object]) -> NewRecord:
    dob = person["dob"]
    assert isinstance(dob, dt.date)
    return NewRecord(
        feed="police",
        source_agency="police",
        source_record_id=str(person["id"]),
        groups={
            IDENTITY: {
                "given_names": [person["given"]],
                "family_name": person["family"],
                "date_of_birth": dob.isoformat(),
            },
            IDENTIFIERS: {
                "nhs_number": person["nhs"],
                "upn": person["upn"],
                "pnc_id": person["pnc"],
            },
            CONTACT: {
                "addresses": [{"postcode": person["postcode"], "current": True}],
                "phone": person["phone"],
                "email": person["email"],
            },
            "details.warning_markers": {"markers": ["VIOLENT"]},
        },
        index_fields={
            "given_names": [person["given"]],
            "family_name": person["family"],
            "date_of_birth": dob,
            "postcodes": [person["postcode"]],
            "nhs_number": person["nhs"],
            "upn": person["upn"],
            "pnc_id": person["pnc"],
        },
    )


def _find(haystack: bytes, needles: list[str]) -> list[str]:
    """Needles present in any letter case, as text or as hex (how bytea is dumped)."""
    folded = haystack.lower()
    return [
        needle
        for needle in needles
        if needle.lower().encode("utf-8") in folded
        or needle.encode("utf-8").hex().encode() in folded
        or needle.upper().encode("utf-8").hex().encode() in folded
    ]


def test_stored_people_appear_nowhere_in_plaintext(
    fresh_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    started = time.time()
    people = _synthetic_people(15, seed=20261128)
    needles = [n for p in people for n in _needles(p)]
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine)
        db = Database(engine)
        store = PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "keyring.json"))
        with db.transaction() as session:
            person_id = store.new_person(session)
            ids = store.add(session, [_record(p) for p in people])
        with db.transaction() as session:
            # Exercise the read and search paths too, then erase one person.
            assert len(store.read(session, ids, {IDENTITY, IDENTIFIERS, CONTACT})) == 15
            assert store.candidates(session, store.indexer.lookup("nhs_number", people[0]["nhs"]))
            store.erase_person(session, person_id, actor="cli:test", reason="TEST-1")
        # A control value stored in clear proves the scan would see plaintext if it were there.
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE scan_control (v text)")
            connection.exec_driver_sql(f"INSERT INTO scan_control VALUES ('{CONTROL}')")
    finally:
        engine.dispose()

    url = make_url(fresh_database_url)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(
        [str(client_program("pg_dump")), "--no-owner", "--dbname", libpq],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    assert b"record_field_groups" in dump and len(dump) > 10_000
    assert _find(dump, needles) == []
    assert _find(dump, [CONTROL]) == [CONTROL]

    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        data_dir = Path(str(conn.execute("SHOW data_directory").fetchone()[0]))  # type: ignore[index]
        oid = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]  # type: ignore[index]
    scanned = 0
    control_seen = False
    for folder in (
        data_dir / "base" / str(oid),
        data_dir / "pg_wal",
        data_dir / "log",
        data_dir.parent / "log",
    ):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if not path.is_file() or path.stat().st_mtime < started - 2:
                continue
            try:
                content = path.read_bytes()
            except PermissionError:
                pytest.fail(f"cannot read {path}: run the suite as the server's owner or root")
            scanned += 1
            control_seen = control_seen or bool(_find(content, [CONTROL]))
            assert _find(content, needles) == [], f"plaintext personal data in {path}"
    assert scanned > 10, "the server's data files were not found"
    assert control_seen, "the scan did not reach the files holding table data"

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert _find(logged.encode(), needles) == []


def _slips(name: str) -> list[str]:
    """Each one-letter deletion of a name: what the deletion index is keyed on."""
    key = name.lower()
    return [key[:i] + key[i + 1 :] for i in range(len(key))]


def test_the_deletion_index_and_its_backfill_store_no_plaintext(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Neither ingestion's deletion terms nor ``backfill_index`` leave a name, or a name with
    a letter dropped, anywhere in a dump, audit log included."""
    people = _synthetic_people(6, seed=20261203)
    needles = [n for p in people for n in _needles(p)]
    needles += [
        slip
        for p in people
        for name in (str(p["given"]), str(p["family"]).split("-")[0])
        for slip in _slips(name)
    ]
    engine = create_engine(fresh_database_url)
    try:
        migrate.upgrade(engine)
        db = Database(engine)
        store = PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "keyring.json"))
        with db.transaction() as session:
            ids = store.add(session, [_record(p) for p in people])
            # Half the records as an older hub stored them, for the backfill to index.
            session.execute(
                delete(BlindIndexEntry).where(
                    BlindIndexEntry.index_id == INDEX_SPECS["name_deletion_pair"].index_id,
                    BlindIndexEntry.record_id.in_(ids[:3]),
                )
            )
        assert backfill_index(db, store, actor="cli:test", batch_size=2).indexed == 3
        with db.transaction() as session:
            for person, record_id in zip(people, ids, strict=True):
                family = str(person["family"]).split("-")[0]
                slipped = {"given_names": [person["given"]], "family_name": family[:-1]}
                terms = store.indexer.query_terms(slipped, indexes={"name_deletion_pair"})
                assert record_id in store.candidates(session, terms)
    finally:
        engine.dispose()

    url = make_url(fresh_database_url)
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(
        [str(client_program("pg_dump")), "--no-owner", "--dbname", libpq],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    assert b"index.backfill" in dump and b"blind_index" in dump
    assert _find(dump, needles) == []
