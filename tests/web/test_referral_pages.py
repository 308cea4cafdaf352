"""The referral pages through real HTTP calls: partner staff signed in with a one-time link
make a referral (errors, idempotent double submit) and follow it; MASH officers triage it.

Each POST writes the audit entries its API call writes, every refusal is audited, a POST
without the CSRF token is refused, and a partner gets nothing but its own referrals."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mash_hub.audit.models import AuditEntry
from mash_hub.db.engine import Database
from mash_hub.users.models import User
from mash_hub.users.service import UserError, add_user, change_user
from mash_hub.users.sessions import issue_login_link
from tests.referrals.conftest import body
from tests.web.test_referrals_api import ReferralHub

CONCERNS = "Zqconcern: she came to school with a bruised arm and is scared to go home."
FEEDBACK = "Thank you. A social worker will visit the family this week."


class Browser:
    """One person's cookies and CSRF token against the hub's app."""

    def __init__(self, hub: ReferralHub, name: str, role: str, agency: str) -> None:
        self.client = TestClient(hub.app)
        with hub.database.transaction() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                user = add_user(session, name, role, agency)
            secret = issue_login_link(session, user, actor="test").secret
            self.subject = f"user:{user.id}"
        signed_in = self.client.post("/sign-in", data={"token": secret}, follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        self.csrf = csrf(self.client.get("/").text)

    def get(self, path: str) -> Any:
        return self.client.get(path, follow_redirects=False)

    def post(self, path: str, data: dict[str, Any], *, with_csrf: bool = True) -> Any:
        form = {**data, "csrf_token": self.csrf} if with_csrf else dict(data)
        return self.client.post(path, data=form, follow_redirects=False)


def csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def form_key(page: str) -> str:
    match = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert match, "no idempotency key on the form"
    return match.group(1)


def referral_form(key: str, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "idempotency_key": key,
        "subjects-0-role": "child",
        "subjects-0-given_names": "Zqamara Jade",
        "subjects-0-family_name": "Zqwhitlock",
        "subjects-0-dob-day": "14",
        "subjects-0-dob-month": "6",
        "subjects-0-dob-year": "2015",
        "subjects-0-line1": "14 Zqrowan Court",
        "subjects-0-town": "Leeds",
        "subjects-0-postcode": "ls6 2qt",
        "subjects-2-role": "parent_carer",
        "subjects-2-given_names": "Zqbeverley",
        "subjects-2-family_name": "Zqwhitlock",
        "concerns": CONCERNS,
        "source": "2A",
        "primary_need": "N1",
        "factors": ["3C", "16A"],
        "referrer-name": "Zqreferrer Teacher",
        "referrer-job_title": "Designated safeguarding lead",
        "consent": "not_sought_risk",
        "consent_reason": "Telling the family could put the child at further risk.",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def reference_of(page: str) -> str:
    match = re.search(r"R-\d{4}-[0-9A-Z]{8}", page)
    assert match, "no reference on the page"
    return match.group(0)


def summary(page: str) -> str:
    """The error summary's text."""
    match = re.search(r'<div class="govuk-error-summary".*?</ul>', page, re.S)
    assert match, "no error summary"
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(0)))


class Hub(ReferralHub):
    def entries(self, action: str) -> list[AuditEntry]:
        return self.audit(action)

    def last_seq(self) -> int:
        entries = self.audit()
        return entries[-1].seq if entries else 0

    def actions_since(self, seq: int) -> list[str]:
        return [e.action for e in self.audit() if e.seq > seq]

    def denials(self, requested: str) -> list[AuditEntry]:
        return [e for e in self.audit("authz.denied") if e.details["requested"] == requested]


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[Hub]:
    yield Hub(committing_database, tmp_path)


@pytest.fixture
def school(hub: Hub) -> Browser:
    return Browser(hub, "dsl.school", "partner_agency", "education")


@pytest.fixture
def officer(hub: Hub) -> Browser:
    return Browser(hub, "mash.officer", "mash_officer", "council")


def send(hub: Hub, who: Browser, **changes: Any) -> str:
    key = form_key(who.get("/referrals/new").text)
    response = who.post("/referrals/new", referral_form(key, **changes))
    assert response.status_code == 201, response.text
    return reference_of(response.text)


# -- partner users ------------------------------------------------------------------------------


