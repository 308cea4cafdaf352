"""Shared fixture: one small generated dataset, read back from disk, reused by many tests."""

from __future__ import annotations

import pytest

from mash_hub.synth import generate
from tests.synth.synth_support import Extracts, read_extracts


@pytest.fixture(scope="session")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Extracts:
    out = tmp_path_factory.mktemp("synth")
    return read_extracts(generate(people=2000, seed=11, out_dir=out))
