"""The auditor journey in Chromium: the audit log with its filters (and their errors), one
entry, the chain check; a police officer is refused. Every page is screenshotted and passes
axe-core; the log's filters work with JavaScript turned off."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

import mash_hub.audit.log as audit_log_module
from tests.browser.conftest import LiveHub, check, needs_chromium
from tests.browser.test_officer_journey import sign_in

pytestmark = needs_chromium


def settle(hub: LiveHub) -> None:
    """Chain the committed entries now (the log lists chained entries only)."""
    audit_log_module.chain_pending(hub.database.engine)


def test_an_auditor_filters_the_log_reads_an_entry_and_checks_the_chain(
    page: Page, live_hub: LiveHub
) -> None:
    sign_in(page, live_hub, "demo-auditor", "auditor", "council", "auditor")
    settle(live_hub)
    page.get_by_role("link", name="Audit log").first.click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    table = page.locator("table")
    expect(table).to_contain_text("demo-auditor")
    check(page, "auditor-04-log")
    page.get_by_label("Person id").fill("not an id")
    page.get_by_role("button", name="Show entries").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text("Enter a person id")
    check(page, "auditor-05-log-errors")
    page.get_by_label("Person id").fill("")
    page.get_by_label("Action").fill("auth.signed_in")
    page.get_by_role("button", name="Show entries").click()
    expect(table).to_contain_text("auth.signed_in")
    expect(table).not_to_contain_text("audit.query")
    assert "action=auth.signed_in" in page.url
    check(page, "auditor-06-log-filtered")
    table.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile(r"Audit entry \d+"))).to_be_visible()
    expect(page.locator("main")).to_contain_text("Entry hash")
    check(page, "auditor-07-entry")
    page.get_by_role("link", name="Audit log").first.click()
    page.get_by_role("link", name="Check the audit log has not been changed").click()
    expect(page.get_by_text("No changes found since the last signed checkpoint.")).to_be_visible()
    check(page, "auditor-08-chain")


def test_a_police_officer_cannot_read_the_log(page: Page, live_hub: LiveHub) -> None:
    sign_in(page, live_hub, "demo-police-officer", "police_officer", "police", "noaudit")
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    page.goto(live_hub.base + "/audit")
    expect(
        page.get_by_role("heading", name="You do not have access to the audit log")
    ).to_be_visible()
    check(page, "noaudit-04-refused")


@pytest.mark.parametrize("page", [False], indirect=True, ids=["javascript-off"])
def test_the_log_filters_work_with_javascript_off(page: Page, live_hub: LiveHub) -> None:
    page.goto(live_hub.login_link("demo-auditor", "auditor", "council"))
    page.get_by_role("button", name="Sign in").click()
    settle(live_hub)
    page.goto(live_hub.base + "/audit")
    page.get_by_label("Action").fill("auth.signed_in")
    page.get_by_role("button", name="Show entries").click()
    expect(page.locator("table")).to_contain_text("auth.signed_in")
    check(page, "javascript-off-audit-log", axe=False)
