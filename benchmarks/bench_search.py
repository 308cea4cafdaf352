"""Person search latency and quality on a synthetic index, single searches one after another.

    python benchmarks/bench_search.py --people 10000 [--searches 300] [--seed 2026] [--json]

Generates a population, ingests the three extracts into a fresh embedded PostgreSQL (or
MASH_DATABASE_URL), links them with the shipped model, publishes the baseline policy, then
builds queries from sampled current records (decrypted here, in memory) with one kind of
error each: exact, family-name typo, nickname, day/month swapped, given/family swapped, name
and postcode only, identifier only; then ``--slip-searches`` more of each officer's slip
(issue 15): one random edit (insertion, deletion, substitution or adjacent transposition) of
the family name without a date of birth, of the given name without a date of birth, a
short form of the given name (Zac for Isaac) with and without the date of birth, and the
exact names without a date of birth (the ceiling: namesakes tie). Each search runs as the API runs it: one transaction,
``search_persons`` (policy version check, blind-index candidates, decryption, scoring,
audit append), commit; then the same through HTTP (in-process ASGI client, hub token).
Reports latency percentiles, rank-1 and top-5 hits of the sampled record's person, and the
candidate-query cost of ``PersonStore.candidates`` (a join on ``unnest`` arrays) against the
OR of per-term conditions it replaced. Wall-clock on a shared machine: noisy. Not part of the test run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from linked_hub import linked_hub
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, Caller
from mash_hub.casework.search import query_terms, search_persons, standardise_query
from mash_hub.casework.view import Purpose
from mash_hub.crypto.blind_index import IndexTerm
from mash_hub.crypto.tokens import TokenKey
from mash_hub.db.engine import Database
from mash_hub.matching.model import LinkageModel, shipped_model_path
from mash_hub.persons.models import BlindIndexEntry, SourceRecord
from mash_hub.persons.store import IDENTIFIERS, IDENTITY, PersonStore
from mash_hub.settings import Settings
from mash_hub.users.service import add_user, issue_token
from mash_hub.web.app import create_app

PURPOSE = Purpose(code="mash_triage", text="Benchmark triage of synthetic contacts")
HEADERS = {"X-Purpose-Code": "mash_triage", "X-Purpose-Text": "Benchmark triage of contacts"}
CALLER = Caller("bench.sw", "social_worker", "social_care")
NICKNAMES = {"william": "Bill", "robert": "Bob", "elizabeth": "Liz", "margaret": "Maggie",
             "thomas": "Tom", "james": "Jim", "katherine": "Kate", "alexander": "Alex",
             "jennifer": "Jenny", "michael": "Mike", "daniel": "Dan", "rebecca": "Becky",
             "samuel": "Sam", "joseph": "Joe", "benjamin": "Ben", "matthew": "Matt"}  # fmt: skip
# Short forms officers type for formal names in the synthetic pools (both lists' kinds).
SHORT_FORMS = {**NICKNAMES, "isaac": "Zac", "alexandra": "Sandy", "isabella": "Izzy",
               "charlotte": "Charlie", "alfred": "Alfie", "eleanor": "Ellie", "oliver": "Ollie",
               "frederick": "Freddie", "theodore": "Theo", "nicola": "Nicky", "amelia": "Millie",
               "archibald": "Archie", "katherine": "Katie", "christopher": "Chris",
               "jessica": "Jess", "abigail": "Abbie", "rebecca": "Becca", "zachary": "Zac",
               "jacob": "Jake", "edward": "Ed", "harrison": "Harry", "henry": "Harry"}  # fmt: skip
# names_nodob (the exact names, no date of birth) is the ceiling of the no-DOB kinds: people
# sharing a full name cannot be told apart by names alone, however they are spelled.
SLIP_KINDS = (
    "surname_edit_nodob",
    "given_edit_nodob",
    "short_form",
    "short_form_nodob",
    "names_nodob",
)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def one_edit(name: str, rng: random.Random) -> str:
    """``name`` with one random insertion, deletion, substitution or adjacent transposition
    of its letters (never the same name back)."""
    letters = [i for i, c in enumerate(name) if c.isalpha()]
    while True:
        kind = rng.choice(("insert", "delete", "substitute", "transpose"))
        at = rng.choice(letters)
        if kind == "insert":
            edited = name[:at] + rng.choice(LETTERS) + name[at:]
        elif kind == "delete" and len(letters) > 2:
            edited = name[:at] + name[at + 1 :]
        elif kind == "substitute":
            edited = name[:at] + rng.choice(LETTERS) + name[at + 1 :]
        elif kind == "transpose" and at + 1 < len(name) and name[at + 1].isalpha():
            edited = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
        else:
            continue
        if edited.lower() != name.lower():
            return edited


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 4:
        return name + "e"
    at = rng.randrange(1, len(name) - 2)
    return name[:at] + name[at + 1] + name[at] + name[at + 2 :]


def make_queries(
    db: Database, store: PersonStore, n: int, seed: int, slip_searches: int = 0
) -> list[tuple[str, dict[str, str], uuid.UUID]]:
    """(kind, raw query, expected person) from sampled linked records: ``n`` of the first
    kinds, then ``slip_searches`` of each slip kind."""
    rng = random.Random(seed)
    with Session(db.engine) as session:
        linked = session.execute(
            select(SourceRecord.id, SourceRecord.person_id).where(
                SourceRecord.is_current.is_(True), SourceRecord.person_id.is_not(None)
            )
        ).all()
        sample = rng.sample(sorted(linked), min(n * 2 + slip_searches * 40, len(linked)))
        stored = store.read(session, [rid for rid, _ in sample], [IDENTITY, IDENTIFIERS, "contact"])
    out: list[tuple[str, dict[str, str], uuid.UUID]] = []
    slips: list[tuple[str, dict[str, str], uuid.UUID]] = []
    wanted = dict.fromkeys(SLIP_KINDS, slip_searches)
    kinds = ["exact", "family_typo", "nickname", "dm_swap", "names_swapped", "postcode", "id"]
    for rid, person in sample:
        groups = stored[rid].groups
        identity, ids = groups.get(IDENTITY, {}), groups.get(IDENTIFIERS, {})
        given = (identity.get("given_names") or [None])[0]
        family, dob = identity.get("family_name"), identity.get("date_of_birth")
        postcodes = [a.get("postcode") for a in groups.get("contact", {}).get("addresses") or []]
        if not (given and family and dob) or person is None:
            continue
        date = dt.date.fromisoformat(dob)
        for slip in SLIP_KINDS:
            if not wanted[slip]:
                continue
            short = SHORT_FORMS.get(given.lower())
            if slip.startswith("short_form") and not short:
                continue
            query = {"given_name": given, "family_name": family}
            if slip == "surname_edit_nodob":
                query["family_name"] = one_edit(family, rng)
            elif slip == "given_edit_nodob":
                query["given_name"] = one_edit(given, rng)
            elif slip == "names_nodob":
                pass
            else:
                query["given_name"] = str(short)
                if slip == "short_form":
                    query["date_of_birth"] = date.strftime("%d/%m/%Y")
            slips.append((slip, query, person))
            wanted[slip] -= 1
            break
        if len(out) == n:
            if not any(wanted.values()):
                break
            continue
        kind = kinds[len(out) % len(kinds)]
        raw = {
            "given_name": given,
            "family_name": family,
            "date_of_birth": date.strftime("%d/%m/%Y"),
        }
        if kind == "family_typo":
            raw["family_name"] = _typo(family, rng)
        elif kind == "nickname":
            nick = NICKNAMES.get(given.lower())
            raw["given_name"] = nick or _typo(given, rng)
        elif kind == "dm_swap" and date.day <= 12 and date.day != date.month:
            raw["date_of_birth"] = date.strftime("%m/%d/%Y")
        elif kind == "names_swapped":
            raw["given_name"], raw["family_name"] = family, given
        elif kind == "postcode" and postcodes and postcodes[0]:
            raw = {"given_name": given, "family_name": family, "postcode": postcodes[0]}
        elif kind == "id" and (ids.get("nhs_number") or ids.get("pnc_id")):
            raw = {k: ids[k] for k in ("nhs_number", "pnc_id") if ids.get(k)}
        else:
            kind = "exact"
        out.append((kind, raw, person))
    return out + slips


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {
        "n": len(ordered),
        "p50_ms": at(0.5),
        "p95_ms": at(0.95),
        "max_ms": round(ordered[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def service_searches(
    db: Database,
    store: PersonStore,
    policy: AccessPolicy,
    model: LinkageModel,
    queries: list[tuple[str, dict[str, str], uuid.UUID]],
    *,
    show_misses: bool = False,
) -> dict[str, Any]:
    scorer = model.scorer()
    times: list[float] = []
    hits: dict[str, list[int]] = {}
    candidates: list[int] = []
    per_kind: dict[str, list[int]] = {}
    for kind, raw, person in queries:
        began = time.perf_counter()
        with db.transaction() as session:
            result = search_persons(
                session, store, policy, CALLER, standardise_query(raw), PURPOSE, model,
                scorer=scorer,
            )  # fmt: skip
        times.append(time.perf_counter() - began)
        candidates.append(result.candidates)
        per_kind.setdefault(kind, []).append(result.candidates)
        ranked = [hit.person_id for hit in result.results]
        rank = ranked.index(person) + 1 if person in ranked else 0
        hits.setdefault(kind, []).append(rank)
        if show_misses and not 1 <= rank <= 5:
            # Synthetic people only: for finding out why a kind of query misses.
            print(kind, raw, "rank", rank, "candidates", result.candidates, file=sys.stderr)
    quality = {
        kind: {
            "n": len(ranks),
            "rank1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
            "top5": round(sum(1 <= r <= 5 for r in ranks) / len(ranks), 3),
            "candidates_median": statistics.median(per_kind[kind]),
            "candidates_max": max(per_kind[kind]),
        }
        for kind, ranks in sorted(hits.items())
    }
    return {
        "latency": _percentiles(times),
        "candidates_median": statistics.median(candidates),
        "candidates_max": max(candidates),
        "quality": quality,
    }


def http_searches(
    db: Database,
    store: PersonStore,
    model: LinkageModel,
    data_dir: Path,
    queries: list[tuple[str, dict[str, str], uuid.UUID]],
) -> dict[str, Any]:
    key = TokenKey(secrets.token_bytes(32))
    # One principal searching back to back: the per-principal rate limit is not what is measured.
    settings = Settings(data_dir=data_dir, rate_limit_per_minute=1_000_000)
    app = create_app(db, settings=settings, token_key=key)
    app.state.person_store = store
    app.state.linkage_model = model
    with db.transaction() as session:
        user = add_user(session, f"bench.{uuid.uuid4().hex[:8]}", "social_worker", "social_care")
        token = issue_token(user, key, issuer="mash-hub", audience="mash-hub-api", minutes=60)
    headers = {"Authorization": f"Bearer {token.token}", **HEADERS}
    client = TestClient(app)
    times: list[float] = []
    for _, raw, _ in queries:
        began = time.perf_counter()
        response = client.post("/api/v1/persons/search", json=raw, headers=headers)
        times.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise SystemExit(f"search answered {response.status_code}: {response.json()}")
    return _percentiles(times)


def _or_query(session: Session, _: PersonStore, terms: list[IndexTerm]) -> set[uuid.UUID]:
    """The candidate query as it was: one OR of (index, value) conditions."""
    conditions = [
        (BlindIndexEntry.index_id == t.index_id) & (BlindIndexEntry.value == t.value)
        for t in dict.fromkeys(terms)
    ]
    return set(
        session.scalars(select(BlindIndexEntry.record_id).where(or_(*conditions)).distinct())
    )


def _unnest_query(session: Session, store: PersonStore, terms: list[IndexTerm]) -> set[uuid.UUID]:
    """``PersonStore.candidates``: a join on the terms as two unnested arrays."""
    return store.candidates(session, terms)


def candidate_queries(
    db: Database, store: PersonStore, queries: list[tuple[str, dict[str, str], uuid.UUID]]
) -> dict[str, Any]:
    """OR of terms vs a join on unnest arrays, for one search and for 100 searches at once."""
    per_query = [query_terms(store.indexer, standardise_query(raw)) for _, raw, _ in queries]
    batch = [t for terms in per_query[:100] for t in terms]
    out: dict[str, Any] = {"terms_per_search_median": statistics.median(map(len, per_query))}
    variants: dict[str, Callable[[Session, PersonStore, list[IndexTerm]], set[uuid.UUID]]] = {
        "or": _or_query,
        "unnest": _unnest_query,
    }
    with Session(db.engine) as session:
        for name, run in variants.items():
            for terms in per_query[:20]:  # warm up (plans, caches)
                run(session, store, terms)
            single = []
            for terms in per_query:
                began = time.perf_counter()
                run(session, store, terms)
                single.append(time.perf_counter() - began)
            began = time.perf_counter()
            together = run(session, store, batch)
            out[name] = {
                "single": _percentiles(single),
                "batch_100_ms": round((time.perf_counter() - began) * 1000, 1),
                "batch_100_records": len(together),
            }
        same = all(
            _or_query(session, store, t) == _unnest_query(session, store, t) for t in per_query
        )
    out["same_records"] = same
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--slip-searches", type=int, default=200, help="of each slip kind")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--show-misses", action="store_true", help="print misses to stderr")
    args = parser.parse_args()
    model = LinkageModel.load(shipped_model_path())
    result: dict[str, Any] = {"people": args.people, "seed": args.seed}
    result["load_average_before"] = os.getloadavg()
    with linked_hub(args.people, args.seed, model, "mash-bench-search-") as hub:
        db, store = hub.db, hub.store
        result["records"] = hub.records
        result["persons"] = hub.persons
        result["setup_seconds"] = hub.setup_seconds
        policy = AccessPolicy()
        queries = make_queries(db, store, args.searches, args.seed, args.slip_searches)
        result["service"] = service_searches(
            db, store, policy, model, queries, show_misses=args.show_misses
        )
        result["http"] = http_searches(db, store, model, hub.root / "hub", queries)
        result["candidate_query"] = candidate_queries(db, store, queries)
    result["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
