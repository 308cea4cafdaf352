"""A real hub served on a loopback port, and Debian's Chromium driven by Playwright.

Playwright's own browser download is not reachable here, so the tests launch the system's
``chromium`` (``apt-get install chromium chromium-l10n``; ``.ci/run`` installs them). Without it every browser test is skipped, saying so.

Every page a test visits goes through :func:`check`: a full-page screenshot kept as a test
artefact in ``tests/browser/artifacts/`` (git-ignored) and axe-core's accessibility rules,
which must report no violations.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from mash_hub.authz.versions import publish
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.crypto.tokens import TokenKey
from mash_hub.db.engine import Database
from mash_hub.matching.models import LinkEvent, LinkRun, PersonLink
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, NewRecord, PersonStore
from mash_hub.settings import Settings
from mash_hub.users.models import User
from mash_hub.users.service import add_user
from mash_hub.users.sessions import issue_login_link
from mash_hub.web.app import create_app
from tests.authz.conftest import BASELINE
from tests.serving import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium formats date inputs in its own language, from the environment (not the context's
# locale), and only has en-GB with Debian's chromium-l10n installed (.ci/run installs it).
UK_LANGUAGE: dict[str, str | float | bool] = {**os.environ, "LANGUAGE": "en_GB",
                                              "LANG": "en_GB.UTF-8"}  # fmt: skip
ARTIFACTS = Path(__file__).parent / "artifacts"

# CI runs two workers on two shared cores: give pages time (an assertion, not a timing test).
expect.set_options(timeout=30_000)

# Test modules here carry this mark: without a browser there is nothing to drive.
# In CI (CI=true) a missing browser fails the run instead: the browser suite must run there.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="no chromium on PATH (apt-get install -y chromium; .ci/run does this)",
)

WARNING_MARKERS = "Weapons (WE); Violence (VI)"
INCIDENT = "Domestic incident 2025-11-02, child present"
CASE = "Child in need plan since 2025-09; allocated worker J. Okafor"
CONCERNS = "Amara came to school with a bruised arm and said she is scared to go home."


@dataclass
class LiveHub:
    base: str
    database: Database
    robert: uuid.UUID

    def login_link(self, name: str, role: str, agency: str) -> str:
        with self.database.transaction() as session:
            user = session.query(User).filter_by(name=name).one_or_none()
            if user is None:
                user = add_user(session, name, role, agency)
            return issue_login_link(session, user, actor="test").url(self.base)


def _robert(database: Database, store: PersonStore) -> uuid.UUID:
    """Robert Kowalski (synthetic): records from police, social care and the council, linked."""
    identity = {"given_names": ["Robert"], "family_name": "Kowalski",
                "date_of_birth": "2012-03-04", "sex": "M"}  # fmt: skip
    contact = {"addresses": [{"line1": "14 Harehills Lane", "town": "Leeds",
                              "postcode": "LS6 2QT", "current": True}]}  # fmt: skip
    index = {"given_names": ["Robert"], "family_name": "Kowalski",
             "date_of_birth": dt.date(2012, 3, 4), "postcodes": ["LS6 2QT"]}  # fmt: skip
    details: dict[str, dict[str, dict[str, Any]]] = {
        "police": {
            IDENTIFIERS: {"pnc_id": "12/0000345G"},
            "details.warning_markers": {"markers": WARNING_MARKERS},
            "details.incidents": {"latest": INCIDENT},
        },
        "social_care": {
            IDENTIFIERS: {"nhs_number": "943 476 5919"},
            "details.case": {"status": "open", "summary": CASE},
        },
        "council": {
            IDENTIFIERS: {"upn": "B801200005001"},
            "details.education": {"school": "Harehills Primary", "attendance": "81%"},
        },
    }
    with database.transaction() as session:
        person = store.new_person(session)
        ids = store.add(
            session,
            [
                NewRecord(
                    feed=source,
                    source_agency=source,
                    source_record_id=f"{source}-1",
                    groups={IDENTITY: identity, CONTACT: contact, **groups},
                    index_fields=index,
                    person_id=person,
                )
                for source, groups in details.items()
            ],
        )
        run = LinkRun(actor="test", model_version=1, model_definition="m" * 64, counts={})
        session.add(run)
        session.flush()
        for left, right in ((0, 1), (0, 2), (1, 2)):
            session.add(
                PersonLink(
                    run_id=run.id,
                    record_id_l=ids[left],
                    record_id_r=ids[right],
                    status="auto",
                    match_weight=24.5,
                    weights={"date_of_birth": 13.0, "family_name": 8.5, "postcode": 3.0},
                    explanation="same date of birth +13.0; same family name +8.5; "
                    "same postcode +3.0",
                )
            )
        session.add(LinkEvent(run_id=run.id, kind="create", person_ids=[str(person)], records=3))
    return person


@pytest.fixture
def hub_settings() -> dict[str, Any]:
    """Settings the served hub gets besides its data dir (a test module may override this)."""
    return {}


@pytest.fixture
def live_hub(
    committing_database: Database, tmp_path: Path, hub_settings: dict[str, Any]
) -> Iterator[LiveHub]:
    """The hub's app served by uvicorn in a thread on a free loopback port."""
    store = PersonStore.from_provider(LocalKeyringProvider.create(tmp_path / "keyring.json"))
    with committing_database.transaction() as session:
        publish(session, BASELINE, actor="test:publisher")
    person = _robert(committing_database, store)
    port = free_port()
    app = create_app(
        committing_database,
        settings=Settings(
            data_dir=tmp_path / "hub", public_url=f"http://127.0.0.1:{port}", **hub_settings
        ),
        token_key=TokenKey(b"k" * 32),
    )
    app.state.person_store = store
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    try:
        yield LiveHub(f"http://127.0.0.1:{port}", committing_database, person)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"], env=UK_LANGUAGE
        )
        try:
            yield launched
        finally:
            launched.close()


