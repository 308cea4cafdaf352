"""Recording-error rates and the small mutations that model how agencies mis-record people."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from random import Random
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorRates:
    """Per-record probabilities of each recording error, applied independently per record.

    Defaults are "a few percent", in line with published data-quality audits of police and
    social-care person records; conditional rates apply only when the condition holds.
    """

    # A realistic typo (transposition, deletion, keyboard-neighbour substitution, doubled
    # letter) in the first given name.
    given_name_typo: float = 0.02
    # The same kinds of typo in the family name.
    family_name_typo: float = 0.015
    # An informal name ("Bill", "Lizzie") recorded instead of the formal given name, when the
    # name has known nicknames.
    nickname: float = 0.04
    # Another romanisation/spelling (Mohammed/Muhammad, Aleksandra/Alexandra, diacritics
    # dropped), when the name has known variants. High because agencies rarely agree on these.
    transliteration: float = 0.2
    # Given and family names recorded the wrong way round.
    name_order_swap: float = 0.008
    # For a person whose surname changed (marriage), this agency still holds the old surname.
    surname_change: float = 0.25
    # Day and month of birth swapped (only possible when the day is 12 or less).
    dob_day_month_swap: float = 0.01
    # Another DOB mistake: a day or month one out, or the year one out.
    dob_typo: float = 0.012
    # For a household that has moved, this agency still has an earlier address.
    stale_address: float = 0.1
    # The postcode was not recorded.
    missing_postcode: float = 0.03
    # An identifier the agency would normally hold (NHS number, UPN, PNC id) is absent.
    missing_identifier: float = 0.08
    # An identifier with one digit keyed wrongly, so its check character no longer matches.
    mistyped_identifier: float = 0.01
    # The same person registered twice in one agency under different ids, usually with small
    # differences between the two records.
    duplicate_record: float = 0.02
    # Sex not recorded (U/Unknown).
    sex_unknown: float = 0.01

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_rate(f.name, getattr(self, f.name))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ErrorRates:
        """Defaults overridden by ``data``; unknown keys and non-probabilities are refused."""
        if not isinstance(data, Mapping):
            raise ValueError("error rates must be a JSON object of name -> probability")
        known = {f.name for f in fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise ValueError(
                    f"unknown error rate {key!r}; known rates: {', '.join(sorted(known))}"
                )
            _check_rate(key, value)
        return replace(cls(), **{k: float(v) for k, v in data.items()})

    def scaled(self, factor: float) -> ErrorRates:
        """Every rate multiplied by ``factor`` (capped at 1), e.g. for harder test data."""
        if isinstance(factor, bool) or not math.isfinite(factor) or factor < 0:
            raise ValueError(f"error scale must be a finite number >= 0, got {factor!r}")
        return replace(self, **{k: min(1.0, v * factor) for k, v in self.to_dict().items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _check_rate(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"error rate {key!r} must be a number, got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"error rate {key!r} must be between 0 and 1, got {value!r}")


_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    out: dict[str, str] = {}
    for r, row in enumerate(_KEYBOARD_ROWS):
        for c, ch in enumerate(row):
            near = []
            for dr in (-1, 0, 1):
                rr = r + dr
                if 0 <= rr < len(_KEYBOARD_ROWS):
                    for dc in (-1, 0, 1):
                        cc = c + dc
                        if (dr or dc) and 0 <= cc < len(_KEYBOARD_ROWS[rr]):
                            near.append(_KEYBOARD_ROWS[rr][cc])
            out[ch] = "".join(near)
    return out


KEY_NEIGHBOURS = _neighbours()


def typo(name: str, rng: Random) -> str:  # noqa: PLR0911 - one return per error kind
    """One realistic keying error; the first letter is rarely the one mistyped."""
    n = len(name)
    if n < 3:
        return name + name[-1].lower() if n else name
    kind = rng.random()
    pos = 1 + rng.randrange(n - 1)
    if kind < 0.3 and pos < n - 1:  # transposition of two adjacent letters
        a, b = name[pos], name[pos + 1]
        if a != b:
            return name[:pos] + b + a + name[pos + 2 :]
        return name[:pos] + name[pos + 1 :]
    if kind < 0.55:  # deletion
        return name[:pos] + name[pos + 1 :]
    if kind < 0.85:  # substitution by a keyboard neighbour
        ch = name[pos]
        near = KEY_NEIGHBOURS.get(ch.lower())
        if not near:
            return name[:pos] + name[pos + 1 :]
        sub = near[rng.randrange(len(near))]
        return name[:pos] + (sub.upper() if ch.isupper() else sub) + name[pos + 1 :]
    return name[:pos] + name[pos] + name[pos:]  # doubled letter


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _MONTH_DAYS[month - 1]


def dob_typo(y: int, m: int, d: int, rng: Random) -> tuple[int, int, int]:
    """Day one out, month one out, or year one out; always a real calendar date."""
    kind = rng.random()
    step = 1 if rng.random() < 0.5 else -1
    if kind < 0.4:
        nd = d + step
        if not 1 <= nd <= days_in_month(y, m):
            nd = d - step
        return y, m, nd
    if kind < 0.65:
        nm = m + step
        if not 1 <= nm <= 12:
            nm = m - step
        return y, nm, min(d, days_in_month(y, nm))
    ny = y + step
    return ny, m, min(d, days_in_month(ny, m))
