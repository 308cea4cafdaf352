"""The reviewer's and the auditor's report journeys in Chromium.

A MASH officer opens the review queue, gives a purpose, compares two records (Robert and a
possible twin) and decides with a reason, once with the mouse and once by keyboard alone;
an auditor runs the unusual-access report and downloads the log as CSV. Every page is
screenshotted and passes axe-core."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.matching.models import LinkDecision, LinkRun, ReviewTask
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, NewRecord, PersonStore
from tests.browser.conftest import LiveHub, check, needs_chromium
from tests.browser.test_auditor_journey import settle
from tests.browser.test_officer_journey import EXPLANATION, follow, sign_in, tab_to

pytestmark = needs_chromium

REASON = "School confirms Robert and Roberta are twins in the same class"
IDENTITY_VALUES = {"given_names": ["Roberta"], "family_name": "Kowalski",
                   "date_of_birth": "2012-03-04", "sex": "F"}  # fmt: skip
CONTACT_VALUES = {"addresses": [{"line1": "14 Harehills Lane", "town": "Leeds",
                                 "postcode": "LS6 2QT", "current": True}]}  # fmt: skip
WEIGHTS = {"date_of_birth": 13.0, "family_name": 8.5, "postcode": 3.0, "given_name": -13.2}


def add_twin_task(hub: LiveHub, keyring: Path) -> uuid.UUID:
    """Roberta Kowalski (synthetic), born the same day at the same address: a council record
    of her own, and a review task between it and Robert's police record."""
    store = PersonStore.from_provider(LocalKeyringProvider(keyring))
    with hub.database.transaction() as session:
        roberta = store.new_person(session)
        (record,) = store.add(
            session,
            [
                NewRecord(
                    feed="council",
                    source_agency="council",
                    source_record_id="council-2",
                    groups={
                        IDENTITY: IDENTITY_VALUES,
                        IDENTIFIERS: {"upn": "B801200005002"},
                        CONTACT: CONTACT_VALUES,
                    },
                    index_fields={"family_name": "Kowalski"},
                    person_id=roberta,
                )
            ],
        )
        police = session.scalar(
            select(SourceRecord.id).where(
                SourceRecord.person_id == hub.robert, SourceRecord.source_agency == "police"
            )
        )
        assert police is not None
        run = LinkRun(actor="test", model_version=1, model_definition="m" * 64, counts={})
        session.add(run)
        session.flush()
        left, right = sorted((police, record), key=str)
        task = ReviewTask(
            id=uuid.uuid4(),
            record_id_l=left,
            record_id_r=right,
            created_run_id=run.id,
            last_run_id=run.id,
            kind="possible_twin",
            match_weight=11.3,
            weights=WEIGHTS,
            explanation="same date of birth +13.0; same family name +8.5; same postcode +3.0; "
            "different given name -13.2",
            status="open",
        )
        session.add(task)
    return task.id


def decisions(hub: LiveHub) -> list[LinkDecision]:
    with hub.database.transaction() as session:
        found = list(session.scalars(select(LinkDecision)))
        session.expunge_all()
        return found


def test_a_reviewer_compares_two_records_and_decides_with_a_reason(
    page: Page, live_hub: LiveHub, tmp_path: Path
) -> None:
    task = add_twin_task(live_hub, tmp_path / "keyring.json")
    sign_in(page, live_hub, "demo-mash-officer", "mash_officer", "council", "reviewer")
    page.get_by_role("link", name="Review linkage").first.click()
    expect(page.get_by_role("heading", name="Review linkage")).to_be_visible()
    expect(page.locator("table")).to_contain_text("Possible twins")
    check(page, "reviewer-04-queue")
    page.get_by_role("link", name="Review task 1").click()
    page.get_by_role("button", name="Show the records").click()  # no purpose: errors
    expect(page.locator(".govuk-error-summary")).to_be_visible()
    check(page, "reviewer-05-purpose-errors")
    page.get_by_label("MASH triage of a contact or referral").check()
    page.get_by_label("Explain briefly").fill(EXPLANATION)
    page.get_by_role("button", name="Show the records").click()
    expect(page.get_by_role("heading", name="Are these records the same person?")).to_be_visible()
    table = page.locator("table").first
    expect(table).to_contain_text("Roberta")
    expect(table).to_contain_text("Robert")
    expect(table.locator(".govuk-tag", has_text="Differs")).to_have_count(2)  # name and sex
    expect(page.locator("main")).to_contain_text("different given name -13.2")
    check(page, "reviewer-06-task")
    page.get_by_role("button", name="Record decision").click()  # nothing chosen: errors
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("Select whether the two records are the same person")
    expect(summary).to_contain_text("Enter the reason for your decision")
    check(page, "reviewer-07-decision-errors")
    page.get_by_label("Not the same person").check()
    page.get_by_label("They are twins").check()
    page.get_by_label("Explain your decision").fill(REASON)
    page.get_by_role("button", name="Record decision").click()
    expect(page.locator(".govuk-panel")).to_contain_text("Decision recorded")
    check(page, "reviewer-08-decided")
    (made,) = decisions(live_hub)
    assert made.task_id == task and made.decision == "different" and made.reason_code == "twin"