def test_partner_users_are_allowed_only_for_partner_agencies(committing_database: Database) -> None:
    with committing_database.transaction() as session:
        user = add_user(session, "gp.lead", "partner_agency", "health")
        assert (user.role, user.agency) == ("partner_agency", "health")
        with pytest.raises(UserError, match="partner agency"):
            add_user(session, "pc.partner", "partner_agency", "police")
        with pytest.raises(UserError, match="unknown role"):
            add_user(session, "wizard", "wizard", "health")
        with pytest.raises(UserError, match="partner agency"):
            change_user(session, "gp.lead", agency="council")


# -- the referral form ------------------------------------------------------------------------


def test_a_partner_sends_a_referral_once_even_when_the_form_is_sent_twice(
    hub: Hub, school: Browser
) -> None:
    page = school.get("/referrals/new")
    assert page.status_code == 200
    assert "2A: Schools" in page.text and "16A: Neglect" in page.text  # codes with meanings
    key = form_key(page.text)
    before = hub.last_seq()
    first = school.post("/referrals/new", referral_form(key))
    assert first.status_code == 201, first.text
    assert hub.actions_since(before) == ["referral.submit"]  # as POST /api/v1/referrals
    assert "Referral sent" in first.text and "govuk-panel" in first.text
    reference = reference_of(first.text)
    again = school.post("/referrals/new", referral_form(key))  # a double click, a refresh
    assert again.status_code == 200
    assert reference_of(again.text) == reference
    assert hub.count() == 1
    submitted = hub.entries("referral.submit")
    assert [e.details["replayed"] for e in submitted] == [False, True]
    assert submitted[0].actor == school.subject
    # The same entry the API writes for the same request.
    api = hub.submit(hub.staff("partner_agency", "health"), body(), key="api-key-1")
    assert api.status_code == 201, api.text
    by_api = hub.entries("referral.submit")[-1]
    assert set(by_api.details) == set(submitted[0].details)
    assert submitted[0].details["subjects"] == 2
    assert submitted[0].details["idempotency_key"] is True
    assert (submitted[0].details["role"], submitted[0].details["agency"]) == (
        "partner_agency",
        "education",
    )
    # The same key with other details is not a second referral either.
    changed = school.post("/referrals/new", referral_form(key, concerns=CONCERNS + " More."))
    assert changed.status_code == 409
    assert "already sent" in summary(changed.text)
    assert hub.count() == 2  # the form's one and the API's one


def test_form_errors_name_the_field_and_never_echo_a_value(hub: Hub, school: Browser) -> None:
    key = form_key(school.get("/referrals/new").text)
    empty = school.post("/referrals/new", {"idempotency_key": key})
    assert empty.status_code == 400
    text = summary(empty.text)
    for message in ("Select who the person is", "Enter what you are worried about",
                    "Select who is referring", "Select main need", "Enter your name",
                    "Select consent"):  # fmt: skip
        assert message in text, message
    assert empty.text.startswith("<!DOCTYPE html>") and "<title>Error:" in empty.text
    for anchor in ("#subjects-0-role", "#concerns", "#source", "#referrer-name", "#consent"):
        assert f'href="{anchor}"' in empty.text, anchor
    assert 'id="concerns-error"' in empty.text  # the inline message

    bad = school.post(
        "/referrals/new",
        referral_form(
            key,
            **{
                "subjects-0-postcode": "ZQBAD1",
                "subjects-0-dob-month": "13",
                "consent_reason": None,
                "concerns": "Zq too short",
            },
        ),
    )
    assert bad.status_code == 400
    text = summary(bad.text)
    assert "Postcode: not a valid UK postcode" in text
    assert "Date of birth must be a real date" in text
    assert text.index("Date of birth") < text.index("Postcode") < text.index("worried")
    assert "What you are worried about must be at least 20 characters" in text
    assert "ZQBAD1" not in text and "Zq too short" not in text
    assert 'href="#subjects-0-postcode"' in bad.text
    # Checks across fields come once each field is valid: no consent reason, no child.
    across = school.post(
        "/referrals/new",
        referral_form(key, consent_reason=None, **{"subjects-0-role": "parent_carer"}),
    )
    assert across.status_code == 400
    text = summary(across.text)
    assert "Enter why consent was not given or not sought" in text
    assert "name at least one child or adult at risk" in text
    assert 'href="#consent_reason"' in across.text and 'href="#subjects-0-role"' in across.text
    assert hub.count() == 0


