"""ErrorRates validation and scaling."""

from __future__ import annotations

import pytest

from mash_hub.synth import ErrorRates


def test_defaults_are_small_probabilities() -> None:
    rates = ErrorRates().to_dict()
    assert rates
    assert all(0 < v <= 0.25 for v in rates.values())


def test_from_mapping_overrides() -> None:
    rates = ErrorRates.from_mapping({"given_name_typo": 0.5, "duplicate_record": 0})
    assert rates.given_name_typo == 0.5
    assert rates.duplicate_record == 0.0
    assert rates.dob_typo == ErrorRates().dob_typo


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"not_a_rate": 0.1}, "not_a_rate"),
        ({"dob_typo": 1.5}, "dob_typo"),
        ({"nickname": -0.1}, "nickname"),
        ({"nickname": "often"}, "nickname"),
        ({"nickname": True}, "nickname"),
        ({"nickname": float("nan")}, "nickname"),
    ],
)
def test_from_mapping_rejects(data: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        ErrorRates.from_mapping(data)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="stale_address"):
        ErrorRates(stale_address=2.0)


def test_scaled() -> None:
    base = ErrorRates()
    doubled = base.scaled(2)
    assert doubled.given_name_typo == pytest.approx(2 * base.given_name_typo)
    assert all(v <= 1 for v in base.scaled(100).to_dict().values())
    assert all(v == 0 for v in base.scaled(0).to_dict().values())
    with pytest.raises(ValueError, match="scale"):
        base.scaled(-1)
