"""Encrypted store vs the same path with encryption switched off, in one run.

    python benchmarks/bench_store.py --records 20000 [--json]

Uses MASH_DATABASE_URL when set, otherwise a throwaway embedded PostgreSQL server. Both paths
write the same rows through the same COPY code and read them back; the plaintext path replaces
only the three protection steps (data key + AES-GCM per field group, keyed source id, HMAC
blind indexes) with plaintext stand-ins. Not part of the test run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import tempfile
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from mash_hub.crypto.blind_index import INDEX_SPECS, BlindIndexer, index_terms
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, NewRecord, PersonStore

GIVEN = ["Amelia", "Oliver", "Aisha", "Mohammed", "Zofia", "Chidi", "Siobhan", "Andrei", "Priya"]
FAMILY = ["Smith", "Khan", "Kowalczyk", "Okafor", "O'Brien", "Popescu", "Patel", "Jones", "Ali"]


class PlaintextStore(PersonStore):
    """The same store with protection switched off: JSON in clear, plain term hashes."""

    def _seal(
        self, record_id: uuid.UUID, groups: Mapping[str, Mapping[str, Any]]
    ) -> tuple[dict[str, object] | None, list[tuple[str, bytes]]]:
        return None, [
            (group, json.dumps(dict(values), sort_keys=True).encode())
            for group, values in groups.items()
        ]

    def _open(
        self, session: Session, rows: Sequence[Any]
    ) -> list[tuple[uuid.UUID, str, dict[str, Any]]]:
        return [(record_id, group, json.loads(bytes(blob))) for record_id, group, blob in rows]

    def _source_key(
        self, feed: str, source_record_id: str, indexer: BlindIndexer | None = None
    ) -> bytes:
        return f"{feed}|{source_record_id}".encode()

    def _content_hash(self, canonical: bytes, indexer: BlindIndexer | None = None) -> bytes | None:
        return hashlib.sha256(canonical).digest()

    def _index_terms(
        self, index_fields: Mapping[str, Any], indexer: BlindIndexer | None = None
    ) -> list[tuple[int, int]]:
        return list(
            dict.fromkeys(
                (INDEX_SPECS[name].index_id, zlib.crc32(value.encode()))
                for name, value in index_terms(index_fields)
            )
        )


def make_records(n: int, seed: int) -> list[NewRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        dob = dt.date(1960, 1, 1) + dt.timedelta(days=rng.randrange(22_000))
        postcode = f"LS{rng.randrange(1, 30)} {rng.randrange(10)}{rng.choice('ABDEFGHJ')}{rng.choice('LNPQRSTU')}"
        nhs = f"{rng.randrange(10**9, 10**10)}"
        records.append(
            NewRecord(
                feed="police",
                source_agency="police",
                source_record_id=f"NOM{seed}-{i}",
                groups={
                    IDENTITY: {
                        "given_names": [given, "Rose"],
                        "family_name": family,
                        "date_of_birth": dob.isoformat(),
                        "sex": "F",
                    },
                    IDENTIFIERS: {"nhs_number": nhs, "pnc_id": None, "upn": None},
                    CONTACT: {
                        "addresses": [
                            {
                                "line1": f"{i} Harehills Lane",
                                "town": "Leeds",
                                "postcode": postcode,
                                "current": True,
                            }
                        ],
                        "phone": "07700 900123",
                        "email": None,
                    },
                    "details.warning_markers": {"markers": ["VIOLENT", "DRUGS"]},
                },
                index_fields={
                    "given_names": [given, "Rose"],
                    "family_name": family,
                    "date_of_birth": dob,
                    "postcodes": [postcode],
                    "nhs_number": nhs,
                },
            )
        )
    return records


def run(store: PersonStore, db: Database, records: list[NewRecord], batch: int) -> dict[str, float]:
    start = time.perf_counter()
    ids: list[uuid.UUID] = []
    for offset in range(0, len(records), batch):
        with db.transaction() as session:
            ids += store.add(session, records[offset : offset + batch])
    written = time.perf_counter() - start
    start = time.perf_counter()
    for offset in range(0, len(ids), batch):
        with db.transaction() as session:
            store.read(session, ids[offset : offset + batch], {IDENTITY, IDENTIFIERS, CONTACT})
    read = time.perf_counter() - start
    return {
        "write_per_s": len(records) / written,
        "read_per_s": len(ids) / read,
        "write_s": written,
        "read_s": read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mash-bench-") as tmp:
        embedded = None
        if os.environ.get("MASH_DATABASE_URL"):
            base = normalise_url(os.environ["MASH_DATABASE_URL"])
        else:
            embedded = EmbeddedPostgres(Path(tmp) / "pg")
            base = embedded.acquire()
        try:
            records = make_records(args.records, seed=1)
            results = {}
            for label in ("plaintext", "encrypted", "plaintext_again", "encrypted_again"):
                engine = create_engine(base)
                with engine.begin() as connection:
                    connection.execute(
                        text(
                            "DROP TABLE IF EXISTS audit_log, blind_index, record_field_groups, source_records, persons, data_keys, key_encryption_keys, alembic_version CASCADE"
                        )
                    )
                    connection.execute(
                        text("DROP FUNCTION IF EXISTS audit_log_refuse_change CASCADE")
                    )
                migrate.upgrade(engine)
                db = Database(engine)
                provider = LocalKeyringProvider.create(Path(tmp) / f"keyring-{label}.json")
                store_class = PlaintextStore if label.startswith("plaintext") else PersonStore
                results[label] = run(store_class.from_provider(provider), db, records, args.batch)
                engine.dispose()
        finally:
            if embedded is not None:
                embedded.release()

    def best(kind: str, metric: str) -> float:
        return max(results[kind][metric], results[f"{kind}_again"][metric])

    summary = {
        "records": args.records,
        "plaintext_write_per_s": round(best("plaintext", "write_per_s")),
        "encrypted_write_per_s": round(best("encrypted", "write_per_s")),
        "plaintext_read_per_s": round(best("plaintext", "read_per_s")),
        "encrypted_read_per_s": round(best("encrypted", "read_per_s")),
    }
    summary["write_time_ratio"] = round(
        summary["plaintext_write_per_s"] / summary["encrypted_write_per_s"], 2
    )
    summary["read_time_ratio"] = round(
        summary["plaintext_read_per_s"] / summary["encrypted_read_per_s"], 2
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