def test_a_form_without_the_csrf_token_is_refused(hub: Hub, school: Browser) -> None:
    key = form_key(school.get("/referrals/new").text)
    refused = school.post("/referrals/new", referral_form(key), with_csrf=False)
    assert refused.status_code == 403
    assert "could not be accepted" in refused.text
    forged = school.post("/referrals/new", {**referral_form(key), "csrf_token": "0" * 64},
                         with_csrf=False)  # fmt: skip
    assert forged.status_code == 403
    assert hub.count() == 0


# -- the partner's referrals ----------------------------------------------------------------


def test_a_partner_sees_only_its_own_referrals(hub: Hub, school: Browser) -> None:
    mine = send(hub, school)
    other = Browser(hub, "dsl.other", "partner_agency", "education")
    theirs = send(hub, other)
    listing = school.get("/referrals")
    assert listing.status_code == 200
    assert mine in listing.text and theirs not in listing.text
    assert "Received" in listing.text and "None yet" in listing.text
    listed = hub.entries("referral.status.list")
    assert listed[-1].actor == school.subject and listed[-1].details["count"] == 1
    page = school.get(f"/referrals/{mine}")
    assert page.status_code == 200 and "No feedback yet" in page.text
    assert hub.entries("referral.status")[-1].details["reference"] == mine
    # Someone else's referral is not found, and the refusal is audited.
    refused = school.get(f"/referrals/{theirs}")
    assert refused.status_code == 404
    assert hub.denials("referral.status")[-1].details["reason"] == "not_submitter"


def test_a_partner_gets_no_triage_search_person_or_audit_pages(hub: Hub, school: Browser) -> None:
    reference = send(hub, school)
    home = school.get("/").text
    assert 'href="/referrals/new"' in home and 'href="/triage"' not in home
    assert 'href="/search"' not in home and 'href="/audit"' not in home

    queue = school.get("/triage")
    assert queue.status_code == 403 and "cannot see the triage queue" in queue.text
    assert hub.denials("referral.triage.list")[-1].actor == school.subject
    assert school.get(f"/triage/{reference}").status_code == 404
    assert hub.denials("referral.triage.view")[-1].details["reason"] == "role_not_permitted"
    rated = school.post(f"/triage/{reference}/rag", {"rag": "red"})
    assert rated.status_code == 404
    assert hub.denials("referral.triage.rag")[-1].details["role"] == "partner_agency"

    assert school.get("/search").status_code == 403
    purpose = {"purpose": "referral", "referral_reference": reference}
    denied_before = len(hub.entries("authz.denied"))
    searched = school.post("/search", {"family_name": "Zqwhitlock", "given_name": "Zqamara",
                                       **purpose})  # fmt: skip
    assert searched.status_code == 403
    person = school.post(f"/people/{uuid.uuid4()}", purpose)
    assert person.status_code == 403
    audit = school.get("/audit")
    assert audit.status_code == 403
    assert len(hub.entries("authz.denied")) == denied_before + 3  # each refusal audited
    assert hub.entries("referral.triage.rag") == []


# -- MASH triage ----------------------------------------------------------------------------


