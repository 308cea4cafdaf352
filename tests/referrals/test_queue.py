"""The triage queue's order, against a reference written from the rules (hypothesis)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from mash_hub.authz.policy import Decisions
from mash_hub.referrals import triage
from mash_hub.referrals.deadlines import decision_due, information_due
from mash_hub.referrals.models import Referral
from tests.referrals.conftest import OFFICER, at

START = at(2026, 3, 2, 0, 0)  # a Monday


@dataclass(frozen=True)
class Case:
    received_minutes: int
    rag: str | None
    rated_after_minutes: int
    decided: bool


cases = st.lists(
    st.builds(
        Case,
        # Half-hour steps over two weeks (weekends included): ties and near-ties are common.
        received_minutes=st.integers(0, 14 * 48).map(lambda n: n * 30),
        rag=st.sampled_from([None, "red", "amber", "green"]),
        rated_after_minutes=st.integers(0, 96).map(lambda n: n * 30),
        decided=st.booleans(),
    ),
    min_size=1,
    max_size=8,
)

RANK = {"red": 0, None: 1, "amber": 2, "green": 3}


def expected_order(rows: list[Referral], now: dt.datetime) -> list[uuid.UUID]:
    """The queue's documented rules, written out independently of the SQL."""

    def key(r: Referral) -> tuple[object, ...]:
        is_open = r.status != "decided"
        due = r.decision_due_at
        if r.information_due_at is not None:
            due = min(due, r.information_due_at)
        overdue = is_open and due <= now
        if not is_open:
            return (1, 0, 0, 0, 0, -(r.decided_at or now).timestamp(), r.received_at, str(r.id))
        if overdue:
            return (0, 0, RANK[r.rag], due, 0, 0, r.received_at, str(r.id))
        return (0, 1, 0, due, RANK[r.rag], 0, r.received_at, str(r.id))

    return [r.id for r in sorted(rows, key=key)]


def make(case: Case, index: int) -> Referral:
    received = START + dt.timedelta(minutes=case.received_minutes)
    rated = received + dt.timedelta(minutes=case.rated_after_minutes)
    decided = case.decided
    return Referral(
        id=uuid.UUID(int=index + 1),
        reference=f"R-2026-{index:08d}",
        submitted_by="client:test",
        submitter_role="partner_agency",
        submitter_agency="education",
        received_at=received,
        source_code="2A",
        primary_need="N1",
        factors=[],
        consent="given",
        subject_count=1,
        linkage="new_persons",
        status="decided" if decided else ("in_triage" if case.rag else "received"),
        rag=case.rag,
        rag_set_at=rated if case.rag else None,
        information_due_at=information_due(case.rag, rated) if case.rag else None,
        decision_due_at=decision_due(received),
        decision="nfa" if decided else None,
        decision_reasons=["threshold_not_met"] if decided else None,
        decided_at=rated + dt.timedelta(minutes=index) if decided else None,
        decided_by="user:mash-1" if decided else None,
        sealed=b"\x00",
    )


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=cases,
    now_minutes=st.integers(0, 16 * 48).map(lambda n: n * 30),
    status=st.sampled_from(["open", "decided", "all"]),
)
def test_queue_order_follows_the_rules(
    session: Session, decisions: Decisions, rows: list[Case], now_minutes: int, status: str
) -> None:
    now = START + dt.timedelta(minutes=now_minutes)
    nested = session.begin_nested()
    try:
        made = [make(case, i) for i, case in enumerate(rows)]
        session.add_all(made)
        session.flush()
        listed = triage.queue(session, decisions, OFFICER, now=now, status=status)
        wanted = [
            r for r in made if status == "all" or (status == "decided") == (r.status == "decided")
        ]
        assert [i.id for i in listed.items] == expected_order(wanted, now)
        for item in listed.items:
            row = next(r for r in made if r.id == item.id)
            if row.status == "decided":
                assert item.next_due_at is None and not item.overdue
            else:
                assert item.next_due_at is not None
                assert item.overdue == (item.next_due_at <= now)
    finally:
        nested.rollback()


def test_overdue_red_comes_before_an_earlier_overdue_green(
    session: Session, decisions: Decisions
) -> None:
    now = at(2026, 3, 4, 12, 0)
    green = make(Case(0, "green", 0, decided=False), 0)  # info due Mon+24h: overdue
    red = make(Case(24 * 60 + 30, "red", 0, decided=False), 1)  # Tue 00:30 + 2h: overdue
    fresh = make(Case(2 * 24 * 60 + 11 * 60, None, 0, decided=False), 2)  # due Thu 11:00
    session.add_all([green, red, fresh])
    session.flush()
    items = triage.queue(session, decisions, OFFICER, now=now).items
    assert [i.id for i in items] == [red.id, green.id, fresh.id]
    assert [i.overdue for i in items] == [True, True, False]
