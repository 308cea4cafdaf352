"""What keeps intake fast, checked on a real PostgreSQL: matching reads the subjects from the
plaintext just written (and sees exactly what it would read back), the statements one
referral sends stay few, and the blind-index fence is taken once per transaction but never
trusted after the savepoint that took it was rolled back."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event, select, text

from mash_hub.matching.features import record_features
from mash_hub.matching.service import GROUPS
from mash_hub.persons.models import SourceRecord
from mash_hub.referrals import service
from mash_hub.referrals.models import ReferralSubject
from mash_hub.referrals.schemas import ReferralIn
from tests.referrals.conftest import body
from tests.referrals.test_concurrent_intake import child, ensure_policy, submit_in
from tests.referrals.test_realtime_linkage import Population, known_child, population

__all__ = ["population"]  # the module-scoped fixture, shared with the real-time tests

# Statements one referral of a known child sends through SQLAlchemy (the audit appends go
# to the driver directly and are not counted here), policy check included: 22 when written;
# reading back and re-checking what it had just written cost about 15 more.
MAX_STATEMENTS = 23


def test_the_subjects_as_written_are_what_matching_would_read_back(
    population: Population,
) -> None:
    """Matching takes the subjects' plaintext instead of decrypting them again: it must be
    the very values the store holds (else a referral would match differently from a feed)."""
    _, subject = known_child(population)
    referral = ReferralIn.model_validate(
        body(subjects=[subject, child("Zqwilhelmina", "Zqoduya", "2012-06-30")])
    )
    records = [
        service._subject_record(uuid.uuid4(), "R-2026-0000TEST", i, s, referral.concerns)
        for i, s in enumerate(referral.subjects)
    ]
    with population.db.sessions() as session:  # rolled back on close: nothing kept
        ids = population.store.add(session, records)
        written = service.as_written(ids, records)
        stored = population.store.read(session, ids, GROUPS)
        for rid in ids:
            assert written[rid].groups == stored[rid].groups
            assert record_features(str(rid), "referral", written[rid].groups) == record_features(
                str(rid), stored[rid].feed, stored[rid].groups
            )


def test_a_referral_sends_few_statements_and_still_joins_the_person(
    population: Population,
) -> None:
    ensure_policy(population)
    person, subject = known_child(population)
    referral = ReferralIn.model_validate(body(subjects=[subject]))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(None, 3)[0])

    event.listen(population.db.engine, "before_cursor_execute", count)
    try:
        with population.db.transaction() as session:
            receipt = submit_in(session, population, referral)
    finally:
        event.remove(population.db.engine, "before_cursor_execute", count)
    assert len(statements) <= MAX_STATEMENTS, statements
    with population.db.transaction() as session:
        joined, matched = session.execute(
            select(SourceRecord.person_id, ReferralSubject.matched_existing)
            .join(ReferralSubject, ReferralSubject.record_id == SourceRecord.id)
            .where(ReferralSubject.referral_id == receipt.referral_id)
        ).one()
    assert joined == person and matched


def _holds_fence(session: Any) -> bool:
    return bool(
        session.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                " AND relation = 'blind_index'::regclass AND mode = 'RowExclusiveLock'"
            )
        )
    )


def test_the_fence_is_taken_again_after_the_savepoint_that_took_it_rolls_back(
    population: Population,
) -> None:
    store = population.store
    with population.db.transaction() as session:
        nested = session.begin_nested()
        store.fence(session)
        assert _holds_fence(session)
        nested.rollback()
        assert not _holds_fence(session)  # released with the savepoint
        store.fence(session)
        assert _holds_fence(session)
    with population.db.transaction() as session:
        session.execute(text("SELECT 1"))
        assert not _holds_fence(session)  # a new transaction starts without it
        store.fence(session)
        assert _holds_fence(session)
