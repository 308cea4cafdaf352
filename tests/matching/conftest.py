"""A small synthetic population ingested into real PostgreSQL with real keys, then linked.

Module-scoped: ingesting, training and linking 700 people takes a few seconds, and the
tests only read the result (the re-run test leaves it unchanged when ids are stable).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.matching.model import LinkageModel
from mash_hub.matching.service import RunReport, run_linkage, train_model
from mash_hub.persons.store import PersonStore
from mash_hub.synth import EXTRACT_FILES, generate
from tests.conftest import PostgresServer

# 700 people, seed 12: four sets of twins appear in the extracts.
PEOPLE = 700
SEED = 12


@dataclass
class LinkedHub:
    db: Database
    store: PersonStore
    model: LinkageModel
    first_run: RunReport
    extracts: Path

    @property
    def truth(self) -> Path:
        return self.extracts / "truth.csv"

    def truth_rows(self) -> list[dict[str, str]]:
        with self.truth.open(newline="") as handle:
            return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def linked_hub(
    pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LinkedHub]:
    root = tmp_path_factory.mktemp("linkage")
    generate(people=PEOPLE, seed=SEED, out_dir=root / "synth")
    store = PersonStore.from_provider(LocalKeyringProvider.create(root / "keyring.json"))
    url = pg_server.create_database()
    engine = create_engine(url, pool_size=2, max_overflow=2)
    migrate.upgrade(engine)
    db = Database(engine)
    feeds = load_feeds(feed_folders())
    try:
        for feed, name in EXTRACT_FILES.items():
            ingest_file(db, store, feeds[feed], root / "synth" / name, actor="test")
        model = train_model(db, store, seed=1, version=1)
        report = run_linkage(db, store, model, actor="test")
        yield LinkedHub(db, store, model, report, root / "synth")
    finally:
        engine.dispose()
        pg_server.drop_database(url)
