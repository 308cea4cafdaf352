"""Fixtures for ingestion: real keys, a committing database, and synthetic extracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.feeds.definition import FeedDefinition, feed_folders, load_feeds
from mash_hub.persons.store import PersonStore
from mash_hub.synth import ErrorRates, generate


@pytest.fixture(scope="session")
def feeds() -> dict[str, FeedDefinition]:
    return load_feeds(feed_folders())


@pytest.fixture
def store(tmp_path: Path) -> PersonStore:
    return PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "keyring.json"))


def no_errors() -> ErrorRates:
    return ErrorRates.from_mapping(dict.fromkeys(ErrorRates().to_dict(), 0.0))


@pytest.fixture(scope="session")
def clean_extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic extracts with every recording-error rate at zero."""
    out = tmp_path_factory.mktemp("clean")
    generate(people=400, seed=11, out_dir=out, rates=no_errors())
    return out


@pytest.fixture(scope="session")
def messy_extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic extracts with the default (realistic) recording errors."""
    out = tmp_path_factory.mktemp("messy")
    generate(people=600, seed=12, out_dir=out)
    return out
