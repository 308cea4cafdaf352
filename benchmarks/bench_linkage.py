"""Record linkage end to end on synthetic data: ingest, train, link, evaluate, re-run.

    python benchmarks/bench_linkage.py --people 10000 [--seed 2026] [--json] [--incremental N]

Generates a population, ingests the three extracts into a fresh embedded PostgreSQL (or
MASH_DATABASE_URL), trains the model on the decrypted records (in memory), runs linkage,
scores it against truth.csv, then runs linkage again to measure person-id stability.
``--incremental N`` times incremental linkage, one record at a time with Splink's scoring and
with the Python scorer in the same run, then the rest as one batch.
Timings are wall-clock on a shared machine: noisy. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url
from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.matching import incremental as incremental_module
from mash_hub.matching.incremental import link_records
from mash_hub.matching.model import LinkageModel, predict_new_splink
from mash_hub.matching.service import evaluate_current, run_linkage, train_model
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.synth import EXTRACT_FILES, generate


def _link_one_by_one(
    session: Session, store: PersonStore, model: LinkageModel, records: list[Any]
) -> tuple[list[float], list[dict[str, float]]]:
    """Link each record alone (after unlinking it); wall-clock per call and stage timings."""
    session.execute(update(SourceRecord), [{"id": r, "person_id": None} for r in records])
    times, stages = [], []
    for rid in records:
        began = time.perf_counter()
        report = link_records(session, store, model, [rid], actor="bench")
        times.append(time.perf_counter() - began)
        stages.append(report.seconds)
    return times, stages


def _summary(times: list[float], stages: list[dict[str, float]]) -> dict[str, Any]:
    ordered = sorted(times)
    medians = {
        stage: round(statistics.median(s.get(stage, 0.0) for s in stages) * 1000, 2)
        for stage in ("read_new", "candidates", "read_candidates", "predict", "cluster", "write")
    }
    return {
        "median_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "stage_median_ms": medians,
    }


def incremental(db: Database, store: PersonStore, model: LinkageModel, n: int) -> dict[str, Any]:
    """Unlink ``n`` sampled records (in a transaction rolled back at the end), link them again
    incrementally: 20 one at a time with Splink's ``predict_new`` (before) and then the same 20
    with the Python scorer (after, what ``link_records`` uses), the rest as one batch. How many
    rejoin their person."""
    with Session(db.engine) as session:
        current = session.execute(
            select(SourceRecord.id, SourceRecord.person_id).where(SourceRecord.is_current)
        ).all()
        chosen = random.Random(7).sample(sorted(current), n)
        before = dict(chosen)
        session.execute(update(SourceRecord), [{"id": r, "person_id": None} for r, _ in chosen])
        singles = [r for r, _ in chosen[:20]]
        # "Before": the same link_records with the Splink scorer swapped back in.
        with mock.patch.object(incremental_module, "predict_new", predict_new_splink):
            splink_times, splink_stages = _link_one_by_one(session, store, model, singles)
        scorer_times, scorer_stages = _link_one_by_one(session, store, model, singles)
        began = time.perf_counter()
        batch = link_records(session, store, model, [r for r, _ in chosen[20:]], actor="bench")
        batch_seconds = time.perf_counter() - began
        after = dict(
            session.execute(
                select(SourceRecord.id, SourceRecord.person_id).where(
                    SourceRecord.id.in_([r for r, _ in chosen])
                )
            ).all()
        )
        session.rollback()
    # Agreement with the full run: a record whose person keeps other (not unlinked) records
    # should rejoin it; a record whose person had no other record should get a new person.
    kept = {p for rid, p in current if rid not in before}
    back = sum(1 for rid, person in before.items() if (after[rid] == person) == (person in kept))
    return {
        "records": n,
        "single_record_splink": _summary(splink_times, splink_stages),
        "single_record_scorer": _summary(scorer_times, scorer_stages),
        "batch_records": n - 20,
        "batch_ms_per_record": round(batch_seconds * 1000 / (n - 20), 1),
        "batch_seconds": batch.seconds,
        "batch_candidate_records": batch.candidate_records,
        "agrees_with_full_run": round(back / n, 4),
        "new_persons": batch.new_persons,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--train-seed", type=int, default=2026)
    parser.add_argument("--save-model", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="use this model, no training")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--incremental", type=int, default=0, help="also time incremental linkage of N records"
    )
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
                for feed, name in EXTRACT_FILES.items()
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
            if args.incremental:
                result["incremental"] = incremental(db, store, model, args.incremental)
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
