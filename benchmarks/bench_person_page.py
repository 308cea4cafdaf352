"""The person page's server time: the purpose page, then its POST answered with the person page.

    python benchmarks/bench_person_page.py [--people 200000] [--views 200] [--seed 2026] [--json]

Generates a population, ingests the three extracts into a fresh embedded PostgreSQL (or
MASH_DATABASE_URL) and links them with the shipped model, publishes the baseline policy (the
same helpers as ``bench_search.py``), then signs a social worker in through a one-time link
and, for ``--views`` people sampled from the linked index, fetches the purpose page
(``GET /people/{id}/purpose``: the referrals the caller may give, one audit entry) and posts
the purpose form (``POST /people/{id}``: ``view_person`` + ``person_links``, two audit
entries, decryption of the allowed groups, the rendered page), through the app in-process
(Starlette's TestClient: no network, so the time is the server's plus the client's small
share). Reports p50/p95 of each, of the same services called directly (both steps, no app),
and the load average before and after. Wall-clock on a shared machine: noisy. Not part of the
test run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from linked_hub import linked_hub
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, Caller
from mash_hub.casework.links import person_links
from mash_hub.casework.view import Purpose, referral_purposes, view_person
from mash_hub.crypto.tokens import TokenKey
from mash_hub.db.engine import Database
from mash_hub.matching.model import LinkageModel, shipped_model_path
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.settings import Settings
from mash_hub.users.service import add_user
from mash_hub.users.sessions import issue_login_link
from mash_hub.web.app import create_app

PURPOSE_FORM = {"purpose": "mash_triage", "purpose_text": "Benchmark triage of a contact"}


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


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def person_pages(
    db: Database, store: PersonStore, data_dir: Path, views: int, seed: int
) -> dict[str, Any]:
    # Many requests a minute from one member of staff: lift the per-principal limit.
    settings = Settings(data_dir=data_dir, rate_limit_per_minute=1_000_000)
    app = create_app(db, settings=settings, token_key=TokenKey(secrets.token_bytes(32)))
    app.state.person_store = store
    with db.transaction() as session:
        user = add_user(session, f"bench.{uuid.uuid4().hex[:8]}", "social_worker", "social_care")
        link = issue_login_link(session, user, actor="bench")
    client = TestClient(app)
    signed_in = client.post("/sign-in", data={"token": link.secret}, follow_redirects=False)
    if signed_in.status_code != 303:
        raise SystemExit(f"sign-in answered {signed_in.status_code}")
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', client.get("/").text)
    if match is None:
        raise SystemExit("no CSRF token on the start page")
    form = {**PURPOSE_FORM, "csrf_token": match.group(1)}
    with Session(db.engine) as session:
        people = sorted(
            {
                person
                for person in session.scalars(
                    select(SourceRecord.person_id).where(SourceRecord.is_current.is_(True))
                )
                if person is not None
            }
        )
    sample = random.Random(seed).sample(people, min(views, len(people)))
    for person in sample[:10]:  # warm up: plans, the policy's compiled masks, templates
        client.post(f"/people/{person}", data=form)
    purpose_times: list[float] = []
    page_times: list[float] = []
    load_before = _load()
    for person in sample:
        began = time.perf_counter()
        purpose = client.get(f"/people/{person}/purpose")
        purpose_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        page = client.post(f"/people/{person}", data=form)
        page_times.append(time.perf_counter() - began)
        if purpose.status_code != 200 or page.status_code != 200:
            raise SystemExit(f"answered {purpose.status_code} / {page.status_code}")
    # The same work without the app: the services alone, one transaction each, as the pages
    # call them (what the pages add is the session check, the rate limit and rendering).
    caller = Caller(f"user:{user.id}", user.role, user.agency)
    policy = AccessPolicy()
    purpose = Purpose(code=PURPOSE_FORM["purpose"], text=PURPOSE_FORM["purpose_text"])
    service_times: list[float] = []
    for at, person in enumerate([*sample[:10], *sample]):  # the first ten warm up (compile)
        began = time.perf_counter()
        with db.transaction() as session:
            referral_purposes(session, policy, caller, person)
        with db.transaction() as session:
            view_person(session, store, policy, caller, person, purpose)
            person_links(session, policy, caller, person, purpose)
        if at >= 10:
            service_times.append(time.perf_counter() - began)
    return {
        "purpose_page": _percentiles(purpose_times),
        "person_page": _percentiles(page_times),
        "services_only_both": _percentiles(service_times),
        "load_average_before": load_before,
        "load_average_after": _load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = LinkageModel.load(shipped_model_path())
    result: dict[str, Any] = {"people": args.people, "seed": args.seed, "cpus": os.cpu_count()}
    with linked_hub(args.people, args.seed, model, "mash-bench-person-page-") as hub:
        result["records"] = hub.records
        result["persons"] = hub.persons
        result["setup_seconds"] = hub.setup_seconds
        result.update(person_pages(hub.db, hub.store, hub.root / "hub", args.views, args.seed))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
