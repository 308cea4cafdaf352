"""Feature rows of a generated synthetic population, without a database (tests only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.feeds.mapping import map_record
from mash_hub.feeds.reader import read_records
from mash_hub.matching.features import feature_rows
from mash_hub.synth import EXTRACT_FILES, generate


def _feed_and_source(feed: str, source_record_id: str) -> str:
    return f"{feed}:{source_record_id}"


def generated_feature_rows(
    out: Path,
    *,
    people: int,
    seed: int,
    record_id: Callable[[str, str], str] = _feed_and_source,
) -> list[dict[str, Any]]:
    """Generate ``people`` into ``out`` and return the feature rows of every valid record of
    the three extracts; ``record_id(feed, source_record_id)`` names each (``feed:id``)."""
    generate(people=people, seed=seed, out_dir=out)
    feeds = load_feeds(feed_folders())
    triples = []
    for feed, name in EXTRACT_FILES.items():
        for raw in read_records(feeds[feed], out / name):
            mapped = map_record(feeds[feed], raw)
            if mapped.valid:
                triples.append((record_id(feed, str(mapped.source_record_id)), feed, mapped.groups))
    return feature_rows(triples)
