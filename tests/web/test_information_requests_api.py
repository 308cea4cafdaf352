"""Information requests through real HTTP: the MASH asks, the asked agency answers, the MASH
reads the answer; refusals (audited), conflicts, validation, and the queue's statuses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from mash_hub.persons.models import SourceRecord
from mash_hub.referrals.models import InformationRequest, Referral, ReferralSubject
from tests.web.test_referrals_api import ReferralHub, hub, problem

__all__ = ["hub"]

QUESTION = "Zqquestion: anything held on the household at 14 Zqrowan Court, Leeds?"
ANSWER = "Zqanswer: one domestic incident logged in January; no current bail conditions."


def rated_referral(hub: ReferralHub, rag: str = "amber") -> str:
    submitted = hub.submit(hub.partner("school"))
    assert submitted.status_code == 201, submitted.text
    reference: str = submitted.json()["reference"]
    rated = hub.client.put(
        f"/api/v1/referrals/{reference}/rag", json={"rag": rag}, headers=hub.officer
    )
    assert rated.status_code == 200, rated.text
    return reference


def ask(hub: ReferralHub, reference: str, agency: str = "police") -> Any:
    return hub.client.post(
        f"/api/v1/referrals/{reference}/information-requests",
        json={"agency": agency, "question": QUESTION},
        headers=hub.officer,
    )


def test_officer_asks_police_answer_officer_reads(hub: ReferralHub) -> None:
    reference = rated_referral(hub, "amber")
    made = ask(hub, reference)
    assert made.status_code == 201, made.text
    request = made.json()
    due = hub.now.astimezone(dt.UTC) + dt.timedelta(hours=6)
    assert dt.datetime.fromisoformat(request["due_at"]) == due
    assert (request["status"], request["question"], request["answer"]) == ("open", QUESTION, None)

    police = hub.staff("police_officer", "police")
    listed = hub.client.get("/api/v1/information-requests", headers=police)
    assert listed.status_code == 200, listed.text
    assert [(r["id"], r["question"]) for r in listed.json()["requests"]] == [
        (request["id"], QUESTION)
    ]
    # Another agency's staff see none of it and cannot answer it (the same 404 as unknown).
    social = hub.staff("social_worker", "social_care")
    assert hub.client.get("/api/v1/information-requests", headers=social).json()["requests"] == []
    answer_url = f"/api/v1/information-requests/{request['id']}/answer"
    refused = problem(
        hub.client.post(answer_url, json={"outcome": "nothing_held"}, headers=social), 404
    )
    unknown = problem(
        hub.client.post(
            "/api/v1/information-requests/00000000-0000-0000-0000-000000000000/answer",
            json={"outcome": "nothing_held"},
            headers=police,
        ),
        404,
    )
    assert {k: v for k, v in refused.items() if k != "request_id"} == {
        k: v for k, v in unknown.items() if k != "request_id"
    }

    hub.now += dt.timedelta(hours=7)  # past the amber deadline: taken, marked late
    given = hub.client.post(
        answer_url, json={"outcome": "information", "text": ANSWER}, headers=police
    )
    assert given.status_code == 200, given.text
    assert (given.json()["status"], given.json()["answered_late"]) == ("answered", True)
    again = problem(
        hub.client.post(answer_url, json={"outcome": "nothing_held"}, headers=police), 409
    )
    assert again["code"] == "already_answered"

    read = hub.client.get(
        f"/api/v1/referrals/{reference}/information-requests", headers=hub.officer
    )
    assert read.status_code == 200, read.text
    (answered,) = read.json()["requests"]
    assert (answered["outcome"], answered["answer"]) == ("information", ANSWER)
    queue = hub.client.get("/api/v1/referrals/queue", headers=hub.officer).json()
    (item,) = queue["items"]
    assert [(r["agency"], r["status"]) for r in item["information_requests"]] == [
        ("police", "answered")
    ]

    actions = [e.action for e in hub.audit() if e.action.startswith("referral.information")]
    assert actions == [
        "referral.information.request",
        "referral.information.list",
        "referral.information.list",
        "referral.information.answer",
        "referral.information.read",
    ]
    denied = [e.details for e in hub.audit("authz.denied")]
    assert [(d["requested"], d["reason"]) for d in denied] == [
        ("referral.information.answer", "not_asked_agency"),
        ("referral.information.answer", "unknown_request"),
    ]
    everything = " ".join(str(e.details) for e in hub.audit())
    assert "Zq" not in everything
    with hub.database.transaction() as session:
        row = session.get(InformationRequest, given.json()["id"])
        assert row is not None and b"Zq" not in bytes(row.answer or b"")


def test_refusals_and_conflicts(hub: ReferralHub) -> None:
    submitted = hub.submit(hub.partner("school")).json()["reference"]
    not_rated = problem(ask(hub, submitted), 409)
    assert not_rated["code"] == "not_rated" and "RAG" in not_rated["detail"]

    reference = rated_referral(hub)
    police = hub.staff("police_officer", "police")
    for who in (police, hub.partner("school")):
        asked = hub.client.post(
            f"/api/v1/referrals/{reference}/information-requests",
            json={"agency": "police", "question": QUESTION},
            headers=who,
        )
        assert problem(asked, 404)["code"] == "referral_not_found"
    refused = problem(hub.client.get("/api/v1/information-requests", headers=hub.officer), 403)
    assert refused["code"] == "respond_not_permitted"

    bad = hub.client.post(
        f"/api/v1/referrals/{reference}/information-requests",
        json={"agency": "narnia", "question": "short"},
        headers=hub.officer,
    )
    errors = problem(bad, 422)["errors"]
    assert {tuple(e["loc"]) for e in errors} == {("body", "agency"), ("body", "question")}
    assert "narnia" not in bad.text

    request_id = ask(hub, reference).json()["id"]
    url = f"/api/v1/information-requests/{request_id}/answer"
    for document, field in (
        ({"outcome": "information"}, "text"),
        ({"outcome": "nothing_held", "text": ANSWER}, "text"),
    ):
        invalid = problem(hub.client.post(url, json=document, headers=police), 422)
        assert [tuple(e["loc"]) for e in invalid["errors"]] == [("body", field)]
        assert "Zq" not in str(invalid)

    decided = hub.client.post(
        f"/api/v1/referrals/{reference}/decision",
        json={"decision": "nfa", "reasons": ["threshold_not_met"]},
        headers=hub.officer,
    )
    assert decided.status_code == 200, decided.text
    closed = problem(hub.client.post(url, json={"outcome": "nothing_held"}, headers=police), 409)
    assert closed["code"] == "already_decided"
    assert problem(ask(hub, reference), 409)["code"] == "already_decided"


def test_erased_requests_are_listed_without_text_and_cannot_be_answered(hub: ReferralHub) -> None:
    """After a subject of the referral is erased, the MASH's listing and the agency's list
    show the request's codes and times with no text (not a 500), and answering is a 409."""
    reference = rated_referral(hub)
    made = ask(hub, reference).json()
    with hub.database.transaction() as session:
        child = session.scalar(
            select(SourceRecord.person_id)
            .join(ReferralSubject, ReferralSubject.record_id == SourceRecord.id)
            .join(Referral, Referral.id == ReferralSubject.referral_id)
            .where(Referral.reference == reference, ReferralSubject.subject_role == "child")
        )
        assert child is not None
        hub.store.erase_person(session, child, actor="test:eraser", reason="ERA-1")
    listed = hub.client.get(
        f"/api/v1/referrals/{reference}/information-requests", headers=hub.officer
    )
    assert listed.status_code == 200, listed.text
    (row,) = listed.json()["requests"]
    assert (row["id"], row["erased"], row["question"]) == (made["id"], True, None)
    police = hub.staff("police_officer", "police")
    (open_row,) = hub.client.get("/api/v1/information-requests", headers=police).json()["requests"]
    assert (open_row["erased"], open_row["question"]) == (True, None)
    refused = problem(
        hub.client.post(
            f"/api/v1/information-requests/{made['id']}/answer",
            json={"outcome": "nothing_held"},
            headers=police,
        ),
        409,
    )
    assert refused["code"] == "request_erased"