def test_the_review_decision_can_be_made_by_keyboard_alone(
    page: Page, live_hub: LiveHub, tmp_path: Path
) -> None:
    task = add_twin_task(live_hub, tmp_path / "keyring.json")
    page.goto(live_hub.login_link("demo-mash-officer", "mash_officer", "council"))
    tab_to(page, "main button")
    follow(page)
    tab_to(page, 'main a[href="/review"]')
    follow(page)
    tab_to(page, f'main a[href="/review/{task}/purpose"]')
    follow(page)
    tab_to(page, "#purpose")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    tab_to(page, "#purpose_text")
    page.keyboard.type(EXPLANATION)
    tab_to(page, "main form button")
    follow(page)
    expect(page.get_by_role("heading", name="Are these records the same person?")).to_be_visible()
    tab_to(page, "#decision")  # Same person; the arrow key moves to Not the same person
    page.keyboard.press("ArrowDown")
    tab_to(page, "#reason_code")  # same identifier, same details, twins
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    tab_to(page, "#reason")
    page.keyboard.type(REASON)
    tab_to(page, "main form button")
    follow(page)
    expect(page.locator(".govuk-panel")).to_contain_text("Decision recorded")
    (made,) = decisions(live_hub)
    assert made.decision == "different" and made.reason_code == "twin"


def test_an_auditor_runs_the_unusual_access_report_and_downloads_the_log(
    page: Page, live_hub: LiveHub
) -> None:
    sign_in(page, live_hub, "demo-auditor", "auditor", "council", "report")
    settle(live_hub)
    page.get_by_role("link", name="Audit log").first.click()
    page.get_by_role("link", name="unusual-access report").click()
    expect(page.get_by_role("heading", name="Unusual access")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Break-glass views")
    check(page, "report-04-unusual")
    today = dt.datetime.now(dt.UTC).date()
    page.get_by_label("From date").fill(today.isoformat())
    page.get_by_label("To date (included)").fill((today - dt.timedelta(days=3)).isoformat())
    page.get_by_role("button", name="Run the report").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text("must be before the to date")
    check(page, "report-05-unusual-errors")
    page.get_by_role("link", name="Back to the audit log").click()
    page.get_by_label("Action").fill("auth.signed_in")
    page.get_by_role("button", name="Show entries").click()
    settle(live_hub)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download every matching entry (CSV)").click()
    saved = download.value
    assert saved.suggested_filename.startswith("audit-export-")
    assert saved.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(saved.path()).read_text())))
    assert rows and {row["action"] for row in rows} == {"auth.signed_in"}
    check(page, "report-06-log-with-download")


