"""Property test: invariants hold across random seeds, sizes and error rates."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.gb import nhs, upn

from mash_hub.synth import ErrorRates, generate
from tests.synth.synth_support import read_extracts


@settings(max_examples=5, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    people=st.integers(min_value=1, max_value=400),
    scale=st.floats(min_value=0, max_value=5),
)
def test_invariants(seed: int, people: int, scale: float) -> None:
    rates = ErrorRates().scaled(scale)
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate(people=people, seed=seed, out_dir=Path(tmp), rates=rates)
        ex = read_extracts(summary)
    assert summary.people == people
    truth = Counter((t["feed"], t["source_record_id"]) for t in ex.truth)
    assert all(n == 1 for n in truth.values())
    assert len(truth) == len(ex.police) + len(ex.council) + len(ex.social)
    assert {t["person_key"] for t in ex.truth} <= {f"P{i:08d}" for i in range(1, people + 1)}
    for r in ex.social:
        assert sum(a["current"] for a in r["addresses"]) == 1
    if scale == 0:
        assert all(nhs.is_valid(r["nhs_number"]) for r in ex.social if r["nhs_number"])
        assert all(upn.is_valid(r["upn"]) for r in ex.council if r["upn"])