def uk_context(browser: Browser, *, javascript: bool = True) -> BrowserContext:
    """A fresh browser context (its own cookies) as a UK user's browser: British English and
    London time, so date inputs read day/month/year in screenshots, as staff see them."""
    return browser.new_context(
        java_script_enabled=javascript, locale="en-GB", timezone_id="Europe/London"
    )


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh UK browser context (:func:`uk_context`) with JavaScript on, or off when the
    test is parametrised with ``javascript=False``."""
    javascript = getattr(request, "param", True)
    context = uk_context(browser, javascript=javascript)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


_axe: list[Any] = []


def check(page: Page, name: str, *, axe: bool = True) -> Path:
    """Screenshot the page as an artefact and assert axe-core finds no violations (axe needs
    JavaScript: pages seen with JavaScript off are the same HTML, checked with it on)."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    if not axe:
        return shot
    if not _axe:
        _axe.append(Axe())
    results = _axe[0].run(page)
    violations = results.response["violations"]
    assert not violations, f"{name}: axe-core violations:\n{results.generate_report()}"
    return shot


def send_referral(page: Page, *, source: str, referrer: str, shots: str, axe: bool = True) -> str:
    """A signed-in partner makes the shortest referral the form accepts (Amara Whitlock, the
    child, with the concerns); its reference, read from the confirmation."""
    page.get_by_role("link", name="Make a referral").first.click()
    check(page, f"{shots}-form", axe=axe)
    page.get_by_label("The child the referral is about").check()
    page.locator("#subjects-0-given_names").fill("Amara")
    page.locator("#subjects-0-family_name").fill("Whitlock")
    page.get_by_label("What you are worried about").fill(CONCERNS)
    page.get_by_label("Who is referring").select_option(source)
    page.get_by_label("Main need").select_option("N1")
    page.get_by_text("Factors you know of (optional)").click()  # a details element: no script
    page.get_by_label("16A: Neglect").check()
    page.get_by_label("Your name").fill(referrer)
    page.get_by_label("Consent given").check()
    page.get_by_role("button", name="Send referral").click()
    expect(page.locator(".govuk-panel")).to_contain_text("Referral sent")
    check(page, f"{shots}-sent", axe=axe)
    match = re.search(r"R-\d{4}-[0-9A-Z]{8}", page.locator(".govuk-panel").inner_text())
    assert match
    return match.group(0)


def rate_and_view_subject(mash: Page, reference: str, shots: str) -> None:
    """A signed-in MASH officer finds the referral in the triage queue, rates it amber and
    opens its first subject's person page, with "this referral" as the purpose."""
    mash.get_by_role("link", name="Triage queue").first.click()
    expect(mash.locator("table")).to_contain_text(reference)
    expect(mash.locator("table")).to_contain_text("Not rated")
    check(mash, f"{shots}-11-queue")
    mash.get_by_role("link", name=reference).click()
    expect(mash.get_by_role("heading", name=reference)).to_be_visible()
    expect(mash.get_by_text(CONCERNS)).to_be_visible()
    check(mash, f"{shots}-12-referral")

    mash.get_by_label("Amber").check()
    mash.get_by_role("button", name="Save RAG rating").click()
    expect(mash.locator(".govuk-notification-banner")).to_contain_text("RAG rating saved")
    check(mash, f"{shots}-13-rated")

    mash.get_by_role("link", name=re.compile("View person")).first.click()
    expect(mash.get_by_label(f"Referral {reference}")).to_be_checked()
    check(mash, f"{shots}-14-purpose")
    mash.get_by_role("button", name="Show records").click()
    expect(mash.get_by_role("heading", name="Person's records")).to_be_visible()
    expect(mash.locator("main")).to_contain_text(f"Referral {reference}")
    check(mash, f"{shots}-15-person")
