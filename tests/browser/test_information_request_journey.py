"""Information requests in Chromium: a MASH officer rates a referral red and asks the police
what they hold (by keyboard alone); a police officer finds the request on "Information
requests for your agency" and answers; the officer reads the answer on the referral page.
Every page is screenshotted and passes axe-core."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from mash_hub.audit.models import AuditEntry
from tests.browser.conftest import LiveHub, check, needs_chromium, send_referral, uk_context
from tests.browser.test_referral_journey import sign_in, tab_to, type_into

pytestmark = needs_chromium

QUESTION = "Anything held on Beverley Whitlock or the household at 14 Rowan Court, Leeds?"
ANSWER = "One call-out for a domestic argument at the address last month. No arrests."


def test_the_mash_asks_the_police_answer_and_the_mash_reads_the_answer(
    page: Page, browser: Browser, live_hub: LiveHub
) -> None:
    page.goto(live_hub.login_link("hv.health", "partner_agency", "health"))
    page.get_by_role("button", name="Sign in").click()
    reference = send_referral(
        page, source="3B", referrer="H. Visitor", shots="inforeq-referral", axe=False
    )

    sign_in(page, live_hub, "mash.asker", "mash_officer", "social_care", "inforeq-00-mash")
    page.goto(f"{live_hub.base}/triage/{reference}")
    expect(page.get_by_text("Give the referral a RAG rating first")).to_be_visible()
    check(page, "inforeq-01-unrated")
    page.get_by_role("radio", name="Red", exact=True).check()
    page.get_by_role("button", name="Save RAG rating").click()
    expect(page.locator(".govuk-notification-banner")).to_contain_text("RAG rating saved")

    tab_to(page, 'form[action$="/information-requests"] button')
    page.keyboard.press("Enter")  # nothing filled in: errors
    expect(page.locator(".govuk-error-summary")).to_contain_text("Select which agency to ask")
    check(page, "inforeq-02-request-errors")
    tab_to(page, "#agency")
    page.keyboard.press("Space")  # the first agency: the police
    type_into(page, "question", QUESTION)
    expect(page.locator('input[name="agency"]:checked')).to_have_value("police")
    tab_to(page, 'form[action$="/information-requests"] button')
    page.keyboard.press("Enter")
    expect(page.locator(".govuk-notification-banner")).to_contain_text("Information request sent")
    expect(page.locator("#information ~ .govuk-summary-card").first).to_contain_text("Open")
    check(page, "inforeq-03-asked")
    page.get_by_role("link", name="Triage queue").first.click()
    expect(page.locator("table")).to_contain_text("Police: Open")
    check(page, "inforeq-04-queue")

    context = uk_context(browser)
    police = context.new_page()
    try:
        sign_in(police, live_hub, "pc.answer", "police_officer", "police", "inforeq-10-police")
        tab_to(police, 'a[href="/information-requests"]')
        police.keyboard.press("Enter")
        expect(police.get_by_role("heading", name="Information requests for your agency"))
        expect(police.locator("table")).to_contain_text(QUESTION)
        check(police, "inforeq-11-agency-requests")
        tab_to(police, 'a[href^="/information-requests/"]')
        police.keyboard.press("Enter")
        expect(police.get_by_role("heading", name=f"Answer the request about {reference}"))
        check(police, "inforeq-12-answer-form")
        tab_to(police, 'form[action^="/information-requests/"] button')
        police.keyboard.press("Enter")
        expect(police.locator(".govuk-error-summary")).to_contain_text("Select what your agency")
        check(police, "inforeq-13-answer-errors")
        tab_to(police, "#outcome")
        police.keyboard.press("Space")  # we hold information
        type_into(police, "answer", ANSWER)
        tab_to(police, 'form[action^="/information-requests/"] button')
        police.keyboard.press("Enter")
        expect(police.locator(".govuk-notification-banner")).to_contain_text("Your answer")
        check(police, "inforeq-14-answered")
    finally:
        context.close()

    page.goto(f"{live_hub.base}/triage/{reference}")
    card = page.locator("#information ~ .govuk-summary-card").first
    expect(card).to_contain_text("Answered")
    expect(card).to_contain_text(ANSWER)
    check(page, "inforeq-15-answer-read")

    with live_hub.database.transaction() as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    for action in (
        "referral.information.request",
        "referral.information.list",
        "referral.information.answer",
        "referral.information.read",
    ):
        assert action in actions, action
