"""The linkage review queue through real HTTP calls: list, show (masked), decide, refusals."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.versions import publish
from mash_hub.db.engine import Database
from mash_hub.matching import review as reviewing
from mash_hub.matching.models import LinkDecision, LinkRun, ReviewTask
from mash_hub.persons.store import PersonStore
from tests.authz.conftest import BASELINE, Household, add_person
from tests.web.test_persons_api import PURPOSE, PURPOSE_TEXT, PersonsHub, assert_problem

REVIEW_GROUPS = {"identity", "identifiers", "contact"}
NOT_REVIEWERS = [
    ("police_officer", "police"),
    ("social_worker", "social_care"),
    ("council_officer", "council"),
    ("auditor", "council"),
    ("admin", "council"),
    ("information_governance", "council"),
    ("partner_agency", "education"),
]


class ReviewHub(PersonsHub):
    """Two synthetic persons and two review tasks between their records."""

    def __init__(self, database: Database, tmp_path: Path) -> None:
        super().__init__(database, tmp_path)
        with database.transaction() as session:
            self.other: Household = add_person(session, self.store)
            run = LinkRun(actor="test", model_version=1, model_definition="t", counts={})
            session.add(run)
            session.flush()
            self.police_council = self._task(session, run.id, "police", "council", 4.2)
            self.twins = self._task(session, run.id, "social_care", "social_care", 9.5)

    def _task(
        self, session: Session, run_id: uuid.UUID, left: str, right: str, weight: float
    ) -> uuid.UUID:
        a, b = self.household.records[left], self.other.records[right]
        task = ReviewTask(
            id=uuid.uuid4(),
            record_id_l=min(a, b, key=str),
            record_id_r=max(a, b, key=str),
            created_run_id=run_id,
            last_run_id=run_id,
            kind="review" if left != right else "possible_twin",
            match_weight=weight,
            weights={"dob": 6.0, "family_name": weight - 6.0},
            explanation=f"same date of birth +6.0; similar family name {weight - 6.0:+.1f}",
            status="open",
        )
        session.add(task)
        return task.id

    def call(
        self,
        method: str,
        path: str,
        role: str = "mash_officer",
        agency: str = "council",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        auth = {"Authorization": f"Bearer {self.token(role, agency)}", **(headers or {})}
        return self.client.request(method, f"/api/v1/review-tasks{path}", headers=auth, **kwargs)

    def secrets(self) -> list[str]:
        return [*self.household.values.values(), *self.other.values.values()]

    def publish(self, extra_rules: str) -> None:
        texts = PolicyTexts(model=BASELINE.model, policy=BASELINE.policy + extra_rules)
        with self.database.transaction() as session:
            publish(session, texts, actor="test:publisher")


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[ReviewHub]:
    yield ReviewHub(committing_database, tmp_path)


@pytest.fixture
def decrypted(hub: ReviewHub, monkeypatch: pytest.MonkeyPatch) -> list[tuple[uuid.UUID, str]]:
    """Every (record id, group) the app's person store decrypts (the real method runs)."""
    seen: list[tuple[uuid.UUID, str]] = []
    store: PersonStore = hub.store
    original = store._open_joined

    def spy(rows: Any, groups: Any) -> Any:
        opened = original(rows, groups)
        seen.extend((record.id, group) for record in opened for group in record.groups)
        return opened

    monkeypatch.setattr(store, "_open_joined", spy)
    return seen


def no_values(hub: ReviewHub, text: str) -> None:
    for value in hub.secrets():
        assert value not in text


def test_the_queue_lists_ids_scores_and_explanations_and_is_audited(hub: ReviewHub) -> None:
    response = hub.call("GET", "")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "open" and body["count"] == 2
    assert [t["id"] for t in body["tasks"]] == [str(hub.twins), str(hub.police_council)]
    first = body["tasks"][0]
    assert first["kind"] == "possible_twin" and first["match_weight"] == 9.5
    assert first["weights"] == {"dob": 6.0, "family_name": 3.5}
    assert first["explanation"].startswith("same date of birth")
    no_values(hub, response.text)
    (entry,) = hub.audit("linkage.review.list")
    assert entry.details == {"status": "open", "count": 2}
    assert entry.actor.startswith("user:")


