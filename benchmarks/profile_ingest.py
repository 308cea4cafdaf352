"""Where one ingest's time goes, stage by stage, in a single process under cProfile.

    python benchmarks/profile_ingest.py --people 10000 [--top 25]

Generates a synthetic population, then ingests its three extracts without the worker pool
(every stage in this process, so the profile sees all of it) into a fresh embedded
PostgreSQL (or MASH_DATABASE_URL). Prints each stage's share of the wall time: read,
standardise + map, encrypt (data key, AES-GCM), keyed hashes (blind-index HMACs, source key,
content hash), COPY per table, the other statements, and the commit. Not part of the test run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url
from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.persons import store as store_module
from mash_hub.persons.store import PersonStore
from mash_hub.synth import EXTRACT_FILES, generate

# (label, file suffix, function name) whose cumulative time is a stage of the ingest.
STAGES = (
    ("read (parse the extract)", "feeds/reader.py", "read_records"),
    ("standardise + map", "feeds/mapping.py", "map_record"),
    ("encrypt (DEK, wrap, AES-GCM)", "persons/store.py", "_seal"),
    ("blind-index terms (normalise + HMAC)", "crypto/blind_index.py", "terms_for"),
    ("blind-index terms (normalise + HMAC)", "crypto/blind_index.py", "term_rows"),
    ("  of which normalise (index_terms)", "crypto/blind_index.py", "index_terms"),
    ("  of which HMAC-SHA256 calls", "~", "<built-in method _hashlib.hmac_digest>"),
    ("  COPY rows formatted (index)", "persons/store.py", "_index_rows"),
    ("  COPY rows formatted (groups)", "persons/store.py", "_group_rows"),
    ("source key + content hash", "persons/store.py", "_source_key"),
    ("content hash (canonical JSON + HMAC)", "persons/store.py", "content_hash"),
    ("write (all statements of a chunk)", "persons/store.py", "write"),
    ("  of which wrapped keys insert", "crypto/keystore.py", "save"),
    ("current versions look-up", "persons/store.py", "current_versions"),
    ("quality issues insert", "quality/issues.py", "record_issues"),
    ("quarantine", "feeds/quarantine.py", "quarantine"),
    ("commit", "sqlalchemy/engine/base.py", "_commit_impl"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=0, help="also print the N costliest functions")
    args = parser.parse_args()
    feeds = load_feeds(feed_folders())
    copy_seconds: dict[str, float] = defaultdict(float)
    plain_copy = store_module._copy

    def timed_copy(cursor: Any, target: str, rows: list[tuple[Any, ...]]) -> None:
        begin = time.perf_counter()
        plain_copy(cursor, target, rows)
        copy_seconds[target.split(" ", 1)[0]] += time.perf_counter() - begin

    plain_copy_text = getattr(store_module, "_copy_text", None)

    def timed_copy_text(cursor: Any, target: str, blocks: Any) -> None:
        begin = time.perf_counter()
        assert plain_copy_text is not None
        plain_copy_text(cursor, target, blocks)
        copy_seconds[target.split(" ", 1)[0]] += time.perf_counter() - begin

    store_module._copy = timed_copy
    if plain_copy_text is not None:
        store_module._copy_text = timed_copy_text
    with tempfile.TemporaryDirectory(prefix="mash-profile-ingest-") as tmp:
        root = Path(tmp)
        summary = generate(people=args.people, seed=2026, out_dir=root / "synth")
        total = sum(summary.records.values())
        store = PersonStore.from_provider(LocalKeyringProvider.create(root / "keyring.json"))
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
            profiler = cProfile.Profile()
            load_before = os.getloadavg()
            begin = time.perf_counter()
            profiler.enable()
            for feed, name in EXTRACT_FILES.items():
                ingest_file(db, store, feeds[feed], root / "synth" / name, actor="profile")
            profiler.disable()
            wall = time.perf_counter() - begin
            engine.dispose()
        finally:
            if embedded is not None:
                embedded.release()

    stats = pstats.Stats(profiler)
    cumulative: dict[tuple[str, str], float] = defaultdict(float)
    for (path, _, function), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        cumulative[(path, function)] += cum
    profiled = wall
    print(f"{total} records, {wall:.2f} s wall under the profiler ({total / wall:.0f} records/s)")
    print(f"load average {load_before} -> {os.getloadavg()}")
    seconds_of: dict[str, float] = defaultdict(float)
    for label, suffix, function in STAGES:
        seconds_of[label] += sum(
            cum
            for (path, fn), cum in cumulative.items()
            if fn == function and path.endswith(suffix)
        )
    for label, seconds in seconds_of.items():
        print(f"{label:>40}: {seconds:7.2f} s {100 * seconds / profiled:5.1f} %")
    for target, seconds in sorted(copy_seconds.items()):
        print(f"{'  COPY ' + target:>40}: {seconds:7.2f} s {100 * seconds / profiled:5.1f} %")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