def test_an_officer_triages_through_the_pages_as_through_the_api(
    hub: Hub, school: Browser, officer: Browser
) -> None:
    reference = send(hub, school)
    queue = officer.get("/triage")
    assert queue.status_code == 200
    assert reference in queue.text and "Not rated" in queue.text
    assert "Decision 24 h 0 min left" in queue.text  # one working day, from 14:10 on a Tuesday
    assert hub.entries("referral.triage.list")[-1].actor == officer.subject

    page = officer.get(f"/triage/{reference}")
    assert page.status_code == 200
    assert html.escape(CONCERNS) in page.text  # decrypted for the officer, audited first
    assert "2A: Schools" in page.text and "16A: Neglect" in page.text
    match = re.search(r'href="/people/([0-9a-f-]{36})/purpose\?referral=' + reference, page.text)
    assert match, "no link to the subject's person page"
    purpose = officer.get(match.group(0).removeprefix('href="'))
    assert purpose.status_code == 200
    # "This referral" is chosen in the purpose page's list of the person's referrals.
    assert re.search(f'value="referral:{reference}" checked', purpose.text)

    missing = officer.post(f"/triage/{reference}/rag", {})
    assert missing.status_code == 400 and "Select RAG rating" in summary(missing.text)
    before = hub.last_seq()
    rated = officer.post(f"/triage/{reference}/rag", {"rag": "amber"})
    assert rated.status_code == 303
    assert hub.actions_since(before) == ["referral.triage.rag"]
    assert rated.headers["location"] == f"/triage/{reference}?done=rag"
    after = officer.get(rated.headers["location"]).text
    assert "RAG rating saved" in after and "Amber" in after and "6 h 0 min left" in after

    before = hub.last_seq()
    no_reason = officer.post(f"/triage/{reference}/decision", {"decision": "s17_assessment"})
    assert no_reason.status_code == 400 and "Select between 1 and 5 reasons" in summary(
        no_reason.text
    )
    decided = officer.post(
        f"/triage/{reference}/decision",
        {"decision": "s17_assessment", "reasons": ["child_in_need", "professional_judgement"],
         "reason_text": "Zqreason: the family needs support."},
    )  # fmt: skip
    assert decided.status_code == 303
    assert hub.actions_since(before)[-1:] == ["referral.triage.decision"]
    again = officer.post(f"/triage/{reference}/decision", {"decision": "nfa",
                                                          "reasons": ["threshold_not_met"]})  # fmt: skip
    assert again.status_code == 409 and "has been decided" in summary(again.text)

    short = officer.post(f"/triage/{reference}/feedback", {"text": "Thanks"})
    assert short.status_code == 400 and "Feedback must be at least 10 characters" in short.text
    before = hub.last_seq()
    given = officer.post(f"/triage/{reference}/feedback", {"text": FEEDBACK})
    assert given.status_code == 303
    assert hub.actions_since(before) == ["referral.triage.feedback"]
    without_csrf = officer.post(f"/triage/{reference}/feedback", {"text": FEEDBACK},
                                with_csrf=False)  # fmt: skip
    assert without_csrf.status_code == 403
    assert len(hub.entries("referral.triage.feedback")) == 1

    # The same entries as the API's calls on a second referral.
    api_ref = hub.submit(hub.partner("api"), body()).json()["reference"]
    base = f"/api/v1/referrals/{api_ref}"
    assert hub.client.put(f"{base}/rag", json={"rag": "amber"}, headers=hub.officer).is_success
    decision = {"decision": "s17_assessment", "reasons": ["child_in_need"],
                "reason_text": "Zqreason: the family needs support."}  # fmt: skip
    assert hub.client.post(f"{base}/decision", json=decision, headers=hub.officer).is_success
    assert hub.client.post(f"{base}/feedback", json={"text": FEEDBACK},
                           headers=hub.officer).is_success  # fmt: skip
    for action in ("referral.triage.rag", "referral.triage.decision", "referral.triage.feedback"):
        by_page, by_api = hub.entries(action)
        assert set(by_page.details) == set(by_api.details), action
        assert by_page.details["reference"] == reference and by_page.actor == officer.subject
    assert hub.entries("referral.triage.rag")[0].details["to"] == "amber"

    # The partner sees the status and the feedback.
    mine = school.get(f"/referrals/{reference}").text
    assert "Decided" in mine and FEEDBACK in mine
    assert "Zqreason" not in mine  # the decision's explanation is the MASH's own
    listing = school.get("/referrals").text
    assert "1 message, latest" in listing


def test_the_queue_puts_overdue_referrals_first_with_red_tags(
    hub: Hub, school: Browser, officer: Browser
) -> None:
    later = send(hub, school)
    hub.now -= dt.timedelta(days=1)  # received on Monday: its decision is due now
    overdue = send(hub, school)
    hub.now += dt.timedelta(days=1, hours=1)
    page = officer.get("/triage").text
    assert page.index(overdue) < page.index(later)
    assert "Overdue" in page and "overdue by 1 h 0 min" in page
    rated = officer.post(f"/triage/{later}/rag", {"rag": "red"})
    assert rated.status_code == 303
    page = officer.get("/triage").text
    assert "govuk-tag--red" in page and "Information 2 h 0 min left" in page
