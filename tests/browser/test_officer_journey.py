"""The officer journey in Chromium: sign in with a one-time link, search for a misspelt
name, give a purpose, see the masked person page; a police officer sees less. Every page is
screenshotted and passes axe-core; the same journey works with JavaScript turned off."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from mash_hub.audit.models import AuditEntry
from tests.browser.conftest import (
    ARTIFACTS,
    CASE,
    INCIDENT,
    WARNING_MARKERS,
    LiveHub,
    check,
    needs_chromium,
)

pytestmark = needs_chromium

EXPLANATION = "Checking a school's referral about Robert's bruising"


def _person_views(hub: LiveHub) -> list[AuditEntry]:
    with hub.database.transaction() as session:
        rows = list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "person.view")
                .order_by(AuditEntry.seq)
            )
        )
        session.expunge_all()
        return rows


def sign_in(page: Page, hub: LiveHub, name: str, role: str, agency: str, shots: str) -> None:
    page.goto(hub.base + "/")
    check(page, f"{shots}-01-start")
    page.goto(hub.login_link(name, role, agency))
    check(page, f"{shots}-02-sign-in")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    check(page, f"{shots}-03-home")


def search_for_robert(page: Page, shots: str) -> None:
    page.get_by_role("link", name="Search for a person").first.click()
    check(page, f"{shots}-04-search")
    page.get_by_role("button", name="Search").click()  # nothing filled in: errors
    expect(page.locator(".govuk-error-summary")).to_be_visible()
    check(page, f"{shots}-05-search-errors")
    page.get_by_label("First name").fill("Bob")  # a nickname
    page.get_by_label("Last name").fill("Kowalsky")  # misspelt
    page.get_by_label("Day").fill("3")  # day and month swapped
    page.get_by_label("Month").fill("4")
    page.get_by_label("Year").fill("2012")
    page.get_by_label("MASH triage of a contact or referral").check()
    page.get_by_label("Explain briefly").fill(EXPLANATION)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name="Search results")).to_be_visible()
    expect(page.locator("table")).to_contain_text("Robert Kowalski")
    check(page, f"{shots}-06-results")


def give_purpose(page: Page, shots: str) -> None:
    page.get_by_role("link", name=re.compile("View records")).first.click()
    expect(page.get_by_role("heading", name=re.compile("Why do you need"))).to_be_visible()
    check(page, f"{shots}-07-purpose")
    page.get_by_role("button", name="Show records").click()  # no purpose: errors
    expect(page.locator(".govuk-error-summary")).to_contain_text("Select why you need")
    check(page, f"{shots}-08-purpose-errors")
    page.get_by_label("MASH triage of a contact or referral").check()
    page.get_by_label("Explain briefly").fill(EXPLANATION)
    page.get_by_role("button", name="Show records").click()
    expect(page.get_by_role("heading", name="Person's records")).to_be_visible()


def test_an_officer_finds_a_misspelt_name_and_sees_the_person(
    page: Page, live_hub: LiveHub
) -> None:
    sign_in(page, live_hub, "demo-mash-officer", "mash_officer", "social_care", "officer")
    search_for_robert(page, "officer")
    give_purpose(page, "officer")
    check(page, "officer-09-person")
    body = page.locator("main")
    for text in ("Police records", "Social care records", "Council records", CASE, INCIDENT,
                 WARNING_MARKERS, "Why these records are linked", "same date of birth +13.0"):  # fmt: skip
        expect(body).to_contain_text(text)
    expect(body).not_to_contain_text("Withheld")
    assert len(_person_views(live_hub)) == 1  # one page view, one person.view entry
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You have signed out")).to_be_visible()
    check(page, "officer-10-signed-out")
    page.goto(live_hub.base + "/search")
    expect(page.get_by_role("heading", name="Sign in to MASH Hub")).to_be_visible()


def test_a_police_officer_sees_less(page: Page, live_hub: LiveHub) -> None:
    sign_in(page, live_hub, "demo-police-officer", "police_officer", "police", "police")
    search_for_robert(page, "police")
    give_purpose(page, "police")
    check(page, "police-09-person")
    body = page.locator("main")
    expect(body).to_contain_text(INCIDENT)
    expect(body).to_contain_text(WARNING_MARKERS)
    expect(body).not_to_contain_text(CASE)  # social-care details are withheld ...
    expect(body).not_to_contain_text("Harehills Primary")  # ... and council details
    expect(body).to_contain_text("Withheld: your role may not see this")
    section = page.locator('section[aria-labelledby="source-social_care"]')
    section.screenshot(path=str(ARTIFACTS / "police-09-person-withheld.png"))  # for the README
    views = _person_views(live_hub)
    assert len(views) == 1
    shown = views[0].details["shown"]
    assert "details.case" not in shown["social_care"]
    assert "details.incidents" in shown["police"]


def test_break_glass_shows_more_and_says_so(page: Page, live_hub: LiveHub) -> None:
    """A social worker does not normally see police incidents; break-glass shows them, marked
    as break-glass, and the view is audited as one person.view flagged for review."""
    sign_in(page, live_hub, "demo-social-worker", "social_worker", "social_care", "glass")
    page.goto(f"{live_hub.base}/people/{live_hub.robert}/purpose")
    page.get_by_label("Strategy discussion").check()
    page.get_by_label("Explain briefly").fill(EXPLANATION)
    page.get_by_label(re.compile("Break glass")).check()
    page.get_by_label("Justification").fill(
        "Robert was reported missing overnight; police need the full picture now."
    )
    page.get_by_role("button", name="Show records").click()
    body = page.locator("main")
    expect(body).to_contain_text("Break-glass view: this access is flagged for review.")
    expect(body).to_contain_text(INCIDENT)
    check(page, "glass-09-person")
    (view,) = _person_views(live_hub)
    assert view.details["break_glass"] is True
    assert view.details["beyond_normal_mask"] == {"police": ["details.incidents"]}


@pytest.mark.parametrize("page", [False], indirect=True, ids=["javascript-off"])
def test_the_journey_works_with_javascript_off(page: Page, live_hub: LiveHub) -> None:
    page.goto(live_hub.login_link("demo-social-worker", "social_worker", "social_care"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Signed in as demo-social-worker")).to_be_visible()
    page.get_by_role("link", name="Search for a person").first.click()
    page.get_by_label("First name").fill("Robert")
    page.get_by_label("Last name").fill("Kowalski")
    page.get_by_label("MASH triage of a contact or referral").check()
    page.get_by_label("Explain briefly").fill(EXPLANATION)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=re.compile("View records")).first.click()
    # Without JavaScript the conditionally revealed fields are simply all shown.
    page.get_by_label("Strategy discussion").check()
    page.get_by_label("Explain briefly").fill(EXPLANATION)
    page.get_by_role("button", name="Show records").click()
    expect(page.get_by_role("heading", name="Person's records")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Social care records")
    check(page, "javascript-off-person", axe=False)


def test_the_api_documentation_renders_offline(page: Page, live_hub: LiveHub) -> None:
    """/docs is Swagger UI 5 from the hub's own files (OpenAPI 3.1), under a CSP with no CDN."""
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(live_hub.base) else outside.append(r.url))
    page.goto(live_hub.base + "/docs")
    # Swagger UI is 1.7 MB of JavaScript: allow a busy CI machine time to start it.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("MASH Hub", timeout=60_000)
    expect(page.get_by_text("/api/v1/persons/search").first).to_be_visible()
    check(page, "docs", axe=False)  # Swagger UI's own markup, not a page of ours
    assert outside == []


def tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (as a keyboard user would)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def follow(page: Page) -> None:
    """Press Enter on the focused link or button and wait for the page it leads to."""
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_the_journey_can_be_done_by_keyboard_alone(page: Page, live_hub: LiveHub) -> None:
    page.goto(live_hub.login_link("demo-mash-officer", "mash_officer", "social_care"))
    tab_to(page, "main button")
    follow(page)
    expect(page.get_by_text("Signed in as demo-mash-officer")).to_be_visible()
    tab_to(page, 'main a[href="/search"]')
    follow(page)
    expect(page.get_by_role("heading", name="Search for a person")).to_be_visible()
    for selector, text in (("#given_name", "Bob"), ("#family_name", "Kowalsky"),
                           ("#date_of_birth-day", "3"), ("#date_of_birth-month", "4"),
                           ("#date_of_birth-year", "2012")):  # fmt: skip
        tab_to(page, selector)
        page.keyboard.type(text)
    tab_to(page, "#purpose")  # the first reason; arrow keys choose another
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    tab_to(page, "#purpose_text")
    page.keyboard.type(EXPLANATION)
    tab_to(page, "main form button")
    follow(page)
    expect(page.locator("table")).to_contain_text("Robert Kowalski")
    tab_to(page, 'main a[href$="/purpose"]')
    follow(page)
    tab_to(page, "#purpose")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    tab_to(page, "#purpose_text")
    page.keyboard.type(EXPLANATION)
    tab_to(page, "main form button")
    follow(page)
    expect(page.get_by_role("heading", name="Person's records")).to_be_visible()
    expect(page.locator("main")).to_contain_text("MASH triage of a contact or referral")
    assert len(_person_views(live_hub)) == 1
