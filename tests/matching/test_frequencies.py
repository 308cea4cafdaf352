"""Term-frequency adjustment: common names count for less, rare ones a little more (capped),
the same in Splink and the Python scorer, and a full run keeps its counts encrypted."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.crypto.keystore import KeyStore
from mash_hub.db.engine import Database
from mash_hub.matching import comparisons as comp
from mash_hub.matching import frequencies as term_frequencies
from mash_hub.matching.features import record_features
from mash_hub.matching.frequencies import TermFrequencies
from mash_hub.matching.model import LinkageModel, explain, predict, shipped_model_path
from mash_hub.matching.models import LinkRun
from tests.matching.conftest import LinkedHub

MODEL = LinkageModel.load(shipped_model_path())


def _record(rid: str, given: str, family: str, dob: str, postcode: str) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {
        "identity": {"given_names": [given], "family_name": family, "date_of_birth": dob},
        "contact": {"addresses": [{"postcode": postcode, "line1": "1 High Street"}]},
    }
    return record_features(rid, "test", groups)


def test_only_values_shared_by_enough_records_are_kept() -> None:
    values = {"given_first": ["ann"] * 9 + ["mo"] * 10 + [None] * 5, "family": []}
    counted = TermFrequencies.count(values)
    # Nine records are too few to keep (the table must not single anybody out).
    assert counted.counts["given_first"] == {"mo": 10}
    assert counted.totals == {"given_first": 19, "family": 0}
    assert counted.frequency("given_first", "mo") == pytest.approx(10 / 19)
    # Every value not kept counts at the floor; a missing value is not adjusted at all.
    assert counted.frequency("given_first", "ann") == comp.TF_MINIMUM_U
    assert counted.frequency("given_first", "never seen") == comp.TF_MINIMUM_U
    assert counted.frequency("given_first", None) is None
    assert TermFrequencies.from_json(counted.to_json()) == counted


@given(st.lists(st.sampled_from(["a", "b", "c", None]), max_size=3000))
def test_a_kept_frequency_is_the_share_of_records(values: list[str | None]) -> None:
    counted = TermFrequencies.count({"given_first": values})
    present = [v for v in values if v is not None]
    for value in set(present):
        share = present.count(value) / len(present)
        kept = present.count(value) >= comp.TF_MINIMUM_COUNT and share > comp.TF_MINIMUM_U
        expected = share if kept else comp.TF_MINIMUM_U
        assert counted.frequency("given_first", value) == pytest.approx(expected)


def test_namesakes_with_common_names_score_lower_than_with_rare_ones() -> None:
    """Same first name, family name and date of birth, different areas: one pair with a
    common name (a fifth of the hub's records), one with names nobody else has."""
    common = [
        _record("c1", "Mohammed", "Khan", "1982-04-28", "BD1 1AA"),
        _record("c2", "Mohammed", "Khan", "1982-04-28", "LS6 2QT"),
    ]
    rare = [
        _record("r1", "Zebedee", "Quixley", "1982-04-28", "BD1 1AA"),
        _record("r2", "Zebedee", "Quixley", "1982-04-28", "LS6 2QT"),
    ]
    frequencies = TermFrequencies.count(
        {"given_first": ["mohammed"] * 200 + ["x"] * 800, "family": ["khan"] * 200 + ["y"] * 800}
    )
    (common_pair,) = predict(common, MODEL, frequencies=frequencies)
    (rare_pair,) = predict(rare, MODEL, frequencies=frequencies)
    u_given = MODEL.parameters["given_name"]["exact"]["u"]
    u_family = MODEL.parameters["family_name"]["exact"]["u"]
    expected_gap = (math.log2(0.2) - math.log2(comp.TF_MINIMUM_U)) * 2
    assert rare_pair.match_weight - common_pair.match_weight == pytest.approx(
        expected_gap, abs=0.02
    )
    assert common_pair.weights["given_name"] == pytest.approx(
        MODEL.weight("given_name", "exact") + math.log2(u_given) - math.log2(0.2), abs=0.01
    )
    assert common_pair.weights["family_name"] == pytest.approx(
        MODEL.weight("family_name", "exact") + math.log2(u_family) - math.log2(0.2), abs=0.01
    )
    # A common-name namesake pair in different areas is not linked automatically.
    assert common_pair.match_weight < MODEL.thresholds.auto
    # The explanation says why an exact name counted for little.
    assert common_pair.common == ("given_name", "family_name")
    assert "same first name (a common name: counts for less)" in explain(common_pair)
    assert rare_pair.common == ()
    assert "common" not in explain(rare_pair)


def test_a_full_run_keeps_its_frequencies_encrypted(linked_hub: LinkedHub) -> None:
    with linked_hub.db.transaction() as session:
        ciphertext = session.scalar(
            select(LinkRun.term_frequencies).where(LinkRun.id == linked_hub.first_run.run_id)
        )
        kept = term_frequencies.latest(session, linked_hub.store.keys)
    assert ciphertext is not None and kept is not None
    assert kept.totals["given_first"] > 0 and kept.counts["family"]
    # No kept name appears in clear in the stored bytes.
    for column in ("given_first", "family"):
        for value in kept.counts[column]:
            assert value.encode() not in bytes(ciphertext)


def test_frequencies_are_decrypted_once_per_run_and_a_new_full_run_replaces_them(
    committing_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Search ranks with the latest full run's frequencies, decrypted once per process and
    kept under the run's id: the same run is not read again, a new full run is read at its
    first use, and an incremental run (which keeps none) changes nothing."""
    keys = KeyStore(LocalKeyringProvider.create(tmp_path / "keyring.json"))
    started = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    def run(minutes: int, mode: str, names: list[str] | None) -> None:
        with committing_database.transaction() as session:
            row = LinkRun(
                started_at=started + dt.timedelta(minutes=minutes),
                actor="test",
                model_version=1,
                model_definition="test",
                mode=mode,
            )
            session.add(row)
            session.flush()
            if names is not None:
                counted = TermFrequencies.count({"given_first": names, "family": []})
                term_frequencies.seal(keys, session, row, counted)

    opened: list[object] = []
    unwrap = keys.ciphers

    def counting_ciphers(session: Session, owners: Any) -> Any:
        opened.append(owners)
        return unwrap(session, owners)

    monkeypatch.setattr(keys, "ciphers", counting_ciphers)

    def latest() -> TermFrequencies | None:
        with committing_database.transaction() as session:
            return term_frequencies.latest(session, keys)

    assert latest() is None  # no full run yet: every name at the floor
    run(0, "full", ["ann"] * 10)
    first = latest()
    assert first is not None and first.counts["given_first"] == {"ann": 10}
    assert latest() is first and len(opened) == 1  # cached: not fetched or decrypted again
    run(5, "incremental", None)
    assert latest() is first and len(opened) == 1
    run(10, "full", ["bob"] * 12)
    second = latest()
    assert second is not None and second.counts["given_first"] == {"bob": 12}
    assert len(opened) == 2
    assert latest() is second and len(opened) == 2
