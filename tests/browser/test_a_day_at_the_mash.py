"""A day at the MASH in Chromium, on one hub, everyone in their own browser: a school refers;
a MASH officer triages the referral, opens its subject's page for it, then searches for a
misspelt name and views that person for a stated reason; a reviewer decides a review task; a
police officer is refused the audit log. Then an auditor, with the audit pages alone, finds
each of those accesses under the actor's name and checks the chain."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import (
    LiveHub,
    check,
    needs_chromium,
    rate_and_view_subject,
    send_referral,
    uk_context,
)
from tests.browser.test_auditor_journey import settle
from tests.browser.test_officer_journey import give_purpose, search_for_robert
from tests.browser.test_referral_journey import sign_in
from tests.browser.test_reviewer_journey import REASON, add_twin_task

pytestmark = needs_chromium


@dataclass(frozen=True)
class Access:
    """Something a person did that the auditor must find: who (by name), the action, and
    what it was about as the log's "About" column shows it."""

    actor: str
    action: str
    about: str


@contextmanager
def someone(browser: Browser) -> Iterator[Page]:
    """A person at their own computer: a browser context of their own (cookies and all)."""
    context = uk_context(browser)
    try:
        yield context.new_page()
    finally:
        context.close()


def id_in(address: str, after: str) -> str:
    """The id an address carries after ``after`` (a person's, a review task's)."""
    match = re.search(after + r"/([0-9a-f-]{36})", address)
    assert match, f"no id after {after}"
    return match.group(1)


def show_entries(
    page: Page, shots: str, actor: str = "", person: str = "", action: str = ""
) -> Locator:
    """Filter the audit log by actor id, person id and action (blank: any); the entries' rows."""
    page.get_by_label("Actor id").fill(actor)
    page.get_by_label("Person id").fill(person)
    page.get_by_label("Action").fill(action)
    with page.expect_navigation():
        page.get_by_role("button", name="Show entries").click()
    rows = page.locator("table tbody tr")
    expect(rows.first).to_be_visible()
    check(page, shots)
    return rows


def row_of(rows: Locator, access: Access, about: str | None = None) -> Locator:
    """The log's row showing this access: the actor's name, the action and what it was about
    (``about`` when the log names it differently from the person who acted)."""
    action = rows.page.get_by_role("cell", name=access.action, exact=True)
    shown = rows.filter(has=action).filter(has_text=access.actor)
    return shown.filter(has_text=access.about if about is None else about).first


def open_entry(row: Locator, shots: str) -> Locator:
    """Open a row's entry page; its main content."""
    row.get_by_role("link").click()
    page = row.page
    expect(page.get_by_role("heading", name=re.compile(r"Audit entry \d+"))).to_be_visible()
    check(page, shots)
    return page.locator("main")


