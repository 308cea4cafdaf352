"""A linked synthetic hub for the benchmarks that measure reads: a seeded population,
ingested into a fresh embedded PostgreSQL (or ``MASH_DATABASE_URL``), linked with the shipped
model, the baseline policy published. Removed, server and all, when the block ends."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine

from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.versions import publish
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.engine import Database, normalise_url
from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.matching.model import LinkageModel
from mash_hub.matching.service import run_linkage
from mash_hub.persons.store import PersonStore
from mash_hub.synth import EXTRACT_FILES, generate


@dataclass
class LinkedHub:
    root: Path
    db: Database
    store: PersonStore
    records: int
    persons: int
    setup_seconds: float


@contextmanager
def linked_hub(people: int, seed: int, model: LinkageModel, prefix: str) -> Iterator[LinkedHub]:
    feeds = load_feeds(feed_folders())
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        generate(people=people, seed=seed, out_dir=root / "synth")
        store = PersonStore.from_provider(LocalKeyringProvider.create(root / "keyring.json"))
        embedded = None
        if os.environ.get("MASH_DATABASE_URL"):
            url = normalise_url(os.environ["MASH_DATABASE_URL"])
        else:
            embedded = EmbeddedPostgres(root / "pg")
            url = embedded.acquire()
        try:
            engine = create_engine(url, pool_size=4)
            migrate.upgrade(engine)
            db = Database(engine)
            began = time.perf_counter()
            for feed, name in EXTRACT_FILES.items():
                ingest_file(db, store, feeds[feed], root / "synth" / name, actor="bench")
            run = run_linkage(db, store, model, actor="bench")
            setup = round(time.perf_counter() - began, 1)
            with db.transaction() as session:
                publish(session, PolicyTexts.read(), actor="bench")
            yield LinkedHub(root, db, store, run.records, run.clusters, setup)
            engine.dispose()
        finally:
            if embedded is not None:
                embedded.release()