def test_the_status_filter_and_its_validation(hub: ReviewHub) -> None:
    made = hub.call("POST", f"/{hub.twins}/decision", json={"decision": "different",
                                                             "reason_code": "twin"})  # fmt: skip
    assert made.status_code == 201, made.text
    decided = hub.call("GET", "?status=decided").json()
    assert [t["id"] for t in decided["tasks"]] == [str(hub.twins)]
    assert decided["tasks"][0]["status"] == "decided"
    assert hub.call("GET", "?status=all").json()["count"] == 2
    assert [t["id"] for t in hub.call("GET", "").json()["tasks"]] == [str(hub.police_council)]
    bad = assert_problem(hub.call("GET", "?status=SECRET-STATUS"), 422)
    assert bad["errors"][0]["loc"] == ["query", "status"]
    assert "SECRET-STATUS" not in json.dumps(bad)


def test_a_task_shows_both_records_review_groups_only_and_audits_first(
    hub: ReviewHub, decrypted: list[tuple[uuid.UUID, str]]
) -> None:
    response = hub.call("GET", f"/{hub.police_council}", headers=PURPOSE)
    assert response.status_code == 200, response.text
    body = response.json()
    police, council = hub.household.records["police"], hub.other.records["council"]
    by_id = {uuid.UUID(r["record_id"]): r for r in body["records"]}
    assert set(by_id) == {police, council}
    assert by_id[police]["source"] == "police" and by_id[council]["source"] == "council"
    assert by_id[police]["person_id"] == str(hub.household.person_id)
    for record, values in ((police, hub.household), (council, hub.other)):
        groups = by_id[record]["groups"]
        assert set(groups) == REVIEW_GROUPS  # never the agency's detail groups
        source = by_id[record]["source"]
        assert groups["identity"] == {"value": values.values[(source, "identity")]}
    assert sorted(decrypted) == sorted((r, g) for r in (police, council) for g in REVIEW_GROUPS)
    assert body["purpose"] == {"code": "mash_triage"} and body["decision"] is None
    (entry,) = hub.audit("linkage.review.show")
    assert entry.seq == body["audit_seq"]
    assert entry.subject_id == str(hub.police_council)
    assert entry.details["shown"] == {str(r): sorted(REVIEW_GROUPS) for r in (police, council)}
    assert entry.details["sources"] == {str(police): "police", str(council): "council"}
    assert entry.details["purpose"] == {"code": "mash_triage"}
    assert entry.details["role"] == "mash_officer"
    assert len(entry.details["purpose_text"]) == 2  # sealed once per person, never in clear
    logged = json.dumps(entry.details)
    assert PURPOSE_TEXT not in logged
    no_values(hub, logged)


def test_a_narrower_mask_is_honoured_and_the_rest_is_never_decrypted(
    hub: ReviewHub, decrypted: list[tuple[uuid.UUID, str]]
) -> None:
    hub.publish(
        "p, mash_officer, *, police, contact, read, deny\n"
        "p, mash_officer, *, police, identifiers, read, deny\n"
    )
    body = hub.call("GET", f"/{hub.police_council}", headers=PURPOSE).json()
    police, council = hub.household.records["police"], hub.other.records["council"]
    groups = {uuid.UUID(r["record_id"]): set(r["groups"]) for r in body["records"]}
    assert groups == {police: {"identity"}, council: REVIEW_GROUPS}
    assert {(r, g) for r, g in decrypted if r == police} == {(police, "identity")}
    assert hub.household.values[("police", "contact")] not in json.dumps(body)
    (entry,) = hub.audit("linkage.review.show")
    assert entry.details["shown"][str(police)] == ["identity"]
    assert entry.details["policy_version"] == body["policy_version"] == 2


