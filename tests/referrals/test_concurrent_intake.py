"""Concurrent intakes with real-time matching on a real PostgreSQL: intakes about different
people do not wait for each other, and two referrals of the same new child at once still end
up as one person (the second waits for the first, then joins its person)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

from sqlalchemy import select

from mash_hub.authz.policy import AccessPolicy, PolicyNotPublishedError
from mash_hub.authz.versions import publish
from mash_hub.persons.models import SourceRecord
from mash_hub.referrals import service
from mash_hub.referrals.models import ReferralSubject
from mash_hub.referrals.schemas import ReferralIn
from tests.authz.conftest import BASELINE
from tests.referrals.conftest import PARTNER, body
from tests.referrals.test_realtime_linkage import Population, population

__all__ = ["population"]  # the module-scoped fixture, shared with the real-time tests

NOW = dt.datetime(2026, 3, 10, 14, 10, tzinfo=dt.UTC)
BLOCKED_SECONDS = 2.0


def child(given: str, family: str, born: str) -> dict[str, Any]:
    return {"role": "child", "given_names": [given], "family_name": family, "date_of_birth": born}


class Intake(threading.Thread):
    """A referral submitted in a transaction of its own, on another thread."""

    def __init__(self, population: Population, subject: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.population = population
        self.referral = ReferralIn.model_validate(body(subjects=[subject]))
        self.receipt: service.Receipt | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.receipt = submit(self.population, self.referral)
        except BaseException as exc:  # reported by the test
            self.error = exc


def submit(population: Population, referral: ReferralIn) -> service.Receipt:
    with population.db.transaction() as session:
        return submit_in(session, population, referral)


def submit_in(session: Any, population: Population, referral: ReferralIn) -> service.Receipt:
    decisions = AccessPolicy().for_session(session)
    return service.submit(
        session,
        population.store,
        decisions,
        PARTNER,
        referral,
        idempotency_key=None,
        model=population.model,
        now=NOW,
    )


def subject_person(population: Population, receipt: service.Receipt) -> tuple[uuid.UUID, bool]:
    with population.db.transaction() as session:
        person, matched = session.execute(
            select(SourceRecord.person_id, ReferralSubject.matched_existing)
            .join(ReferralSubject, ReferralSubject.record_id == SourceRecord.id)
            .where(ReferralSubject.referral_id == receipt.referral_id)
        ).one()
    assert person is not None
    return person, matched


def ensure_policy(population: Population) -> None:
    with population.db.transaction() as session:
        try:
            AccessPolicy().for_session(session)
        except PolicyNotPublishedError:
            publish(session, BASELINE, actor="test:publisher")


def test_two_referrals_of_the_same_new_child_at_once_make_one_person(
    population: Population,
) -> None:
    ensure_policy(population)
    subject = child("Zqperpetua", "Zqhollingsworth", "2016-09-21")
    first = ReferralIn.model_validate(body(subjects=[subject]))
    second = Intake(population, subject)
    with population.db.transaction() as session:
        receipt = submit_in(session, population, first)
        second.start()
        second.join(BLOCKED_SECONDS)
        # Same terms: the second intake waits for this one's commit.
        assert second.is_alive()
    second.join(60)
    assert second.error is None and second.receipt is not None
    person, matched = subject_person(population, receipt)
    again, matched_again = subject_person(population, second.receipt)
    assert again == person
    assert not matched and matched_again


def test_intakes_about_different_people_do_not_wait_for_each_other(
    population: Population,
) -> None:
    ensure_policy(population)
    first = ReferralIn.model_validate(
        body(subjects=[child("Zqeustacia", "Zqabernethy", "2013-02-05")])
    )
    other = Intake(population, child("Zqtobiah", "Zqvanderpump", "2018-11-27"))
    with population.db.transaction() as session:
        receipt = submit_in(session, population, first)
        other.start()
        other.join(60)
        # Finished while the first intake's transaction (and its locks) is still open.
        assert not other.is_alive()
    assert other.error is None and other.receipt is not None
    person, _ = subject_person(population, receipt)
    different, _ = subject_person(population, other.receipt)
    assert different != person