def test_information_governance_downloads_a_subject_access_export(
    page: Page, live_hub: LiveHub
) -> None:
    sign_in(page, live_hub, "demo-information-governance", "information_governance", "council",
            "sar")  # fmt: skip
    page.get_by_role("link", name="Subject access").first.click()
    expect(page.get_by_role("heading", name="Export a subject access request")).to_be_visible()
    check(page, "sar-04-form")
    page.get_by_label("Person id").fill(str(live_hub.robert))
    page.get_by_label("SAR reference").fill("not a reference")
    page.get_by_role("button", name="Download the export (JSON)").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text("Enter a SAR reference")
    check(page, "sar-05-errors")
    page.get_by_label("SAR reference").fill("SAR-2026-0117")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the export (JSON)").click()
    saved = download.value
    assert saved.suggested_filename.startswith("subject-access-")
    document = json.loads(Path(saved.path()).read_text())
    assert document["person_id"] == str(live_hub.robert)
    assert document["reference"] == "SAR-2026-0117"
    assert set(document["sources"]) <= {"police", "social_care", "council"}


@pytest.mark.parametrize("page", [False], indirect=True, ids=["javascript-off"])
def test_the_review_decision_works_with_javascript_off(
    page: Page, live_hub: LiveHub, tmp_path: Path
) -> None:
    add_twin_task(live_hub, tmp_path / "keyring.json")
    page.goto(live_hub.login_link("demo-mash-officer", "mash_officer", "council"))
    page.get_by_role("button", name="Sign in").click()
    page.goto(live_hub.base + "/review")
    page.get_by_role("link", name="Review task 1").click()
    page.get_by_label("MASH triage of a contact or referral").check()
    page.get_by_label("Explain briefly").fill(EXPLANATION)
    page.get_by_role("button", name="Show the records").click()
    page.get_by_label("Same person", exact=True).check()
    page.get_by_label("They are twins").check()  # does not go with "same person"
    page.get_by_label("Explain your decision").fill(REASON)
    page.get_by_role("button", name="Record decision").click()
    expect(page.locator(".govuk-error-summary")).to_contain_text("Select a reason that goes")
    page.get_by_label("Not the same person").check()
    page.get_by_role("button", name="Record decision").click()
    expect(page.locator(".govuk-panel")).to_contain_text("Decision recorded")
    check(page, "javascript-off-review-decided", axe=False)
    (made,) = decisions(live_hub)
    assert made.decision == "different" and made.reason_code == "twin"


def add_review_band(hub: LiveHub, keyring: Path, tasks: int) -> None:
    """Open review-band tasks between the council records of synthetic people (no names
    needed: the queue shows ids, weights and explanations only)."""
    store = PersonStore.from_provider(LocalKeyringProvider(keyring))
    with hub.database.transaction() as session:
        records: list[uuid.UUID] = []
        while len(records) * (len(records) - 1) // 2 < tasks:
            records += store.add(
                session,
                [
                    NewRecord(
                        feed="council",
                        source_agency="council",
                        source_record_id=f"council-band-{len(records)}",
                        groups={IDENTITY: {"family_name": "Synthetic"}},
                        index_fields={"family_name": "Synthetic"},
                        person_id=store.new_person(session),
                    )
                ],
            )
        run = LinkRun(actor="test", model_version=1, model_definition="m" * 64, counts={})
        session.add(run)
        session.flush()
        ordered = sorted(records, key=str)
        pairs = [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]][:tasks]
        for n, (left, right) in enumerate(pairs):
            session.add(
                ReviewTask(record_id_l=left, record_id_r=right, created_run_id=run.id,
                           last_run_id=run.id, kind="review", match_weight=5.0 - n / 100,
                           weights={"family_name": 5.0}, explanation="same family name +5.0",
                           status="open")
            )  # fmt: skip


def test_a_long_review_queue_is_paged(page: Page, live_hub: LiveHub, tmp_path: Path) -> None:
    add_review_band(live_hub, tmp_path / "keyring.json", 105)
    sign_in(page, live_hub, "demo-mash-officer", "mash_officer", "council", "reviewpages")
    page.goto(live_hub.base + "/review")
    expect(page.locator("caption")).to_contain_text("Open review tasks (105)")
    expect(page.locator("caption")).to_contain_text("Page 1 of 2")
    check(page, "reviewpages-04-first")
    page.get_by_role("navigation", name="Pages of review tasks").get_by_role(
        "link", name="Next"
    ).click()
    expect(page.locator("caption")).to_contain_text("Page 2 of 2, tasks 101 to 105")
    expect(page.locator("tbody tr")).to_have_count(5)
    check(page, "reviewpages-05-second")
