"""Information requests through the pages: the MASH officer asks an agency on the referral
page, the agency's staff answer on "Information requests for your agency", the officer reads
the answer. Same services (and audit entries) as the API; CSRF, errors and refusals."""

from __future__ import annotations

import datetime as dt
import html
import re

from tests.web.test_referral_pages import Browser, Hub, hub, officer, school, send, summary

__all__ = ["hub", "officer", "school"]

QUESTION = "Zqquestion: anything held on Zqbeverley Whitlock at 14 Zqrowan Court?"
ANSWER = "Zqanswer: one call-out for a domestic argument last month; no arrests."


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def request_id_of(page: str) -> str:
    match = re.search(r'href="/information-requests/([0-9a-f-]{36})"', page)
    assert match, "no request link on the page"
    return match.group(1)


def test_officer_asks_police_answer_and_the_officer_reads_it(
    hub: Hub, school: Browser, officer: Browser
) -> None:
    reference = send(hub, school)
    page = officer.get(f"/triage/{reference}").text
    assert "Give the referral a RAG rating first" in page
    assert 'action="/triage/' + reference + '/information-requests"' not in page
    early = officer.post(
        f"/triage/{reference}/information-requests", {"agency": "police", "question": QUESTION}
    )
    assert early.status_code == 409
    assert "Give the referral a RAG rating before asking agencies" in summary(early.text)

    assert officer.post(f"/triage/{reference}/rag", {"rag": "red"}).status_code == 303
    invalid = officer.post(f"/triage/{reference}/information-requests", {"question": "short"})
    assert invalid.status_code == 400
    assert " ".join(summary(invalid.text).split()) == (
        "There is a problem Select which agency to ask Question must be at least 10 characters"
    )
    assert 'href="#agency"' in invalid.text and 'href="#question"' in invalid.text
    no_csrf = officer.post(
        f"/triage/{reference}/information-requests",
        {"agency": "police", "question": QUESTION},
        with_csrf=False,
    )
    assert no_csrf.status_code == 403
    assert hub.entries("referral.information.request") == []

    sent = officer.post(
        f"/triage/{reference}/information-requests", {"agency": "police", "question": QUESTION}
    )
    assert sent.status_code == 303
    assert sent.headers["location"] == f"/triage/{reference}?done=request"
    (made,) = hub.entries("referral.information.request")
    assert made.details["asked_agency"] == "police"
    shown = text_of(officer.get(f"/triage/{reference}?done=request").text)
    assert "Information request sent" in shown
    assert "Police Status Open" in shown and "2 h 0 min left" in shown
    assert QUESTION in shown
    queue = text_of(officer.get("/triage").text)
    assert "Police: Open 2 h 0 min left" in queue

    # A social worker sees no request for social care, and cannot open the police one.
    social = Browser(hub, "sw.one", "social_worker", "social_care")
    assert "There are no open requests for your agency" in social.get("/information-requests").text
    police = Browser(hub, "pc.one", "police_officer", "police")
    listing = police.get("/information-requests")
    assert listing.status_code == 200
    assert 'href="/information-requests"' in listing.text  # in the navigation
    request_id = request_id_of(listing.text)
    assert QUESTION in html.unescape(listing.text) and "2 h 0 min left" in listing.text
    assert social.get(f"/information-requests/{request_id}").status_code == 404
    assert (
        social.post(f"/information-requests/{request_id}", {"outcome": "nothing_held"}).status_code
        == 404
    )
    assert hub.denials("referral.information.answer")[-1].details["reason"] == "not_asked_agency"
    assert police.get("/information-requests/not-a-uuid").status_code == 404

    form = police.get(f"/information-requests/{request_id}")
    assert form.status_code == 200 and 'name="csrf_token"' in form.text
    empty = police.post(f"/information-requests/{request_id}", {"outcome": "information"})
    assert empty.status_code == 400
    assert "Enter the information your agency holds" in summary(empty.text)
    nothing_chosen = police.post(f"/information-requests/{request_id}", {"answer": ANSWER})
    assert "Select what your agency holds" in summary(nothing_chosen.text)
    assert "Zq" not in summary(nothing_chosen.text)
    assert (
        police.post(
            f"/information-requests/{request_id}",
            {"outcome": "information", "answer": ANSWER},
            with_csrf=False,
        ).status_code
        == 403
    )
    assert hub.entries("referral.information.answer") == []

    hub.now += dt.timedelta(hours=3)  # red: two hours to answer; a late answer is taken
    given = police.post(
        f"/information-requests/{request_id}", {"outcome": "information", "answer": ANSWER}
    )
    assert given.status_code == 303
    assert given.headers["location"] == "/information-requests?done=answered"
    after = police.get("/information-requests?done=answered").text
    assert "Your answer has been sent to the MASH" in after
    assert "There are no open requests for your agency" in after
    (answered,) = hub.entries("referral.information.answer")
    assert answered.details["late"] is True
    again = police.post(f"/information-requests/{request_id}", {"outcome": "nothing_held"})
    assert again.status_code == 409

    read = text_of(officer.get(f"/triage/{reference}").text)
    assert "Answered Late" in read and ANSWER in read and "(after the deadline)" in read
    assert "Police: Answered" in text_of(officer.get("/triage").text)
    assert all("Zq" not in str(e.details) for e in hub.audit())


def test_only_agency_staff_get_the_agency_page_and_only_the_mash_asks(
    hub: Hub, school: Browser, officer: Browser
) -> None:
    assert "Information requests" not in officer.get("/").text
    refused = officer.get("/information-requests")
    assert refused.status_code == 403
    assert hub.denials("referral.information.list")[-1].details["role"] == "mash_officer"
    reference = send(hub, school)
    asked = school.post(
        f"/triage/{reference}/information-requests", {"agency": "police", "question": QUESTION}
    )
    assert asked.status_code == 404
    assert hub.denials("referral.information.request")[-1].details["role"] == "partner_agency"
    assert school.get("/information-requests").status_code == 403
    police = Browser(hub, "pc.two", "police_officer", "police")
    assert "Information requests for your agency" in police.get("/").text