def test_a_role_granted_review_elsewhere_sees_its_own_mask(hub: ReviewHub) -> None:
    """The action and the mask are separate decisions: a council officer allowed to review
    (not the baseline) still sees only what its read mask allows of each source."""
    hub.publish(
        "p, council_officer, *, *, review_queue, linkage_review, allow\n"
        "p, council_officer, *, police, contact, read, deny\n"
    )
    response = hub.call("GET", f"/{hub.police_council}", "council_officer", "council", PURPOSE)
    assert response.status_code == 200, response.text
    groups = {r["source"]: set(r["groups"]) for r in response.json()["records"]}
    assert groups == {"police": {"identity", "identifiers"}, "council": REVIEW_GROUPS}


def test_a_purpose_is_required_to_show_a_task(
    hub: ReviewHub, decrypted: list[tuple[uuid.UUID, str]]
) -> None:
    body = assert_problem(hub.call("GET", f"/{hub.police_council}"), 400)
    assert body["code"] == "purpose_invalid"
    assert body["errors"][0]["loc"] == ["header", "X-Purpose-Code"]
    bad = assert_problem(
        hub.call(
            "GET",
            f"/{hub.police_council}",
            headers={"X-Purpose-Code": "SECRET-CODE", "X-Purpose-Text": "x"},
        ),
        400,
    )
    assert "SECRET-CODE" not in json.dumps(bad)
    assert decrypted == []
    denied = hub.audit("authz.denied")
    assert [(d.details["reason"], d.details["requested"]) for d in denied] == [
        ("purpose_missing", "linkage.review.show")
    ] * 2
    assert hub.audit("linkage.review.show") == []


@pytest.mark.parametrize(("role", "agency"), NOT_REVIEWERS)
def test_every_other_role_is_refused_and_the_refusal_audited(
    hub: ReviewHub, decrypted: list[tuple[uuid.UUID, str]], role: str, agency: str
) -> None:
    calls = [
        ("GET", "", {}),
        ("GET", f"/{hub.police_council}", {"headers": PURPOSE}),
        ("POST", f"/{hub.police_council}/decision", {"json": {"decision": "same",
                                                               "reason_code": "other"}}),
    ]  # fmt: skip
    bodies = []
    for method, path, kwargs in calls:
        headers = kwargs.pop("headers", None)
        response = hub.call(method, path, role, agency, headers, **kwargs)
        bodies.append(assert_problem(response, 403))
    assert {b["code"] for b in bodies} == {"review_not_permitted"}
    assert decrypted == []
    denied = hub.audit("authz.denied")
    assert [d.details["requested"] for d in denied] == [
        "linkage.review.list",
        "linkage.review.show",
        "linkage.review.decide",
    ]
    assert {(d.details["role"], d.details["reason"]) for d in denied} == {
        (role, "role_not_permitted")
    }
    with hub.database.transaction() as session:
        assert session.scalars(select(LinkDecision)).all() == []


def test_an_unknown_task_is_404_for_a_reviewer(hub: ReviewHub) -> None:
    missing = uuid.uuid4()
    assert assert_problem(hub.call("GET", f"/{missing}", headers=PURPOSE), 404)["code"] == (
        "review_task_not_found"
    )
    response = hub.call("POST", f"/{missing}/decision", json={"decision": "same",
                                                              "reason_code": "other"})  # fmt: skip
    assert assert_problem(response, 404)["code"] == "review_task_not_found"
    assert assert_problem(hub.call("GET", "/not-a-uuid", headers=PURPOSE), 422)


