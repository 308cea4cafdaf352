"""End-to-end ingestion of synthetic extracts, with the share of each phase and peak memory.

    python benchmarks/bench_ingest.py --records 1000000 [--json]

Generates a synthetic population large enough for ``--records`` agency records, then times, in
one run and on the same files: parsing alone; parsing + standardisation; + encryption and
blind indexing (no database); and the full ingest into a fresh embedded PostgreSQL (or
MASH_DATABASE_URL) with the worker pool. The single-process passes give the cost of each phase per
record; the end-to-end figure is the product path. Before and after the ingest, the same files
are read and their rows COPYed as they are (JSON, unencrypted, no index) into a bare table on
the same server: the hub's time is printed as a ratio to that. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url
from mash_hub.feeds.definition import FeedDefinition, feed_folders, load_feeds
from mash_hub.feeds.ingest import PreparePool, ingest_file, to_new_record
from mash_hub.feeds.mapping import map_record
from mash_hub.feeds.reader import read_records
from mash_hub.persons.store import PersonStore
from mash_hub.synth import EXTRACT_FILES, generate

RECORDS_PER_PERSON = 0.87  # measured on the synthetic population with default rates


def peak_rss_mb() -> float:
    """Peak resident memory of this process and, separately, of its largest worker."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_children_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def plain_copy(url: str, folder: Path, feeds: dict[str, FeedDefinition]) -> float:
    """Seconds to read the extracts and COPY every row, unencrypted, into a bare table."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS bench_plain_rows"))
            connection.execute(text("CREATE TABLE bench_plain_rows (feed text, data jsonb)"))
        begin = time.perf_counter()
        with engine.begin() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for feed, name in EXTRACT_FILES.items():
                with cursor.copy("COPY bench_plain_rows (feed, data) FROM STDIN") as copy:
                    for raw in read_records(feeds[feed], folder / name):
                        copy.write_row((feed, json.dumps(raw.data, default=str)))
        seconds = time.perf_counter() - begin
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE bench_plain_rows"))
        return seconds
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--no-phases", action="store_true", help="skip the single-process passes per phase"
    )
    args = parser.parse_args()
    workers = args.workers
    feeds = load_feeds(feed_folders())

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mash-bench-ingest-") as tmp:
        root = Path(tmp)
        people = int(args.records / RECORDS_PER_PERSON)
        start = time.perf_counter()
        summary = generate(people=people, seed=2026, out_dir=root / "synth")
        generate_s = time.perf_counter() - start
        total = sum(summary.records.values())
        store = PersonStore.from_provider(LocalKeyringProvider.create(root / "keyring.json"))

        def timed(work: str) -> float:
            begin = time.perf_counter()
            for feed, name in EXTRACT_FILES.items():
                definition = feeds[feed]
                for raw in read_records(definition, root / "synth" / name):
                    if work == "parse":
                        continue
                    mapped = map_record(definition, raw)
                    if work == "crypto" and mapped.valid:
                        record_id = uuid.uuid4()
                        new = to_new_record(definition, mapped, None)
                        store._seal(record_id, new.groups)
                        store._index_terms(new.index_fields)
                        store.source_key(feed, new.source_record_id)
                        store.content_hash(new)
            return time.perf_counter() - begin

        parse_s, map_s, crypto_s = (
            (0.0, 0.0, 0.0) if args.no_phases else (timed("parse"), timed("map"), timed("crypto"))
        )

        embedded = None
        if os.environ.get("MASH_DATABASE_URL"):
            url = normalise_url(os.environ["MASH_DATABASE_URL"])
        else:
            embedded = EmbeddedPostgres(root / "pg")
            url = embedded.acquire()
        try:
            engine = create_engine(url)
            migrate.upgrade(engine)
            db = Database(engine)
            # The plain COPY before and after the hub's ingest: the machine's load can change.
            plain_s = [plain_copy(url, root / "synth", feeds)]
            begin = time.perf_counter()
            reports = []
            for feed, name in EXTRACT_FILES.items():
                with PreparePool(store, feeds[feed], workers) as pool:
                    reports.append(
                        ingest_file(
                            db, store, feeds[feed], root / "synth" / name, actor="bench", pool=pool
                        )
                    )
            ingest_s = time.perf_counter() - begin
            plain_s.append(plain_copy(url, root / "synth", feeds))
            with engine.connect() as connection:
                index_rows = {
                    str(index_id): rows
                    for index_id, rows in connection.execute(
                        text("SELECT index_id, count(*) FROM blind_index GROUP BY 1 ORDER BY 1")
                    )
                }
            engine.dispose()
        finally:
            if embedded is not None:
                embedded.release()

    per_record = 1e6 / total
    result = {
        "records": total,
        "workers": workers,
        "people": people,
        "generate_seconds": round(generate_s, 1),
        "ingest_seconds": round(ingest_s, 1),
        "records_per_second": round(total / ingest_s),
        "single_process_us_per_record": {
            "parse": round(parse_s * per_record, 1),
            "standardise": round((map_s - parse_s) * per_record, 1),
            "encrypt_and_index": round((crypto_s - map_s) * per_record, 1),
        },
        "end_to_end_us_per_record": round(ingest_s * per_record, 1),
        # The same rows read from the same files and COPYed as they are (JSON, no
        # standardisation, encryption or index) into an unindexed table on the same server.
        "plain_copy_seconds": [round(s, 2) for s in plain_s],
        "plain_copy_records_per_second": round(total / (sum(plain_s) / len(plain_s))),
        "ratio_to_plain_copy": round(ingest_s / (sum(plain_s) / len(plain_s)), 1),
        "quarantined": sum(r.quarantined for r in reports),
        "accepted": sum(r.accepted for r in reports),
        "updated": sum(r.updated for r in reports),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_worker_rss_mb": round(peak_children_rss_mb(), 1),
        # Rows per blind index (index_id as in mash_hub.crypto.blind_index), and per record.
        "index_rows": index_rows,
        "index_rows_per_record": round(sum(index_rows.values()) / total, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
