"""Real-time matching on intake: a small synthetic population ingested, a model trained and a
full linkage run; then a referral through HTTP whose child is someone the index holds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.matching.model import LinkageModel
from mash_hub.matching.models import LinkRun
from mash_hub.matching.service import run_linkage, train_model
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.referrals.models import Referral, ReferralSubject
from mash_hub.synth import EXTRACT_FILES
from tests.conftest import PostgresServer
from tests.referrals.conftest import body
from tests.web.test_referrals_api import PURPOSE, ReferralHub


@dataclass
class Population:
    db: Database
    store: PersonStore
    model: LinkageModel
    keyring: Path


@pytest.fixture(scope="module")
def population(
    pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Population]:
    from mash_hub.synth import generate  # noqa: PLC0415 (only this module needs it)

    root = tmp_path_factory.mktemp("referral-linkage")
    generate(people=300, seed=5, out_dir=root / "synth")
    keyring = root / "keyring.json"
    store = PersonStore.from_provider(LocalKeyringProvider.create(keyring))
    url = pg_server.create_database()
    engine = create_engine(url, pool_size=5, max_overflow=5)
    migrate.upgrade(engine)
    db = Database(engine)
    feeds = load_feeds(feed_folders())
    try:
        for feed, name in EXTRACT_FILES.items():
            ingest_file(db, store, feeds[feed], root / "synth" / name, actor="test")
        model = train_model(db, store, seed=1, version=1)
        run_linkage(db, store, model, actor="test")
        yield Population(db, store, model, keyring)
    finally:
        engine.dispose()
        pg_server.drop_database(url)


def known_child(population: Population) -> tuple[uuid.UUID, dict[str, Any]]:
    """A person the index holds from two or more agencies, as a referral subject."""
    with population.db.transaction() as session:
        persons = session.scalars(
            select(SourceRecord.person_id)
            .where(
                SourceRecord.is_current.is_(True),
                SourceRecord.feed == "council",
                SourceRecord.person_id.is_not(None),
            )
            .distinct()
        ).all()
        counts = dict(
            session.execute(
                select(SourceRecord.person_id, func.count())
                .where(SourceRecord.person_id.in_(persons))
                .group_by(SourceRecord.person_id)
            ).all()
        )
        records = session.execute(
            select(SourceRecord.id, SourceRecord.person_id)
            .where(SourceRecord.feed == "council", SourceRecord.person_id.in_(persons))
            .order_by(SourceRecord.id)
        ).all()
        groups = ["identity", "identifiers", "contact"]
        for record_id, person in records:
            if counts.get(person, 0) < 2:
                continue
            stored = population.store.read(session, [record_id], groups)[record_id].groups
            identity, identifiers = stored["identity"], stored["identifiers"]
            if not (identity.get("family_name") and identity.get("given_names")):
                continue
            if not (identity.get("date_of_birth") and identifiers.get("upn")):
                continue
            addresses = [
                {k: a.get(k) for k in ("line1", "line2", "town", "postcode") if a.get(k)}
                for a in stored["contact"].get("addresses") or []
            ][:1]
            subject = {
                "role": "child",
                "given_names": identity["given_names"],
                "family_name": identity["family_name"],
                "date_of_birth": identity["date_of_birth"],
                "upn": identifiers["upn"],
                "addresses": addresses,
            }
            assert person is not None
            return person, subject
    raise AssertionError("the synthetic population has no suitable person")


def test_a_referred_child_joins_the_person_the_index_already_holds(
    population: Population, tmp_path: Path
) -> None:
    hub = ReferralHub(population.db, tmp_path)
    hub.app.state.person_store = population.store
    hub.app.state.linkage_model = population.model
    hub.app.state.linkage_model_unavailable = False
    with population.db.transaction() as session:
        full_runs = session.scalar(select(func.count()).select_from(LinkRun))
    person, child = known_child(population)
    newcomer = {
        "role": "household_member",
        "given_names": ["Zqorlaith"],
        "family_name": "Zqvantongeren",
        "date_of_birth": "1979-11-30",
    }
    response = hub.submit(hub.partner("school"), body(subjects=[child, newcomer]))
    assert response.status_code == 201, response.text
    referral_id = uuid.UUID(response.json()["id"])

    with population.db.transaction() as session:
        row = session.get(Referral, referral_id)
        assert row is not None and row.linkage == "incremental"
        subjects = session.execute(
            select(ReferralSubject, SourceRecord.person_id)
            .join(SourceRecord, SourceRecord.id == ReferralSubject.record_id)
            .where(ReferralSubject.referral_id == referral_id)
            .order_by(ReferralSubject.position)
        ).all()
        runs = session.scalar(select(func.count()).select_from(LinkRun))
    (child_row, child_person), (other_row, other_person) = subjects
    assert child_person == person and child_row.matched_existing
    assert other_person not in (None, person) and not other_row.matched_existing
    assert runs == (full_runs or 0) + 1  # one incremental run, in the intake's transaction
    entry = hub.audit("referral.submit")[-1]
    assert entry.details["linkage"] == "incremental" and entry.details["matched_existing"] == 1
    assert hub.audit("linkage.incremental")

    # The existing person's view now lists the referral, with the concerns for the MASH.
    view = hub.client.get(f"/api/v1/persons/{person}", headers={**hub.officer, **PURPOSE})
    assert view.status_code == 200, view.text
    (listed,) = view.json()["referrals"]
    assert listed["id"] == str(referral_id) and listed["concerns"]
    assert {"council", "referral"} <= set(view.json()["sources"])

    # The triage view shows the match, the referrer's status view does not.
    reference = response.json()["reference"]
    triage = hub.client.get(f"/api/v1/referrals/{reference}", headers=hub.officer).json()
    assert [s["matched_existing"] for s in triage["subjects"]] == [True, False]
    assert triage["subjects"][0]["person_id"] == str(person)
    status = hub.client.get(
        f"/api/v1/referrals/{reference}/status", headers=hub.partner("school")
    ).json()
    assert str(person) not in str(status) and "matched" not in str(status)
