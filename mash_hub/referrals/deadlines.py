"""Triage deadlines: the decision within one working day, information by RAG.

* **Decision due** (Working Together to Safeguard Children): one working day after receipt,
  counted as 24 hours of working days in Europe/London. Working days are Monday to Friday
  except the bank holidays of England and Wales (the ``holidays`` package, subdivision
  ``ENG``; Wales has the same days). A referral received on a working day at 14:10 is due at
  14:10 on the next working day (one received at 00:00 is due as that day ends); one
  received at a weekend or on a bank holiday starts the clock at 00:00 of the next working
  day, so it is due at the end of that day. British
  clocks change on Sundays, so every working day is 24 hours long.
* **Information due**: 2 hours (red), 6 hours (amber) or 24 hours (green) of clock time after
  the RAG rating was set (red is worked to completion out of hours).
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

import holidays

from mash_hub.referrals.codes import RAG_HOURS

LONDON = ZoneInfo("Europe/London")
_DAY = dt.timedelta(days=1)


@functools.cache
def bank_holidays(year: int) -> frozenset[dt.date]:
    """England and Wales bank holidays of one year (substitute days included)."""
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year))


def is_working_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in bank_holidays(day.year)


def next_working_day(day: dt.date) -> dt.date:
    """The first working day after ``day``."""
    candidate = day + _DAY
    while not is_working_day(candidate):
        candidate += _DAY
    return candidate


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("deadlines need timezone-aware datetimes")
    return moment


def decision_due(received_at: dt.datetime) -> dt.datetime:
    """When the MASH decision is due (UTC): one working day after ``received_at``."""
    local = _aware(received_at).astimezone(LONDON)
    day = local.date()
    wall = local.time().replace(tzinfo=None, fold=0)
    if is_working_day(day) and wall != dt.time():
        due = dt.datetime.combine(next_working_day(day), wall)
    elif is_working_day(day):  # at 00:00 the whole day is left: due as it ends
        due = dt.datetime.combine(day + _DAY, dt.time())
    else:
        due = dt.datetime.combine(next_working_day(day) + _DAY, dt.time())
    return due.replace(tzinfo=LONDON).astimezone(dt.UTC)


def information_due(rag: str, set_at: dt.datetime) -> dt.datetime:
    """When the agencies' information is due for a RAG rating set at ``set_at`` (UTC)."""
    if rag not in RAG_HOURS:
        raise ValueError(f"unknown RAG rating; one of {', '.join(RAG_HOURS)}")
    return (_aware(set_at) + dt.timedelta(hours=RAG_HOURS[rag])).astimezone(dt.UTC)
