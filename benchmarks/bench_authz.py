"""What an access decision costs: compiled mask lookups against pycasbin's enforce().

    python benchmarks/bench_authz.py [--filler-rules 450] [--no-db] [--json]

Measures, on the baseline policy (optionally padded with inert rules to the size of a
realistic policy):
* compile time of one policy version (every role x agency x source x field x action);
* one mask decision after compilation (a dict lookup), and the three masks of a person view;
* for comparison, pycasbin ``enforce()`` per field and per source mask;
* with a throwaway embedded PostgreSQL server (unless --no-db): the per-unit-of-work version
  check (``AccessPolicy.for_session``) and a whole ``view_person`` (3 records, audit append,
  decryption) against ``PersonStore.read`` of the same groups alone.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.policy import AccessPolicy, Caller, build_enforcer, compile_policy
from mash_hub.authz.versions import publish
from mash_hub.authz.vocabulary import PERSON_FIELDS, SOURCES, source_fields
from mash_hub.casework.view import Purpose, view_person
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database
from mash_hub.persons.store import NewRecord, PersonStore

ROOT = Path(__file__).resolve().parents[1]
CALLER = Caller("bench", "social_worker", "social_care")


def padded(texts: PolicyTexts, filler: int) -> PolicyTexts:
    """The policy plus ``filler`` rules of roles nobody holds (they never match a request)."""
    lines = [
        f"p, filler_{i}, *, {SOURCES[i % 3]}, {PERSON_FIELDS[i % len(PERSON_FIELDS)]}, read, allow"
        for i in range(filler)
    ]
    return PolicyTexts(texts.model, texts.policy + "\n".join(lines) + "\n")


def per_call_us(fn: Any, number: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=5)
    return min(runs) / number * 1e6


def bench_decisions(texts: PolicyTexts) -> dict[str, float]:
    compile_times = []
    for _ in range(3):
        started = time.perf_counter()
        decisions = compile_policy(texts)
        compile_times.append(time.perf_counter() - started)
    enforcer, rules = build_enforcer(texts)
    mask_us = per_call_us(lambda: decisions.mask(CALLER, "police"), 200_000)
    view_masks_us = per_call_us(lambda: [decisions.mask(CALLER, s) for s in SOURCES], 100_000)
    enforce_us = per_call_us(
        lambda: enforcer.enforce(
            "social_worker", "social_care", "police", "details.incidents", "read"
        ),
        300,
    )
    source_mask_enforce_us = per_call_us(
        lambda: [
            f
            for f in source_fields("police")
            if enforcer.enforce("social_worker", "social_care", "police", f, "read")
        ],
        60,
    )
    return {
        "rules": len(rules),
        "compile_ms_median": statistics.median(compile_times) * 1e3,
        "mask_lookup_us": mask_us,
        "three_source_masks_us": view_masks_us,
        "enforce_per_field_us": enforce_us,
        "enforce_per_source_mask_us": source_mask_enforce_us,
    }


def bench_database(texts: PolicyTexts, tmp: Path, views: int) -> dict[str, float]:
    embedded = EmbeddedPostgres(tmp / "pg")
    url = embedded.acquire()
    engine = create_engine(url, pool_size=2, max_overflow=0)
    try:
        migrate.upgrade(engine)
        db = Database(engine)
        store = PersonStore.from_provider(LocalKeyringProvider.create(tmp / "keyring.json"))
        policy = AccessPolicy()
        with db.transaction() as session:
            publish(session, texts, actor="bench")
            person_id = store.new_person(session)
            record_ids = store.add(
                session,
                [
                    NewRecord(
                        feed=source,
                        source_agency=source,
                        source_record_id=f"{source}-1",
                        groups={g: {"value": f"synthetic {g}"} for g in source_fields(source)},
                        index_fields={"family_name": "Synthetic"},
                        person_id=person_id,
                    )
                    for source in SOURCES
                ],
            )
        with db.transaction() as session:
            policy.for_session(session)  # compile outside the timing

        def check_version() -> None:
            with db.transaction() as session:
                policy.for_session(session)

        def empty_unit() -> None:
            with db.transaction() as session:
                session.connection()

        purpose = Purpose(referral="MASH/2026/00001")

        def view() -> None:
            with db.transaction() as session:
                view_person(session, store, policy, CALLER, person_id, purpose)

        groups = sorted({g for s in SOURCES for g in policy.mask(CALLER, s)})

        def plain_read() -> None:
            with db.transaction() as session:
                store.read(session, record_ids, groups)

        return {
            "unit_of_work_empty_us": per_call_us(empty_unit, 200),
            "unit_of_work_with_version_check_us": per_call_us(check_version, 200),
            "view_person_ms": per_call_us(view, views) / 1e3,
            "store_read_same_groups_ms": per_call_us(plain_read, views) / 1e3,
        }
    finally:
        engine.dispose()
        embedded.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filler-rules", type=int, default=0)
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--no-db", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    baseline = PolicyTexts.read(ROOT / "policies")
    results: dict[str, Any] = {"baseline": bench_decisions(baseline)}
    if args.filler_rules:
        results[f"padded_{args.filler_rules}"] = bench_decisions(
            padded(baseline, args.filler_rules)
        )
    if not args.no_db:
        with tempfile.TemporaryDirectory(prefix=f"mash-bench-{uuid.uuid4().hex[:6]}-") as tmp:
            results["database"] = bench_database(baseline, Path(tmp), args.views)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for section, figures in results.items():
        print(f"[{section}]")
        for name, value in figures.items():
            print(
                f"  {name:38s} {value:12.3f}"
                if isinstance(value, float)
                else f"  {name:38s} {value}"
            )


if __name__ == "__main__":
    main()
