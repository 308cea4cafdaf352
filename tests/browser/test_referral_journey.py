"""The referral journey in Chromium: a school's safeguarding lead signs in with a one-time
link and makes a referral by keyboard alone; it appears in the MASH triage queue; a MASH
officer rates it, opens a subject's person page for this referral, decides and gives
feedback; the school reads the feedback. Every page is screenshotted and passes axe-core."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from mash_hub.audit.models import AuditEntry
from tests.browser.conftest import (
    CONCERNS,
    LiveHub,
    check,
    needs_chromium,
    rate_and_view_subject,
    send_referral,
    uk_context,
)

pytestmark = needs_chromium

FEEDBACK = "Thank you. A social worker will visit the family this week."
MAX_TABS = 200


def tab_to(page: Page, selector: str) -> None:
    """Press Tab until the element matching ``selector`` has the focus (keyboard only)."""
    for _ in range(MAX_TABS):
        if page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} is not reachable with the Tab key")


def type_into(page: Page, field_id: str, text: str) -> None:
    tab_to(page, f"#{field_id}")
    page.keyboard.type(text)


def sign_in(page: Page, hub: LiveHub, name: str, role: str, agency: str, shots: str) -> None:
    page.goto(hub.login_link(name, role, agency))
    check(page, f"{shots}-sign-in")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    check(page, f"{shots}-home")


def make_referral_by_keyboard(page: Page) -> str:
    tab_to(page, 'a[href="/referrals/new"]')
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Make a referral to the MASH")).to_be_visible()
    check(page, "referral-01-form")

    tab_to(page, "button.govuk-button:not(.govuk-button--secondary)")
    page.keyboard.press("Enter")  # nothing filled in: errors
    expect(page.locator(".govuk-error-summary")).to_be_visible()
    expect(page.locator(".govuk-error-summary")).to_be_focused()  # GOV.UK moves focus here
    check(page, "referral-02-errors")

    tab_to(page, "#subjects-0-role")
    page.keyboard.press("Space")  # the first choice: the child
    type_into(page, "subjects-0-given_names", "Amara")
    type_into(page, "subjects-0-family_name", "Whitlock")
    type_into(page, "subjects-0-dob-day", "14")
    type_into(page, "subjects-0-dob-month", "6")
    type_into(page, "subjects-0-dob-year", "2015")
    type_into(page, "subjects-0-line1", "14 Rowan Court")
    type_into(page, "subjects-0-town", "Leeds")
    type_into(page, "subjects-0-postcode", "LS6 2QT")
    tab_to(page, "#subjects-1-role")
    page.keyboard.press("ArrowDown")  # the first role after "Choose": the child
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # parent or carer
    type_into(page, "subjects-1-given_names", "Beverley")
    type_into(page, "subjects-1-family_name", "Whitlock")
    type_into(page, "concerns", CONCERNS)
    tab_to(page, "#source")
    page.keyboard.type("2A")
    tab_to(page, "#primary_need")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # N1
    tab_to(page, "summary.govuk-details__summary")
    page.keyboard.press("Enter")  # open "Factors you know of"
    tab_to(page, 'input[name="factors"][value="16A"]')
    page.keyboard.press("Space")
    type_into(page, "referrer-name", "A. Teacher")
    type_into(page, "referrer-job_title", "Designated safeguarding lead")
    tab_to(page, "#consent")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # not sought: it would increase the risk
    type_into(page, "consent_reason", "Telling the family could put the child at further risk.")
    expect(page.locator("#source")).to_have_value("2A")
    expect(page.locator("#primary_need")).to_have_value("N1")
    expect(page.locator("#subjects-1-role")).to_have_value("parent_carer")
    expect(page.locator('input[name="consent"]:checked')).to_have_value("not_sought_risk")
    check(page, "referral-03-filled")
    tab_to(page, "button.govuk-button:not(.govuk-button--secondary)")
    page.keyboard.press("Enter")

    expect(page.locator(".govuk-panel")).to_contain_text("Referral sent")
    check(page, "referral-04-sent")
    match = re.search(r"R-\d{4}-[0-9A-Z]{8}", page.locator(".govuk-panel").inner_text())
    assert match
    return match.group(0)


def test_a_school_refers_the_mash_triages_and_the_school_reads_the_feedback(
    page: Page, browser: Browser, live_hub: LiveHub
) -> None:
    sign_in(page, live_hub, "dsl.school", "partner_agency", "education", "referral-00-partner")
    reference = make_referral_by_keyboard(page)
    page.get_by_role("link", name="Your referrals").first.click()
    expect(page.locator("table")).to_contain_text(reference)
    check(page, "referral-05-mine")
    page.goto(live_hub.base + "/triage")  # not for partners: refused and audited
    expect(page.get_by_role("heading", name="You cannot see the triage queue")).to_be_visible()
    check(page, "referral-06-partner-refused")

    context = uk_context(browser)
    mash = context.new_page()
    try:
        sign_in(mash, live_hub, "mash.officer", "mash_officer", "social_care", "referral-10-mash")
        rate_and_view_subject(mash, reference, "referral")
        mash.go_back()
        mash.goto(f"{live_hub.base}/triage/{reference}")

        mash.get_by_role("button", name="Record decision").click()  # nothing chosen: errors
        expect(mash.locator(".govuk-error-summary")).to_contain_text("Select decision")
        check(mash, "referral-16-decision-errors")
        mash.get_by_label("Child in need assessment (Children Act 1989 s17)").check()
        mash.get_by_label("Child is likely to be in need (s17)").check()
        mash.get_by_role("button", name="Record decision").click()
        expect(mash.locator(".govuk-notification-banner")).to_contain_text("Decision recorded")
        mash.get_by_label("Feedback", exact=True).fill(FEEDBACK)
        mash.get_by_role("button", name="Send feedback").click()
        expect(mash.locator(".govuk-notification-banner")).to_contain_text("Feedback sent")
        check(mash, "referral-17-decided")
        mash.goto(live_hub.base + "/triage?status=decided")
        expect(mash.locator("table")).to_contain_text(reference)
        check(mash, "referral-18-queue-decided")
    finally:
        context.close()

    page.goto(live_hub.base + "/referrals")
    expect(page.locator("table")).to_contain_text("1 message")
    page.get_by_role("link", name=reference).click()
    expect(page.get_by_text(FEEDBACK)).to_be_visible()
    expect(page.locator("main")).to_contain_text("Decided")
    check(page, "referral-19-feedback")

    with live_hub.database.transaction() as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    for action in ("referral.submit", "referral.triage.list", "referral.triage.view",
                   "referral.triage.rag", "person.view", "referral.triage.decision",
                   "referral.triage.feedback", "referral.status.list", "referral.status"):  # fmt: skip
        assert action in actions, action
    assert "authz.denied" in actions  # the partner's look at the queue


@pytest.mark.parametrize("page", [False], indirect=True, ids=["javascript-off"])
def test_a_referral_can_be_made_and_triaged_with_javascript_off(
    page: Page, browser: Browser, live_hub: LiveHub
) -> None:
    page.goto(live_hub.login_link("hv.health", "partner_agency", "health"))
    page.get_by_role("button", name="Sign in").click()
    reference = send_referral(
        page, source="3B", referrer="H. Visitor", shots="javascript-off-referral", axe=False
    )

    context = uk_context(browser, javascript=False)
    mash = context.new_page()
    try:
        mash.goto(live_hub.login_link("mash.nojs", "mash_officer", "social_care"))
        mash.get_by_role("button", name="Sign in").click()
        mash.goto(f"{live_hub.base}/triage/{reference}")
        mash.get_by_label("Green").check()
        mash.get_by_role("button", name="Save RAG rating").click()
        expect(mash.locator(".govuk-notification-banner")).to_contain_text("RAG rating saved")
        check(mash, "javascript-off-triage", axe=False)
    finally:
        context.close()
