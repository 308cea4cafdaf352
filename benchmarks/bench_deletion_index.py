"""Candidate-set size and recall of the deletion index alone, by minimum name length.

    python benchmarks/bench_deletion_index.py [--people 200000] [--queries 2000] [--json]

Draws a population's (first given name, family name) pairs from the synthetic generator's
name pools (origins by weight), builds the ``name_deletion_pair`` keys in memory (plaintext:
the keyed values collide exactly when these do, apart from 1 in 2**32), and for sampled
people with one random edit of the family name (or of the given name) counts the distinct
people sharing a key with the query, and whether the person is among them, for several
values of ``DELETION_MIN_CHARS``. No database; not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
from collections import defaultdict
from typing import Any

from mash_hub.crypto import normalise
from mash_hub.crypto.blind_index import deletion_pairs
from mash_hub.crypto.normalise import name_tokens
from mash_hub.synth.names import ORIGINS

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def population(n: int, rng: random.Random) -> list[tuple[str, str]]:
    weights = [origin.weight for origin in ORIGINS]
    people = []
    for _ in range(n):
        origin = rng.choices(ORIGINS, weights)[0]
        pool = rng.choice(
            (origin.male_young, origin.female_young, origin.male_old, origin.female_old)
        )
        people.append((pool.pick(rng), origin.family.pick(rng)))
    return people


def one_edit(name: str, rng: random.Random) -> str:
    while True:
        at = rng.randrange(len(name))
        kind = rng.randrange(4)
        if kind == 0:
            edited = name[:at] + rng.choice(LETTERS) + name[at:]
        elif kind == 1 and len(name) > 1:
            edited = name[:at] + name[at + 1 :]
        elif kind == 2:
            edited = name[:at] + rng.choice(LETTERS) + name[at + 1 :]
        elif kind == 3 and at + 1 < len(name):
            edited = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
        else:
            continue
        if edited and edited != name:
            return edited


def keys(given: str, family: str) -> list[str]:
    given_tokens, family_tokens = name_tokens(given), name_tokens(family)
    parts = family_tokens[:-1] if len(family_tokens) > 1 else family_tokens
    return deletion_pairs(given_tokens[0] if given_tokens else None, parts, padded=False)


def measure(people: list[tuple[str, str]], queries: int, rng: random.Random) -> dict[str, Any]:
    index: dict[str, set[int]] = defaultdict(set)
    for person, (given, family) in enumerate(people):
        for key in keys(given, family):
            index[key].add(person)
    out: dict[str, Any] = {"keys_per_person": round(sum(map(len, index.values())) / len(people), 1)}
    for which in ("family", "given"):
        sizes, found = [], 0
        for person in rng.sample(range(len(people)), queries):
            given, family = people[person]
            given_key, family_key = name_tokens(given)[0], name_tokens(family)[0]
            if which == "family":
                query = keys(given_key, one_edit(family_key, rng))
            else:
                query = keys(one_edit(given_key, rng), family_key)
            hits: set[int] = set().union(*(index.get(k, set()) for k in query))
            sizes.append(len(hits))
            found += person in hits
        ordered = sorted(sizes)
        out[f"{which}_edit"] = {
            "recall": round(found / queries, 4),
            "candidates_median": statistics.median(ordered),
            "candidates_p95": ordered[int(0.95 * len(ordered))],
            "candidates_max": ordered[-1],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    people = population(args.people, rng)
    result: dict[str, Any] = {"people": args.people, "load_average": os.getloadavg()}
    shipped = normalise.DELETION_MIN_CHARS
    try:
        for minimum in (2, 3, 4, 5):
            normalise.DELETION_MIN_CHARS = minimum
            result[f"min_chars_{minimum}"] = measure(people, args.queries, random.Random(args.seed))
    finally:
        normalise.DELETION_MIN_CHARS = shipped
    result["shipped_min_chars"] = shipped
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