def test_a_day_at_the_mash(browser: Browser, live_hub: LiveHub, tmp_path: Path) -> None:
    with someone(browser) as school:
        sign_in(school, live_hub, "dsl.school", "partner_agency", "education", "day-00-school")
        reference = send_referral(school, source="2A", referrer="A. Teacher", shots="day-01")
    submitted = Access("dsl.school", "referral.submit", f"Referral {reference}")

    with someone(browser) as mash:
        sign_in(mash, live_hub, "mash.officer", "mash_officer", "social_care", "day-10-mash")
        rate_and_view_subject(mash, reference, "day")
        amara = id_in(mash.url, "/people")
        mash.get_by_role("link", name="Home").first.click()
        search_for_robert(mash, "day-20")
        give_purpose(mash, "day-20")
        check(mash, "day-20-09-person")
        robert = id_in(mash.url, "/people")
    robert_viewed = Access("mash.officer", "person.view", f"Person {robert}")
    done = [
        submitted,
        Access("mash.officer", "referral.triage.list", "Referral queue"),
        Access("mash.officer", "referral.triage.view", f"Referral {reference}"),
        Access("mash.officer", "referral.triage.rag", f"Referral {reference}"),
        Access("mash.officer", "person.view", f"Person {amara}"),
        Access("mash.officer", "person.search", "Person search"),
        robert_viewed,
    ]

    add_twin_task(live_hub, tmp_path / "keyring.json")
    with someone(browser) as reviewer:
        sign_in(reviewer, live_hub, "reviewer.council", "mash_officer", "council", "day-30")
        reviewer.get_by_role("link", name="Review linkage").first.click()
        check(reviewer, "day-31-queue")
        task_link = reviewer.get_by_role("link", name="Review task 1")
        task = id_in(task_link.get_attribute("href") or "", "/review")
        task_link.click()
        reviewer.get_by_label("MASH triage of a contact or referral").check()
        reviewer.get_by_label("Explain briefly").fill("Possible twins in the linkage queue")
        check(reviewer, "day-32-purpose")
        reviewer.get_by_role("button", name="Show the records").click()
        expect(
            reviewer.get_by_role("heading", name="Are these records the same person?")
        ).to_be_visible()
        check(reviewer, "day-33-task")
        reviewer.get_by_label("Not the same person").check()
        reviewer.get_by_label("They are twins").check()
        reviewer.get_by_label("Explain your decision").fill(REASON)
        reviewer.get_by_role("button", name="Record decision").click()
        expect(reviewer.locator(".govuk-panel")).to_contain_text("Decision recorded")
        check(reviewer, "day-34-decided")
    done += [
        Access("reviewer.council", "linkage.review.show", f"Review task {task}"),
        Access("reviewer.council", "linkage.review.decide", f"Review task {task}"),
    ]

    with someone(browser) as police:
        sign_in(police, live_hub, "police.officer", "police_officer", "police", "day-40")
        police.goto(live_hub.base + "/audit")
        expect(
            police.get_by_role("heading", name="You do not have access to the audit log")
        ).to_be_visible()
        check(police, "day-41-refused")
    refused = Access("police.officer", "authz.denied", "Audit log")
    done.append(refused)

    with someone(browser) as auditor:
        sign_in(auditor, live_hub, "auditor.council", "auditor", "council", "day-50")
        settle(live_hub)
        auditor.get_by_role("link", name="Audit log").first.click()
        check(auditor, "day-51-log")

        # Who is who: each sign-in shows the name beside the actor id the filter takes.
        sign_ins = show_entries(auditor, "day-52-sign-ins", action="auth.signed_in")
        actor_ids: dict[str, str] = {}
        for name in dict.fromkeys(access.actor for access in done):
            row = row_of(sign_ins, Access(name, "auth.signed_in", "User"))
            expect(row).to_be_visible()
            found = re.search(r"user:[0-9a-f-]{36}", row.inner_text())
            assert found, name
            actor_ids[name] = found.group(0)

        # The school's referral: its entry names the reference, its "About" the referral id.
        school_rows = show_entries(auditor, "day-53-school", actor=actor_ids["dsl.school"])
        submit_row = row_of(school_rows, submitted, "Referral")
        expect(submit_row).to_be_visible()
        referral_id = submit_row.get_by_role("cell").nth(4).inner_text().strip()
        entry = open_entry(submit_row, "day-54-submit-entry")
        expect(entry).to_contain_text("dsl.school")
        expect(entry).to_contain_text(reference)
        auditor.get_by_role("link", name="Back to the audit log").click()
        shown_as = {f"Referral {reference}": referral_id}

        for name, actor_id in actor_ids.items():
            rows = show_entries(auditor, f"day-55-{name}", actor=actor_id)
            for access in (access for access in done if access.actor == name):
                expect(row_of(rows, access, shown_as.get(access.about))).to_be_visible()

        views = show_entries(auditor, "day-56-robert", person=robert)
        robert_view = row_of(views, robert_viewed)
        expect(robert_view).to_be_visible()
        entry = open_entry(robert_view, "day-57-view-entry")
        expect(entry).to_contain_text("mash.officer")
        expect(entry).to_contain_text("mash_triage")  # the reason code the officer gave
        auditor.get_by_role("link", name="Back to the audit log").click()

        refusals = show_entries(auditor, "day-58-refusals", action="authz.denied")
        expect(row_of(refusals, refused)).to_be_visible()

        auditor.get_by_role("link", name="Check the audit log has not been changed").click()
        expect(
            auditor.get_by_text("No changes found since the last signed checkpoint.")
        ).to_be_visible()
        check(auditor, "day-59-chain")
