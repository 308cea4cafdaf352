"""The reviewer's pages through real HTTP calls: the queue, a task's two records side by side
after a purpose (masked, differences tagged, withheld groups named, never decrypted), the
decision with its errors, CSRF; every step audited exactly as the review API, and every other
role refused with a page (audited)."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mash_hub.db.engine import Database
from mash_hub.matching.models import LinkDecision, LinkRun, ReviewTask
from mash_hub.matching.review import load_constraints
from mash_hub.persons.store import PersonStore
from tests.authz.conftest import add_person
from tests.web.test_pages import PURPOSE_FORM, PagesHub, csrf
from tests.web.test_review_api import NOT_REVIEWERS, ReviewHub

TASK_LINK = re.compile(r'href="/review/([0-9a-f-]{36})/purpose"')
DECISION_FORM = {"decision": "different", "reason_code": "different_details",
                 "reason": "Different dates of birth on the council's school record"}  # fmt: skip


class ReviewPagesHub(ReviewHub, PagesHub):
    """Two review tasks (see :class:`ReviewHub`) and the pages signed in as a MASH officer."""

    def task_page(self, task_id: uuid.UUID, token: str, **extra: str) -> str:
        response = self.client.post(
            f"/review/{task_id}", data={**PURPOSE_FORM, "csrf_token": token, **extra}
        )
        assert response.status_code == 200, response.text
        return str(response.text)


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[ReviewPagesHub]:
    yield ReviewPagesHub(committing_database, tmp_path)


@pytest.fixture
def decrypted(hub: ReviewPagesHub, monkeypatch: pytest.MonkeyPatch) -> list[tuple[uuid.UUID, str]]:
    seen: list[tuple[uuid.UUID, str]] = []
    store: PersonStore = hub.store
    original = store._open_joined

    def spy(rows: Any, groups: Any) -> Any:
        opened = original(rows, groups)
        seen.extend((record.id, group) for record in opened for group in record.groups)
        return opened

    monkeypatch.setattr(store, "_open_joined", spy)
    return seen


def text_of(page: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_queue_lists_open_tasks_strongest_first_and_is_audited(hub: ReviewPagesHub) -> None:
    hub.sign_in("reviewer", "mash_officer", "council")
    response = hub.client.get("/review")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    links = TASK_LINK.findall(page)
    assert links == [str(hub.twins), str(hub.police_council)]  # 9.5 before 4.2
    assert "Review band" in page
    assert "+9.5" in page and "+4.2" in page and "same date of birth +6.0" in page
    (entry,) = hub.audit("linkage.review.list")
    assert entry.details == {"status": "open", "count": 2}
    assert 'href="/review"' in hub.client.get("/").text  # the reviewer's navigation
    for value in hub.secrets():
        assert value not in page


def test_twins_are_labelled_as_the_linkage_names_them(hub: ReviewPagesHub) -> None:
    hub.sign_in("reviewer", "mash_officer", "council")
    page = text_of(hub.client.get("/review").text)
    assert "Possible twins +9.5" in page and "possible_twin" not in page


def add_open_tasks(hub: ReviewPagesHub, wanted: int) -> list[str]:
    """More open tasks, every one a pair of real records, weaker than the hub's two; the ids
    of all open tasks, strongest first."""
    with hub.database.transaction() as session:
        people = [hub.household, hub.other, *(add_person(session, hub.store) for _ in range(2))]
        records = sorted((r for p in people for r in p.records.values()), key=str)
        taken = {(t.record_id_l, t.record_id_r) for t in session.scalars(select(ReviewTask))}
        pairs = [(a, b) for i, a in enumerate(records) for b in records[i + 1 :]]
        free = [pair for pair in pairs if pair not in taken][:wanted]
        assert len(free) == wanted
        run = LinkRun(actor="test", model_version=1, model_definition="t", counts={})
        session.add(run)
        session.flush()
        for n, (left, right) in enumerate(free):
            session.add(
                ReviewTask(record_id_l=left, record_id_r=right, created_run_id=run.id,
                           last_run_id=run.id, kind="review", match_weight=4.0 - n / 100,
                           weights={"dob": 6.0}, explanation="same date of birth +6.0",
                           status="open")
            )  # fmt: skip
        session.flush()
        return [
            str(task_id)
            for task_id in session.scalars(
                select(ReviewTask.id)
                .where(ReviewTask.status == "open")
                .order_by(ReviewTask.match_weight.desc())
            )
        ]


def test_the_queue_is_paged_with_the_govuk_pagination(hub: ReviewPagesHub) -> None:
    expected = add_open_tasks(hub, 118)
    assert len(expected) == 120
    hub.sign_in("reviewer", "mash_officer", "council")
    first = hub.client.get("/review")
    assert first.status_code == 200, first.text
    assert "Open review tasks (120)" in first.text and "Page 1 of 2" in first.text
    assert 'class="govuk-pagination"' in first.text
    assert 'href="/review?page=2" rel="next"' in first.text and 'rel="prev"' not in first.text
    assert 'aria-current="page"' in first.text
    second = hub.client.get("/review?page=2")
    assert second.status_code == 200, second.text
    assert "Page 2 of 2, tasks 101 to 120" in second.text
    assert 'href="/review?page=1" rel="prev"' in second.text and 'rel="next"' not in second.text
    assert ">Review task 101</a>" in second.text and ">Review task 120</a>" in second.text
    shown = TASK_LINK.findall(first.text) + TASK_LINK.findall(second.text)
    assert len(TASK_LINK.findall(first.text)) == 100 and shown == expected
    listed = hub.audit("linkage.review.list")
    assert [e.details for e in listed] == [
        {"status": "open", "count": 100},
        {"status": "open", "count": 20, "offset": 100},
    ]
    past_the_end = hub.client.get("/review?page=9")
    assert TASK_LINK.findall(past_the_end.text) == expected[100:]
    not_a_number = hub.client.get("/review?page=two")
    assert TASK_LINK.findall(not_a_number.text) == expected[:100]


def test_a_task_shows_both_records_after_a_purpose_with_differences_and_evidence(
    hub: ReviewPagesHub,
) -> None:
    token = hub.sign_in("reviewer", "mash_officer", "council")
    form = hub.client.get(f"/review/{hub.police_council}/purpose")
    assert form.status_code == 200 and 'name="purpose"' in form.text
    page = hub.task_page(hub.police_council, token)
    text = text_of(page)
    for source, household in (("police", hub.household), ("council", hub.other)):
        for group in ("identity", "identifiers", "contact"):
            assert household.values[(source, group)] in text
        assert household.values[(source, "details.case")] not in text
    assert text.count("Differs") == 3 + 1  # each review group differs, plus the caption
    assert "same date of birth +6.0" in text and "similar family name -1.8" in text
    assert "Withheld" not in text
    assert 'name="decision"' in page and 'name="reason_code"' in page and 'name="reason"' in page
    assert csrf(page) == token
    (entry,) = hub.audit("linkage.review.show")
    assert entry.details["purpose"] == {"code": "mash_triage"}
    assert entry.details["role"] == "mash_officer" and len(entry.details["purpose_text"]) == 2
    assert "Triage" not in str(entry.details)


def test_withheld_groups_are_named_and_never_decrypted(
    hub: ReviewPagesHub, decrypted: list[tuple[uuid.UUID, str]]
) -> None:
    hub.publish(
        "p, mash_officer, *, police, contact, read, deny\n"
        "p, mash_officer, *, police, identifiers, read, deny\n"
    )
    token = hub.sign_in("reviewer", "mash_officer", "council")
    text = text_of(hub.task_page(hub.police_council, token))
    assert "Police record: identifiers withheld from your role" in text
    assert "Police record: contact withheld from your role" in text
    assert hub.household.values[("police", "contact")] not in text
    assert hub.household.values[("police", "identity")] in text
    police = hub.household.records["police"]
    assert {(r, g) for r, g in decrypted if r == police} == {(police, "identity")}
    assert text.count("Differs") == 1 + 1  # identity only: withheld values are not compared


def test_the_purpose_is_required_and_checked_like_the_api(hub: ReviewPagesHub) -> None:
    token = hub.sign_in("reviewer", "mash_officer", "council")
    missing = hub.client.post(f"/review/{hub.police_council}", data={"csrf_token": token})
    assert missing.status_code == 400
    assert "govuk-error-summary" in missing.text and "Select why you need to see" in missing.text
    made_up = hub.client.post(
        f"/review/{hub.police_council}",
        data={"csrf_token": token, "purpose": "referral", "referral_reference": "REF-2026-999"},
    )
    assert made_up.status_code == 400 and "Enter the reference of a current referral" in (
        made_up.text
    )
    assert "REF-2026-999" not in made_up.text.replace('value="REF-2026-999"', "")
    (denied,) = hub.audit("authz.denied")
    assert denied.details["reason"] == "purpose_referral_invalid"
    assert denied.details["requested"] == "linkage.review.show"
    assert hub.audit("linkage.review.show") == []


def test_a_decision_needs_its_fields_and_shows_the_errors_with_the_records(
    hub: ReviewPagesHub,
) -> None:
    token = hub.sign_in("reviewer", "mash_officer", "council")
    response = hub.client.post(
        f"/review/{hub.police_council}/decision",
        data={**PURPOSE_FORM, "csrf_token": token, "decision": "same", "reason_code": "twin"},
    )
    assert response.status_code == 400
    text = text_of(response.text)
    assert "There is a problem" in text
    assert "Select a reason that goes with ‘same person’" in text
    assert "Enter the reason for your decision" in text
    assert 'href="#reason_code"' in response.text and 'href="#reason"' in response.text
    assert hub.household.values[("police", "identity")] in text  # the records, again
    assert len(hub.audit("linkage.review.show")) == 1  # ... shown again, audited again
    assert hub.audit("linkage.review.decide") == []
    nothing = hub.client.post(
        f"/review/{hub.police_council}/decision", data={**PURPOSE_FORM, "csrf_token": token}
    )
    assert "Select whether the two records are the same person" in text_of(nothing.text)
    with hub.database.transaction() as session:
        assert session.scalars(select(LinkDecision)).all() == []


def test_a_decision_writes_what_the_api_writes(hub: ReviewPagesHub) -> None:
    token = hub.sign_in("reviewer", "mash_officer", "council")
    response = hub.client.post(
        f"/review/{hub.police_council}/decision",
        data={**PURPOSE_FORM, "csrf_token": token, **DECISION_FORM},
    )
    assert response.status_code == 200, response.text
    assert "Decision recorded" in response.text and "Not the same person" in response.text
    api = hub.call("POST", f"/{hub.twins}/decision", json=DECISION_FORM)
    assert api.status_code == 201, api.text
    page_entry, api_entry = hub.audit("linkage.review.decide")
    assert page_entry.actor.startswith("user:") and page_entry.subject_id == str(hub.police_council)
    assert set(page_entry.details) == set(api_entry.details)
    same = {
        k
        for k in page_entry.details
        if k not in {"record_id_l", "record_id_r", "records", "decision_id"}
    }
    assert {k: page_entry.details[k] for k in same} == {k: api_entry.details[k] for k in same}
    assert "Different dates" not in str(page_entry.details)
    with hub.database.transaction() as session:
        task = session.get(ReviewTask, hub.police_council)
        assert task is not None and task.status == "decided"
        (made,) = session.scalars(
            select(LinkDecision).where(LinkDecision.task_id == hub.police_council)
        ).all()
        assert made.decision == "different" and made.reason_code == "different_details"
        assert made.reason_ciphertext is not None
        assert b"Different dates" not in bytes(made.reason_ciphertext)
        pair = (str(task.record_id_l), str(task.record_id_r))
        assert pair in load_constraints(session).cannot_link
    again = text_of(hub.task_page(hub.police_council, token))
    assert "Decision in force" in again and DECISION_FORM["reason"] in again


def test_a_decision_without_the_csrf_token_is_refused(hub: ReviewPagesHub) -> None:
    hub.sign_in("reviewer", "mash_officer", "council")
    for data in ({**PURPOSE_FORM, **DECISION_FORM},
                 {**PURPOSE_FORM, **DECISION_FORM, "csrf_token": "0" * 64}):  # fmt: skip
        response = hub.client.post(f"/review/{hub.police_council}/decision", data=data)
        assert response.status_code == 403
        assert "This form could not be accepted" in response.text
    shown = hub.client.post(f"/review/{hub.police_council}", data=PURPOSE_FORM)
    assert shown.status_code == 403
    with hub.database.transaction() as session:
        assert session.scalars(select(LinkDecision)).all() == []
    assert hub.audit("linkage.review.decide") == [] and hub.audit("linkage.review.show") == []


@pytest.mark.parametrize(("role", "agency"), NOT_REVIEWERS[:3])
def test_other_roles_are_refused_with_a_page_and_audited(
    hub: ReviewPagesHub, decrypted: list[tuple[uuid.UUID, str]], role: str, agency: str
) -> None:
    token = hub.sign_in(f"{role}-user", role, agency)
    assert 'href="/review"' not in hub.client.get("/").text
    answers = [
        hub.client.get("/review"),
        hub.client.post(f"/review/{hub.police_council}", data={**PURPOSE_FORM,
                                                               "csrf_token": token}),
        hub.client.post(f"/review/{hub.police_council}/decision",
                        data={**PURPOSE_FORM, **DECISION_FORM, "csrf_token": token}),
    ]  # fmt: skip
    for answer in answers:
        assert answer.status_code == 403
        assert "You cannot review linkage" in answer.text
    assert hub.client.get(f"/review/{hub.police_council}/purpose").status_code == 403
    denied = hub.audit("authz.denied")
    assert [d.details["requested"] for d in denied] == [
        "linkage.review.list",
        "linkage.review.show",
        "linkage.review.decide",
        "linkage.review.show",  # the purpose form
    ]
    assert {(d.details["role"], d.details["reason"]) for d in denied} == {
        (role, "role_not_permitted")
    }
    assert decrypted == []


def test_an_unknown_task_is_a_not_found_page(hub: ReviewPagesHub) -> None:
    token = hub.sign_in("reviewer", "mash_officer", "council")
    missing = uuid.uuid4()
    response = hub.client.post(f"/review/{missing}", data={**PURPOSE_FORM, "csrf_token": token})
    assert response.status_code == 404 and "Review task not found" in response.text
