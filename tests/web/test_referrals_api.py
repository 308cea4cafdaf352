"""Referrals through real HTTP calls: partner submission and status, MASH triage, the person
view's referral list, validation, idempotency under concurrency, and the audit trail."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.versions import publish
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db.engine import Database
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.referrals.models import Referral, ReferralSubject
from mash_hub.users.service import add_client
from tests.authz.conftest import BASELINE
from tests.referrals.conftest import CONCERNS, body, personal_values
from tests.referrals.test_deadlines import london, working_seconds
from tests.web.test_auth import Hub

PURPOSE = {"X-Purpose-Code": "mash_triage", "X-Purpose-Text": "Triage of a school referral"}


class ReferralHub(Hub):
    """A hub with keys, the baseline policy, a settable clock and credentials per caller."""

    def __init__(self, database: Database, tmp_path: Path) -> None:
        super().__init__(database, tmp_path, rate_limit_per_minute=100_000)
        self.store = PersonStore.from_provider(
            LocalKeyringProvider.create(tmp_path / "keyring.json")
        )
        self.app.state.person_store = self.store
        self.app.state.linkage_model_unavailable = True  # no model: subjects become persons
        self.now = london(2026, 3, 10, 14, 10)
        self.app.state.clock = lambda: self.now
        with database.transaction() as session:
            publish(session, BASELINE, actor="test:publisher")
        self.credentials: dict[str, str] = {}

    def partner(self, name: str, agency: str = "education") -> dict[str, str]:
        """An API client (one per name) of ``agency``."""
        if name not in self.credentials:
            with self.database.transaction() as session:
                _, key = add_client(session, agency)
            self.credentials[name] = key
        return {"Authorization": f"Bearer {self.credentials[name]}"}

    def staff(self, role: str, agency: str) -> dict[str, str]:
        name = f"{role}.{agency}"
        if name not in self.credentials:
            self.credentials[name] = self.hub_token(self.user(name, role, agency))
        return {"Authorization": f"Bearer {self.credentials[name]}"}

    @property
    def officer(self) -> dict[str, str]:
        return self.staff("mash_officer", "council")

    def submit(
        self, auth: dict[str, str], document: dict[str, Any] | None = None, key: str | None = None
    ) -> Any:
        headers = dict(auth)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post("/api/v1/referrals", json=document or body(), headers=headers)

    def audit(self, action: str | None = None) -> list[AuditEntry]:
        with self.database.transaction() as session:
            query = select(AuditEntry).order_by(AuditEntry.seq)
            if action is not None:
                query = query.where(AuditEntry.action == action)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def count(self) -> int:
        with self.database.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(Referral)) or 0)


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[ReferralHub]:
    yield ReferralHub(committing_database, tmp_path)


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    return document


def test_partner_submits_retries_safely_and_reads_only_the_status(hub: ReferralHub) -> None:
    school = hub.partner("school")
    first = hub.submit(school, key="3b1f6c2e-retry")
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert set(receipt) == {"id", "reference", "status", "received_at"}
    assert receipt["status"] == "received"
    assert first.headers["Location"] == f"/api/v1/referrals/{receipt['reference']}/status"

    retry = hub.submit(school, key="3b1f6c2e-retry")
    assert retry.status_code == 201 and retry.json() == receipt
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert hub.count() == 1

    changed = body(concerns=CONCERNS + " Further bruising seen today.")
    reused = problem(hub.submit(school, changed, key="3b1f6c2e-retry"), 422)
    assert reused["code"] == "idempotency_key_reused" and hub.count() == 1

    status = hub.client.get(f"/api/v1/referrals/{receipt['reference']}/status", headers=school)
    assert status.status_code == 200, status.text
    assert status.json() == {
        "reference": receipt["reference"],
        "status": "received",
        "received_at": receipt["received_at"],
        "feedback": [],
    }
    submits = hub.audit("referral.submit")
    assert [e.details["replayed"] for e in submits] == [False, True]
    assert all(e.actor.startswith("client:") for e in submits)
    assert len(hub.audit("referral.status")) == 1


def test_another_partner_gets_the_same_404_as_for_an_unknown_reference(hub: ReferralHub) -> None:
    reference = hub.submit(hub.partner("school")).json()["reference"]
    answers = [
        hub.client.get(f"/api/v1/referrals/{reference}/status", headers=auth)
        for auth in (
            hub.partner("other-school"),  # the same agency, another client
            hub.partner("gp", "health"),
            hub.staff("police_officer", "police"),  # may see status, but not of this one
            hub.staff("auditor", "council"),
        )
    ]
    answers.append(
        hub.client.get("/api/v1/referrals/R-2026-0000ZZZZ/status", headers=hub.partner("gp"))
    )
    answers.append(
        hub.client.get("/api/v1/referrals/not-a-reference/status", headers=hub.partner("gp"))
    )
    # Triage endpoints: a partner, even the submitter, gets the same answer.
    school = hub.partner("school")
    answers.append(hub.client.get(f"/api/v1/referrals/{reference}", headers=school))
    answers.append(
        hub.client.put(f"/api/v1/referrals/{reference}/rag", json={"rag": "green"}, headers=school)
    )
    bodies = [{k: v for k, v in problem(a, 404).items() if k != "request_id"} for a in answers]
    assert all(b == bodies[0] for b in bodies), bodies
    assert bodies[0]["code"] == "referral_not_found"
    queue = problem(hub.client.get("/api/v1/referrals/queue", headers=school), 403)
    assert queue["code"] == "triage_not_permitted"
    reasons = [e.details["reason"] for e in hub.audit("authz.denied")]
    assert reasons == [
        "not_submitter",
        "not_submitter",
        "not_submitter",
        "role_not_permitted",
        "unknown_referral",
        "unknown_referral",
        "role_not_permitted",
        "role_not_permitted",
        "role_not_permitted",
    ]
    assert hub.audit("referral.status") == []


def test_officer_triage_and_feedback_the_referrer_then_sees(hub: ReferralHub) -> None:
    school = hub.partner("school")
    hub.now = london(2026, 4, 2, 11, 0)  # the Thursday before Easter
    easter = hub.submit(school).json()["reference"]
    hub.now = london(2026, 4, 3, 9, 0)  # Good Friday
    friday = hub.submit(school).json()["reference"]
    hub.now = london(2026, 4, 7, 9, 30)  # Tuesday after Easter Monday

    queue = hub.client.get("/api/v1/referrals/queue", headers=hub.officer)
    assert queue.status_code == 200, queue.text
    items = {i["reference"]: i for i in queue.json()["items"]}
    assert dt.datetime.fromisoformat(items[easter]["decision_due_at"]) == london(2026, 4, 7, 11)
    assert dt.datetime.fromisoformat(items[friday]["decision_due_at"]) == london(2026, 4, 8, 0)
    assert [i["reference"] for i in queue.json()["items"]] == [easter, friday]
    assert not items[easter]["overdue"]

    rag = hub.client.put(
        f"/api/v1/referrals/{friday}/rag", json={"rag": "red"}, headers=hub.officer
    )
    assert rag.status_code == 200, rag.text
    assert rag.json()["status"] == "in_triage"
    assert dt.datetime.fromisoformat(rag.json()["information_due_at"]) == london(2026, 4, 7, 11, 30)
    hub.now = london(2026, 4, 7, 11, 45)  # red information now overdue; the other not yet
    order = [
        i["reference"]
        for i in hub.client.get("/api/v1/referrals/queue", headers=hub.officer).json()["items"]
    ]
    assert order == [friday, easter]

    detail = hub.client.get(f"/api/v1/referrals/{friday}", headers=hub.officer)
    assert detail.status_code == 200, detail.text
    view = detail.json()
    assert view["concerns"] == CONCERNS
    assert view["referral"]["rag"] == "red" and view["referral"]["overdue"] is True
    assert view["subjects"][0]["groups"]["identity"]["family_name"] == "Zqwhitlock"
    assert view["consent_reason"] and view["referrer"]["job_title"]

    decision: dict[str, Any] = {
        "decision": "s17_assessment",
        "reasons": ["child_in_need"],
        "reason_text": "Zqreason: needs assessment; family engaged with the school.",
    }
    decided = hub.client.post(
        f"/api/v1/referrals/{friday}/decision", json=decision, headers=hub.officer
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "decided"
    twice = problem(
        hub.client.post(f"/api/v1/referrals/{friday}/decision", json=decision, headers=hub.officer),
        409,
    )
    assert twice["code"] == "already_decided"
    note = "Passed to the children's social care assessment team on 7 April."
    given_ = hub.client.post(
        f"/api/v1/referrals/{friday}/feedback", json={"text": note}, headers=hub.officer
    )
    assert given_.status_code == 201, given_.text

    status = hub.client.get(f"/api/v1/referrals/{friday}/status", headers=school).json()
    assert status["status"] == "decided"
    assert [f["text"] for f in status["feedback"]] == [note]
    assert set(status) == {"reference", "status", "received_at", "feedback"}
    text = json.dumps(status)
    for value in personal_values():
        assert value not in text  # no data about anyone, no match results
    open_items = hub.client.get("/api/v1/referrals/queue", headers=hub.officer).json()["items"]
    assert [i["reference"] for i in open_items] == [easter]

    actions = [e.action for e in hub.audit()]
    for action in (
        "referral.submit",
        "referral.triage.list",
        "referral.triage.rag",
        "referral.triage.view",
        "referral.triage.decision",
        "referral.triage.feedback",
        "referral.status",
    ):
        assert action in actions, action
    logged = json.dumps([e.details for e in hub.audit()])
    for value in [*personal_values(), note, decision["reason_text"]]:
        assert value not in logged


@settings(
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    received=st.datetimes(
        min_value=dt.datetime(2026, 3, 20),
        max_value=dt.datetime(2027, 1, 10),
        timezones=st.just(dt.UTC),
    ),
    rag=st.sampled_from(["red", "amber", "green"]),
    rated_after=st.integers(0, 3 * 24 * 60),
)
def test_deadlines_through_the_api_across_weekends_and_bank_holidays(
    hub: ReferralHub, received: dt.datetime, rag: str, rated_after: int
) -> None:
    hub.now = received
    reference = hub.submit(hub.partner("school")).json()["reference"]
    hub.now = received + dt.timedelta(minutes=rated_after)
    item = hub.client.put(
        f"/api/v1/referrals/{reference}/rag", json={"rag": rag}, headers=hub.officer
    ).json()
    decision_due = dt.datetime.fromisoformat(item["decision_due_at"])
    information_due = dt.datetime.fromisoformat(item["information_due_at"])
    assert working_seconds(received, decision_due) == 24 * 3600
    assert working_seconds(received, decision_due - dt.timedelta(minutes=1)) < 24 * 3600
    assert information_due - hub.now == dt.timedelta(hours={"red": 2, "amber": 6, "green": 24}[rag])
    assert item["next_due_at"] == min(
        item["decision_due_at"], item["information_due_at"], key=dt.datetime.fromisoformat
    )
    assert item["overdue"] is (dt.datetime.fromisoformat(item["next_due_at"]) <= hub.now)


def test_validation_errors_name_the_field_and_never_echo_the_value(hub: ReferralHub) -> None:
    school = hub.partner("school")
    bad = body()
    child = bad["subjects"][0]
    child["nhs_number"] = "4010232138"  # wrong check digit
    child["date_of_birth"] = "2099-01-01"
    child["addresses"][0]["postcode"] = "ZZ99 ZQX"
    bad["subjects"][1]["email"] = "zqbev@@example"
    bad["source"] = "ZQ"
    bad["factors"] = ["3C", "99Z"]
    bad["referrer"]["zq_extra"] = "Zqsmuggled"
    response = hub.submit(school, bad)
    document = problem(response, 422)
    assert document["code"] == "validation_failed"
    locs = {tuple(e["loc"]) for e in document["errors"]}
    assert locs == {
        ("body", "subjects", 0, "nhs_number"),
        ("body", "subjects", 0, "date_of_birth"),
        ("body", "subjects", 0, "addresses", 0, "postcode"),
        ("body", "subjects", 1, "email"),
        ("body", "source"),
        ("body", "factors", 1),
        ("body", "referrer", "<unknown>"),  # a made-up field's name is not echoed
    }
    assert "zq_extra" not in response.text
    for value in ("4010232138", "2099-01-01", "ZZ99 ZQX", "zqbev@@example", "99Z", "Zqsmuggled"):
        assert value not in response.text, value
    assert '"ZQ"' not in response.text

    cross = body(consent={"state": "not_given"}, subjects=[{"role": "sibling", "sex": "M"}])
    document = problem(hub.submit(school, cross), 422)
    assert {tuple(e["loc"]) for e in document["errors"]} == {
        ("body", "subjects", 0, "family_name"),
        ("body", "subjects"),
        ("body", "consent", "reason"),
    }
    key = problem(hub.submit(school, key="Zq whitlock referral"), 400)
    assert key["code"] == "bad_key" and "Zq" not in json.dumps(key)
    rag = problem(
        hub.client.put(
            "/api/v1/referrals/R-2026-0000ZZZZ/rag", json={"rag": "purple"}, headers=hub.officer
        ),
        422,
    )
    assert [e["loc"] for e in rag["errors"]] == [["body", "rag"]]
    assert hub.count() == 0 and hub.audit("referral.submit") == []


def test_concurrent_identical_retries_create_one_referral(hub: ReferralHub) -> None:
    school = hub.partner("school")
    barrier = threading.Barrier(4)
    answers: list[Any] = []
    lock = threading.Lock()

    def post() -> None:
        client = TestClient(hub.app)
        barrier.wait()
        response = client.post(
            "/api/v1/referrals", json=body(), headers={**school, "Idempotency-Key": "same-key-1"}
        )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["reference"] for a in answers}) == 1
    assert sorted(a.headers.get("Idempotent-Replayed", "false") for a in answers) == [
        "false",
        "true",
        "true",
        "true",
    ]
    assert hub.count() == 1
    with hub.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ReferralSubject)) == 2


def test_the_person_view_lists_referrals_and_shows_concerns_only_where_allowed(
    hub: ReferralHub,
) -> None:
    receipt = hub.submit(hub.partner("school")).json()
    hub.client.put(
        f"/api/v1/referrals/{receipt['reference']}/rag", json={"rag": "amber"}, headers=hub.officer
    )
    with hub.database.transaction() as session:
        child_person, parent_person = (
            session.execute(
                select(SourceRecord.person_id)
                .join(ReferralSubject, ReferralSubject.record_id == SourceRecord.id)
                .where(ReferralSubject.referral_id == uuid.UUID(receipt["id"]))
                .order_by(ReferralSubject.position)
            )
            .scalars()
            .all()
        )
    seen: dict[str, Any] = {}
    for role, agency in (
        ("social_worker", "social_care"),
        ("mash_officer", "council"),
        ("police_officer", "police"),
        ("council_officer", "council"),
    ):
        response = hub.client.get(
            f"/api/v1/persons/{child_person}", headers={**hub.staff(role, agency), **PURPOSE}
        )
        assert response.status_code == 200, response.text
        if role in {"police_officer", "council_officer"}:
            # Their mask lacks details.referral: the list, which says what that group says
            # (reference, role, status, RAG), is not shown to them at all.
            assert response.json()["referrals"] == [], role
            assert receipt["reference"] not in response.text
            seen[role] = None
            continue
        (linked,) = response.json()["referrals"]
        assert linked["id"] == receipt["id"] and linked["reference"] == receipt["reference"]
        assert (linked["status"], linked["rag"], linked["subject_role"]) == (
            "in_triage",
            "amber",
            "child",
        )
        seen[role] = linked["concerns"]
        if seen[role] is None:
            assert CONCERNS not in response.text
    assert seen == {
        "social_worker": CONCERNS,
        "mash_officer": CONCERNS,
        "police_officer": None,
        "council_officer": None,
    }
    # Break-glass widens a police officer's view to the referral details, as the policy says.
    glass = {
        **PURPOSE,
        "X-Break-Glass-Justification": "Child at immediate risk tonight; need every detail now.",
    }
    widened = hub.client.get(
        f"/api/v1/persons/{child_person}",
        headers={**hub.staff("police_officer", "police"), **glass},
    )
    assert widened.json()["referrals"][0]["concerns"] == CONCERNS
    # The parent is listed too, without the concerns (they are held on the child's record).
    parent = hub.client.get(
        f"/api/v1/persons/{parent_person}", headers={**hub.officer, **PURPOSE}
    ).json()
    assert [(r["subject_role"], r["concerns"]) for r in parent["referrals"]] == [
        ("parent_carer", None)
    ]
    views = hub.audit("person.view")
    # Each view records the referrals it listed: this one, or none where the list was withheld.
    assert {tuple(v.details["referrals"]) for v in views} == {(receipt["id"],), ()}
