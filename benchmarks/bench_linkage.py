"""Record linkage end to end on synthetic data: ingest, train, link, evaluate, re-run.

    python benchmarks/bench_linkage.py --people 10000 [--seed 2026] [--json]

Generates a population, ingests the three extracts into a fresh embedded PostgreSQL (or
MASH_DATABASE_URL), trains the model on the decrypted records (in memory), runs linkage,
scores it against truth.csv, then runs linkage again to measure person-id stability.
Timings are wall-clock on a shared machine: noisy. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url
from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.matching.model import LinkageModel
from mash_hub.matching.service import evaluate_current, run_linkage, train_model
from mash_hub.persons.store import PersonStore
from mash_hub.synth import generate

FILES = {"police": "police.csv", "council": "council.csv", "social_care": "social_care.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--train-seed", type=int, default=2026)
    parser.add_argument("--save-model", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="use this model, no training")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    feeds = load_feeds(feed_folders())
    result: dict[str, object] = {"people": args.people, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="mash-bench-link-") as tmp:
        root = Path(tmp)
        summary = generate(people=args.people, seed=args.seed, out_dir=root / "synth")
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
            begin = time.perf_counter()
            reports = [
                ingest_file(db, store, feeds[feed], root / "synth" / name, actor="bench")
                for feed, name in FILES.items()
            ]
            result["ingest_seconds"] = round(time.perf_counter() - begin, 1)
            result["records_in_extracts"] = sum(summary.records.values())
            result["quarantined"] = sum(r.quarantined for r in reports)
            begin = time.perf_counter()
            if args.model is not None:
                model = LinkageModel.load(args.model)
            else:
                model = train_model(db, store, seed=args.train_seed, version=1)
                result["train_seconds"] = round(time.perf_counter() - begin, 1)
            if args.save_model is not None:
                model.training["data"] = f"synthetic people={args.people} seed={args.seed}"
                model.save(args.save_model)
            first = run_linkage(db, store, model, actor="bench")
            result["run"] = first.as_dict()
            result["evaluation"] = evaluate_current(db, store, root / "synth" / "truth.csv")
            second = run_linkage(db, store, model, actor="bench")
            result["rerun"] = {
                "records_moved": second.records_moved,
                "persons_created": second.persons_created,
                "seconds": second.seconds["total"],
            }
            engine.dispose()
        finally:
            if embedded is not None:
                embedded.release()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
