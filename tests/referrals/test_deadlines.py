"""Triage deadlines: one working day for the decision (weekends and England & Wales bank
holidays skipped, Europe/London), clock hours by RAG for information."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mash_hub.referrals.deadlines import (
    LONDON,
    decision_due,
    information_due,
    is_working_day,
    next_working_day,
)

# The bank holidays of England and Wales, from GOV.UK, written out independently of the
# `holidays` package the code uses.
BANK_HOLIDAYS = {
    dt.date(2025, 1, 1), dt.date(2025, 4, 18), dt.date(2025, 4, 21), dt.date(2025, 5, 5),
    dt.date(2025, 5, 26), dt.date(2025, 8, 25), dt.date(2025, 12, 25), dt.date(2025, 12, 26),
    dt.date(2026, 1, 1), dt.date(2026, 4, 3), dt.date(2026, 4, 6), dt.date(2026, 5, 4),
    dt.date(2026, 5, 25), dt.date(2026, 8, 31), dt.date(2026, 12, 25), dt.date(2026, 12, 28),
    dt.date(2027, 1, 1), dt.date(2027, 3, 26), dt.date(2027, 3, 29), dt.date(2027, 5, 3),
    dt.date(2027, 5, 31), dt.date(2027, 8, 30), dt.date(2027, 12, 27), dt.date(2027, 12, 28),
}  # fmt: skip


def working(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in BANK_HOLIDAYS


def london(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=LONDON)


def working_seconds(start: dt.datetime, end: dt.datetime) -> float:
    """Seconds between two instants that fall on working days (local calendar days)."""
    total = 0.0
    day = start.astimezone(LONDON).date()
    while True:
        day_start = dt.datetime.combine(day, dt.time(), tzinfo=LONDON)
        day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=LONDON)
        if day_start >= end:
            return total
        if working(day):
            low, high = max(start, day_start), min(end, day_end)
            if high > low:
                total += (high - low).total_seconds()
        day += dt.timedelta(days=1)


def test_the_package_agrees_with_the_published_bank_holidays() -> None:
    day = dt.date(2025, 1, 1)
    while day.year < 2028:
        assert is_working_day(day) == working(day), day
        day += dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # Tuesday afternoon: Wednesday, same time.
        (london(2026, 3, 10, 14, 10), london(2026, 3, 11, 14, 10)),
        # Friday morning: Monday morning.
        (london(2026, 3, 13, 9, 30), london(2026, 3, 16, 9, 30)),
        # Saturday: the clock starts on Monday, so the end of Monday.
        (london(2026, 3, 14, 22, 0), london(2026, 3, 17, 0, 0)),
        # Thursday before Easter: Good Friday and Easter Monday skipped (across the BST change).
        (london(2026, 4, 2, 11, 0), london(2026, 4, 7, 11, 0)),
        # Christmas Eve 2026 (Thursday): 25th Friday, 28th substitute Boxing Day.
        (london(2026, 12, 24, 16, 45), london(2026, 12, 29, 16, 45)),
        # On a bank holiday itself (Spring bank holiday 2026): end of Tuesday.
        (london(2026, 5, 25, 10, 0), london(2026, 5, 27, 0, 0)),
        # Friday at 00:00: the whole of Friday counts, so due as Friday ends.
        (london(2026, 3, 20, 0, 0), london(2026, 3, 21, 0, 0)),
        # Friday 23:59 before the clocks go back: Monday 23:59 (GMT by then).
        (london(2026, 10, 23, 23, 59), london(2026, 10, 26, 23, 59)),
    ],
)
def test_decision_due_examples(received: dt.datetime, due: dt.datetime) -> None:
    assert decision_due(received) == due
    assert decision_due(received).tzinfo == dt.UTC


instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1),
    max_value=dt.datetime(2027, 12, 20),
    timezones=st.just(dt.UTC),
)


# Whole hours and half hours too (midnight, the hour the clocks change), not just odd instants.
on_the_hour = st.builds(
    lambda day, half_hours: (
        dt.datetime.combine(day, dt.time(), tzinfo=LONDON) + dt.timedelta(minutes=30 * half_hours)
    ),
    st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2027, 12, 20)),
    st.integers(0, 47),
).map(lambda moment: moment.astimezone(dt.UTC))


@given(received=instants | on_the_hour)
def test_decision_due_is_exactly_one_working_day_later(received: dt.datetime) -> None:
    due = decision_due(received)
    assert due > received
    assert working_seconds(received, due) == 24 * 3600
    local = due.astimezone(LONDON)
    # It falls on a working day, or at midnight ending one (clock started on a closed day).
    assert working(local.date()) or (
        local.time() == dt.time() and working(local.date() - dt.timedelta(days=1))
    )
    # Nothing earlier would do: a minute before, less than a working day has passed.
    assert working_seconds(received, due - dt.timedelta(minutes=1)) < 24 * 3600


@given(day=st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2027, 12, 20)))
def test_next_working_day_skips_only_closed_days(day: dt.date) -> None:
    following = next_working_day(day)
    assert working(following) and following > day
    between = day + dt.timedelta(days=1)
    while between < following:
        assert not working(between)
        between += dt.timedelta(days=1)


@given(
    set_at=instants,
    rag=st.sampled_from(["red", "amber", "green"]),
)
def test_information_due_is_clock_hours_by_rag(set_at: dt.datetime, rag: str) -> None:
    hours = {"red": 2, "amber": 6, "green": 24}[rag]
    assert information_due(rag, set_at) - set_at == dt.timedelta(hours=hours)


def test_naive_times_and_unknown_ratings_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        decision_due(dt.datetime(2026, 3, 10, 9, 0))
    with pytest.raises(ValueError, match="RAG"):
        information_due("blue", dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC))
