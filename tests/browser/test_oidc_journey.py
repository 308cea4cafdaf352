"""Signing in through the organisation's identity provider in Chromium (``oidc-provider-mock``
on another loopback origin, so the provider's redirect back is cross-site as in real use),
then giving a referral about the person as the purpose, from the purpose page's list; a
referral that stops fitting is an error on the purpose page. Our pages pass axe-core."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from oidc_provider_mock import run_server_in_thread
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from mash_hub.persons.models import SourceRecord
from mash_hub.referrals.models import Referral
from tests.authz.conftest import add_referral
from tests.browser.conftest import LiveHub, check, needs_chromium

pytestmark = needs_chromium

PROVIDER = "Test Council account"
REFERENCE = "R-2026-000777"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def hub_settings(provider: str) -> dict[str, Any]:
    return {
        "oidc_issuer": provider,
        "oidc_audience": "mash-hub-api",
        "oidc_jwks_url": f"{provider}/jwks",
        "oidc_client_id": "mash-hub-pages",
        "oidc_client_secret": "a-client-secret-for-tests",
        "oidc_provider_name": PROVIDER,
    }


def test_a_social_worker_signs_in_with_the_provider_and_picks_a_referral(
    page: Page, live_hub: LiveHub, provider: str
) -> None:
    claims = {"mash_role": "social_worker", "mash_agency": "social_care"}
    assert httpx.put(f"{provider}/users/sw-0042", json=claims).status_code == 204
    with live_hub.database.transaction() as session:
        police_record = session.scalar(
            select(SourceRecord.id).where(
                SourceRecord.person_id == live_hub.robert, SourceRecord.source_agency == "police"
            )
        )
        assert police_record is not None
        add_referral(session, [police_record], REFERENCE)

    page.goto(live_hub.base + "/sign-in")
    check(page, "oidc-01-sign-in")
    page.get_by_role("button", name=f"Sign in with {PROVIDER}").click()
    page.get_by_placeholder("sub").fill("sw-0042")  # the provider's own page
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_text(re.compile(r"Signed in as oidc-[0-9a-f]{24}"))).to_be_visible()
    check(page, "oidc-02-home")

    page.goto(f"{live_hub.base}/people/{live_hub.robert}/purpose")
    choice = page.get_by_label(f"Referral {REFERENCE}")
    expect(choice).to_be_visible()
    expect(page.get_by_text("5 words (20 letters in all)")).to_be_visible()
    check(page, "oidc-03-purpose-referrals")
    choice.focus()
    page.keyboard.press("Space")  # by keyboard alone
    page.get_by_role("button", name="Show records").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Person's records")).to_be_visible()

    page.goto(f"{live_hub.base}/people/{live_hub.robert}/purpose")
    page.get_by_label(f"Referral {REFERENCE}").check()
    with live_hub.database.transaction() as session:  # decided long ago, meanwhile
        session.execute(
            update(Referral).where(Referral.reference == REFERENCE).values(
                status="decided", decided_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
            )
        )  # fmt: skip
    page.get_by_role("button", name="Show records").click()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_contain_text("can no longer be given as the reason")
    check(page, "oidc-04-referral-no-longer-fits")

    # Signing out ends the provider's session too (RP-initiated logout): the mock provider
    # asks for a click, then sends the browser back to the hub's signed-out page.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click()
    expect(page.get_by_role("heading", name="You have signed out")).to_be_visible()
    check(page, "oidc-05-signed-out")