def test_a_decision_is_recorded_encrypted_audited_and_shown_back(hub: ReviewHub) -> None:
    reason = "Police confirm these are two different girls, SECRET-REASON"
    response = hub.call(
        "POST",
        f"/{hub.police_council}/decision",
        json={"decision": "different", "reason_code": "different_details", "reason": reason},
    )
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["task_id"] == str(hub.police_council) and made["decision"] == "different"
    with hub.database.transaction() as session:
        stored = session.get(LinkDecision, uuid.UUID(made["decision_id"]))
        assert stored is not None and stored.reason_ciphertext is not None
        assert b"SECRET-REASON" not in bytes(stored.reason_ciphertext)
        task = session.get(ReviewTask, hub.police_council)
        assert task is not None and task.status == "decided"
        assert stored.actor.startswith("user:")
    (entry,) = hub.audit("linkage.review.decide")
    assert entry.details["decision"] == "different" and entry.details["reason_text"] is True
    assert "SECRET-REASON" not in json.dumps(entry.details)
    shown = hub.call("GET", f"/{hub.police_council}", headers=PURPOSE).json()
    assert shown["decision"]["reason"] == reason
    assert shown["decision"]["reason_code"] == "different_details"
    assert hub.audit("linkage.review.show")[0].details["decision_reason_shown"] is True


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"decision": "same", "reason_code": "twin"}, ["body", "reason_code"]),
        ({"decision": "SECRET-D", "reason_code": "other"}, ["body", "decision"]),
        ({"decision": "same"}, ["body", "reason_code"]),
        ({"decision": "same", "reason_code": "other", "SECRET-K": 1}, ["body", "<unknown>"]),
        ({"decision": "same", "reason_code": "other", "reason": "x" * 2001}, ["body", "reason"]),
    ],
)
def test_invalid_decisions_name_the_field_without_echoing_it(
    hub: ReviewHub, body: dict[str, Any], loc: list[str]
) -> None:
    problem = assert_problem(hub.call("POST", f"/{hub.twins}/decision", json=body), 422)
    assert problem["errors"][0]["loc"] == loc
    assert "SECRET-D" not in json.dumps(problem) and "x" * 50 not in json.dumps(problem)
    assert "SECRET-K" not in json.dumps(problem)  # a made-up field's name is not echoed
    with hub.database.transaction() as session:
        assert session.scalars(select(LinkDecision)).all() == []


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    decision=st.sampled_from(["same", "different"]),
    code=st.one_of(
        st.sampled_from(sorted({c for cs in reviewing.REASON_CODES.values() for c in cs})),
        st.text(min_size=1, max_size=32),
    ),
)
def test_a_reason_code_is_accepted_exactly_when_it_goes_with_the_decision(
    hub: ReviewHub, decision: str, code: str
) -> None:
    response = hub.call(
        "POST", f"/{hub.twins}/decision", json={"decision": decision, "reason_code": code}
    )
    if code in reviewing.REASON_CODES[decision]:
        assert response.status_code == 201, response.text
        with hub.database.transaction() as session:
            latest = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "linkage.review.decide")
                .order_by(AuditEntry.seq.desc())
                .limit(1)
            ).one()
        assert latest.details["reason_code"] == code
    else:
        problem = assert_problem(response, 422)
        # A fixed message, whatever was sent: the submitted code is never echoed.
        allowed = ", ".join(reviewing.REASON_CODES[decision])
        assert problem["errors"] == [
            {
                "loc": ["body", "reason_code"],
                "msg": f"for decision {decision!r} one of: {allowed}",
                "type": "enum",
            }
        ]


def test_the_openapi_document_describes_the_routes(hub: ReviewHub) -> None:
    spec = hub.client.get("/openapi.json").json()
    paths = spec["paths"]
    listed = paths["/api/v1/review-tasks"]["get"]
    shown = paths["/api/v1/review-tasks/{task_id}"]["get"]
    decided = paths["/api/v1/review-tasks/{task_id}/decision"]["post"]
    assert {"200", "403", "503"} <= set(listed["responses"])
    assert {"200", "400", "403", "404"} <= set(shown["responses"])
    assert {"201", "403", "404", "422"} <= set(decided["responses"])
    assert "application/problem+json" in shown["responses"]["404"]["content"]
    assert {p["name"] for p in shown["parameters"]} >= {"X-Purpose-Code", "X-Purpose-Text"}
    assert "ReviewTaskDetail" in spec["components"]["schemas"]
