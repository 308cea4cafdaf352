"""The pages through real HTTP calls: headers, sign-in with one-time links, sessions (idle,
absolute, disabled users, sign-out), CSRF, and the officer journey calling the same services
as the API (one ``person.view`` entry per person page; withheld groups never shown)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mash_hub.audit.models import AuditEntry
from mash_hub.db.engine import Database
from mash_hub.persons.store import QUALITY
from mash_hub.referrals.models import Referral
from mash_hub.users.models import LoginLink, User, WebSession
from mash_hub.users.service import disable_user
from mash_hub.users.sessions import issue_login_link, secret_hash
from mash_hub.web.pages.session import COOKIE
from tests.web.test_search_api import ROBERT, SearchHub

PURPOSE_FORM = {"purpose": "mash_triage", "purpose_text": "Triage of contact C-1024 today"}
SEARCH_FORM = {"given_name": "Bob", "family_name": "Kowalsky", "dob-day": "3", "dob-month": "4",
               "dob-year": "2012", **PURPOSE_FORM}  # fmt: skip


class PagesHub(SearchHub):
    def login_link(
        self, name: str, role: str = "social_worker", agency: str = "social_care"
    ) -> str:
        with self.database.transaction() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                user = self.user(name, role, agency)
                user = session.get(User, user.id)
            assert user is not None
            return issue_login_link(session, user, actor="test").secret

    def sign_in(self, name: str = "officer", role: str = "social_worker",
                agency: str = "social_care") -> str:  # fmt: skip
        """Sign the test client in; returns the session's CSRF token."""
        secret = self.login_link(name, role, agency)
        page = self.client.get(f"/sign-in?token={secret}")
        assert page.status_code == 200
        response = self.client.post("/sign-in", data={"token": secret}, follow_redirects=False)
        assert response.status_code == 303, response.text
        return csrf(self.client.get("/").text)

    def entries(self, action: str) -> list[AuditEntry]:
        with self.database.transaction() as session:
            rows = list(
                session.scalars(
                    select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
                )
            )
            session.expunge_all()
            return rows


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[PagesHub]:
    yield PagesHub(committing_database, tmp_path)


def test_pages_send_a_strict_csp_and_no_store(hub: PagesHub) -> None:
    for path in ("/", "/sign-in?token=x", "/search"):
        response = hub.client.get(path)
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "style-src 'self';" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["cache-control"] == "no-store"
        assert "<script>" not in response.text  # no inline script
        assert " style=" not in response.text  # no inline style


def test_assets_and_docs_are_local(hub: PagesHub) -> None:
    for path in ("/static/govuk/govuk-frontend.min.css", "/static/govuk/govuk-frontend.min.js",
                 "/static/js/init.js", "/static/swagger-ui/swagger-ui-bundle.js"):  # fmt: skip
        assert hub.client.get(path).status_code == 200, path
    css = hub.client.get("/static/govuk/govuk-frontend.min.css").text
    assert "GDS Transport" not in css  # the font is licensed for GOV.UK services only
    docs = hub.client.get("/docs")
    assert docs.status_code == 200
    assert "//" not in re.sub(
        r'href="/|src="/', "", docs.text.split("<body>")[1].split("<noscript>")[0]
    )
    assert "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    assert "http" not in hub.client.get("/").text.replace("http-equiv", "")


def test_a_login_link_signs_in_once_and_the_cookie_is_strict(hub: PagesHub) -> None:
    secret = hub.login_link("officer")
    response = hub.client.post("/sign-in", data={"token": secret}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert "Signed in as" in hub.client.get("/").text
    with hub.database.transaction() as session:  # only hashes are stored
        assert session.get(LoginLink, secret_hash(secret)) is not None
        stored = session.scalars(select(WebSession.id_hash)).all()
        assert hub.client.cookies[COOKIE].encode() not in stored
    hub.client.cookies.clear()
    again = hub.client.post("/sign-in", data={"token": secret})
    assert again.status_code == 401
    assert [e.details["reason"] for e in hub.entries("auth.failed")] == ["link_used"]
    assert len(hub.entries("auth.signed_in")) == 1


def test_an_expired_link_is_refused(hub: PagesHub) -> None:
    secret = hub.login_link("officer")
    with hub.database.transaction() as session:
        session.execute(update(LoginLink).values(expires_at=dt.datetime.now(dt.UTC)))
    assert hub.client.post("/sign-in", data={"token": secret}).status_code == 401
    assert [e.details["reason"] for e in hub.entries("auth.failed")] == ["link_expired"]


@pytest.mark.parametrize(
    ("column", "age", "reason"),
    [("last_seen_at", dt.timedelta(minutes=16), "idle"),
     ("created_at", dt.timedelta(hours=8, seconds=1), "expired")],
)  # fmt: skip
def test_idle_and_absolute_timeouts_end_the_session(
    hub: PagesHub, column: str, age: dt.timedelta, reason: str
) -> None:
    hub.sign_in()
    with hub.database.transaction() as session:
        session.execute(update(WebSession).values({column: dt.datetime.now(dt.UTC) - age}))
    response = hub.client.get("/search")
    assert response.status_code == 401
    assert "Sign in" in response.text
    assert [e.details["reason"] for e in hub.entries("auth.signed_out")] == [reason]


def test_a_disabled_users_session_ends_at_the_next_request(hub: PagesHub) -> None:
    hub.sign_in("officer")
    assert hub.client.get("/search").status_code == 200
    with hub.database.transaction() as session:
        disable_user(session, "officer")
    assert hub.client.get("/search").status_code == 401
    assert hub.client.get("/search").status_code == 401  # stays ended
    assert [e.details["reason"] for e in hub.entries("auth.signed_out")] == ["user_disabled"]


def test_sign_out_needs_the_csrf_token_and_ends_the_session(hub: PagesHub) -> None:
    token = hub.sign_in()
    assert hub.client.post("/sign-out", data={}).status_code == 403
    assert hub.client.post("/sign-out", data={"csrf_token": "0" * 64}).status_code == 403
    cross = hub.client.post("/sign-out", data={"csrf_token": token},
                            headers={"Origin": "https://evil.example"})  # fmt: skip
    assert cross.status_code == 403
    assert hub.client.get("/search").status_code == 200
    out = hub.client.post("/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert hub.client.get("/search").status_code == 401


def test_every_form_carries_the_csrf_token(hub: PagesHub) -> None:
    hub.sign_in()
    for path in ("/", "/search", f"/people/{hub.robert}/purpose"):
        html = hub.client.get(path).text
        assert html.count("<form") == html.count('name="csrf_token"'), path


def test_search_finds_a_misspelt_name_and_audits_once(hub: PagesHub) -> None:
    token = hub.sign_in()
    response = hub.client.post("/search", data={**SEARCH_FORM, "csrf_token": token})
    assert response.status_code == 200, response.text
    assert f"/people/{hub.robert}/purpose" in response.text
    assert ROBERT["given"] in response.text
    assert response.headers["cache-control"] == "no-store"
    searches = hub.entries("person.search")
    assert len(searches) == 1
    assert PURPOSE_FORM["purpose_text"] not in str(searches[0].details)


def test_search_errors_use_the_error_summary_without_echoing_values(hub: PagesHub) -> None:
    token = hub.sign_in()
    response = hub.client.post("/search", data={"csrf_token": token, "nhs_number": "1234567890"})
    assert response.status_code == 400
    html = response.text
    assert "govuk-error-summary" in html and "<title>Error:" in html
    assert 'href="#purpose"' in html and 'href="#nhs_number"' in html
    assert "govuk-error-message" in html
    assert html.count("1234567890") == 1  # only in the field the user is correcting
    assert hub.entries("person.search") == []


def test_the_person_page_shows_masked_records_with_one_person_view(hub: PagesHub) -> None:
    token = hub.sign_in("police1", "police_officer", "police")
    purpose = hub.client.get(f"/people/{hub.person_id}/purpose")
    assert "Reason code: mash_triage" in purpose.text
    response = hub.client.post(
        f"/people/{hub.person_id}", data={**PURPOSE_FORM, "csrf_token": token}
    )
    assert response.status_code == 200, response.text
    views = hub.entries("person.view")
    assert len(views) == 1
    shown = views[0].details["shown"]
    html = response.text
    assert "Police records" in html
    # Police officers see police details only (policies/README.md); exactly what was audited
    # as shown is on the page, and no value of any other group.
    assert any(g.startswith("details.") for g in shown["police"])
    assert not any(g.startswith("details.") for s, gs in shown.items() if s != "police" for g in gs)
    for (source, group), value in hub.household.values.items():
        # The quality group is counted ("N values failed validation"), never decrypted.
        visible = group != QUALITY and group in shown.get(source, [])
        assert (value in html) == visible, (source, group)
    assert "Why these records are linked" in html and "Link history" in html
    assert len(hub.entries("person.links.view")) == 1


def test_withheld_groups_are_named_never_shown(hub: PagesHub) -> None:
    token = hub.sign_in("sw", "social_worker", "social_care")
    response = hub.client.post(
        f"/people/{hub.person_id}", data={**PURPOSE_FORM, "csrf_token": token}
    )
    assert response.status_code == 200, response.text
    html = response.text
    # social_worker sees police warning markers but not incidents (policies/README.md)
    assert "Withheld: your role may not see this" in html
    assert "Incidents" in html
    incidents = hub.household.values.get(("police", "details.incidents"))
    assert incidents is not None and incidents not in html
    markers = hub.household.values[("police", "details.warning_markers")]
    assert markers in html


def test_a_purpose_is_required_before_the_person_page(hub: PagesHub) -> None:
    token = hub.sign_in()
    response = hub.client.post(f"/people/{hub.person_id}", data={"csrf_token": token})
    assert response.status_code == 400
    assert 'href="#purpose"' in response.text
    assert hub.entries("person.view") == []
    glass = hub.client.post(
        f"/people/{hub.person_id}",
        data={**PURPOSE_FORM, "csrf_token": token, "break_glass": "yes", "justification": "short"},
    )
    assert glass.status_code == 400 and 'href="#justification"' in glass.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("justification", "x" * 40),  # long enough, but not words: was a 500 before the fix
        ("justification", "x" + " " * 38 + "y"),
        ("purpose_text", "x" + " " * 12 + "y"),
    ],
)
def test_padding_is_not_a_reason_on_the_purpose_form(hub: PagesHub, field: str, value: str) -> None:
    token = hub.sign_in()
    form = {**PURPOSE_FORM, "csrf_token": token, field: value}
    if field == "justification":
        form["break_glass"] = "yes"
    response = hub.client.post(f"/people/{hub.person_id}", data=form)
    assert response.status_code == 400
    assert f'href="#{field}"' in response.text and "words" in response.text
    assert hub.entries("person.view") == []


def test_an_unknown_person_and_a_refused_one_look_the_same(hub: PagesHub) -> None:
    token = hub.sign_in("aud", "auditor", "council")
    refused = hub.client.post(
        f"/people/{hub.person_id}", data={**PURPOSE_FORM, "csrf_token": token}
    )
    unknown = hub.client.post(f"/people/{uuid.uuid4()}", data={**PURPOSE_FORM, "csrf_token": token})
    assert refused.status_code == unknown.status_code == 403
    assert len(hub.entries("authz.denied")) == 2


def test_the_purpose_page_offers_the_referrals_that_fit_and_the_service_decides(
    hub: PagesHub,
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    recently = dt.datetime.now(dt.UTC) - dt.timedelta(days=29)
    hub.referral("R-2026-000101")
    hub.referral("R-2026-000102", source="police", status="decided", decided_at=recently)
    hub.referral("R-2026-000103", source="social_care", status="decided", decided_at=long_ago)
    other = hub.another_person()
    hub.referral("R-2026-000104", person=other)
    token = hub.sign_in("sw", "social_worker", "social_care")
    html = hub.client.get(f"/people/{hub.person_id}/purpose").text
    assert 'value="referral:R-2026-000101"' in html and 'value="referral:R-2026-000102"' in html
    assert "R-2026-000103" not in html and "R-2026-000104" not in html  # closed; someone else's
    assert 'name="referral_reference"' not in html  # picked, not typed
    listed = hub.entries("person.referral_purposes")
    assert len(listed) == 1 and len(listed[0].details["referrals"]) == 2
    assert "R-2026" not in str(listed[0].details)  # ids, not references

    chosen = hub.client.post(
        f"/people/{hub.person_id}",
        data={"purpose": "referral:R-2026-000102", "csrf_token": token},
    )
    assert chosen.status_code == 200, chosen.text
    views = hub.entries("person.view")
    assert [v.details["purpose"] for v in views] == [{"referral": "R-2026-000102"}]

    # The referral was decided long ago since the page was shown: a GOV.UK error on the
    # purpose page, the service's refusal audited as before, and the list without it.
    with hub.database.transaction() as session:
        session.execute(
            update(Referral).where(Referral.reference == "R-2026-000101")
            .values(status="decided", decided_at=long_ago)
        )  # fmt: skip
    stale = hub.client.post(
        f"/people/{hub.person_id}",
        data={"purpose": "referral:R-2026-000101", "csrf_token": token},
    )
    assert stale.status_code == 403
    assert "govuk-error-summary" in stale.text and 'href="#purpose"' in stale.text
    assert "can no longer be given as the reason" in stale.text
    assert 'value="referral:R-2026-000101"' not in stale.text
    assert 'value="referral:R-2026-000102"' in stale.text
    denied = hub.entries("authz.denied")
    assert [d.details["reason"] for d in denied] == ["purpose_referral_invalid"]
    assert len(hub.entries("person.view")) == 1


def test_the_purpose_page_lists_no_referrals_to_a_role_that_may_not_see_them(
    hub: PagesHub,
) -> None:
    hub.referral("R-2026-000201")
    hub.sign_in("council1", "council_officer", "council")
    html = hub.client.get(f"/people/{hub.person_id}/purpose").text
    assert "R-2026-000201" not in html
    assert "no open referral about this person" in html
    assert hub.entries("person.referral_purposes")[0].details["referrals"] == []


@pytest.mark.parametrize(
    "justification",
    ["short", "x" + " " * 38 + "y", "1234567890 1234567890 1234567890 1234567890"],
)
def test_the_break_glass_hint_and_error_state_the_real_rule(
    hub: PagesHub, justification: str
) -> None:
    token = hub.sign_in("sw", "social_worker", "social_care")
    rule = "30 to 1,000 characters, with at least 5 words (20 letters in all)"
    assert rule in hub.client.get(f"/people/{hub.person_id}/purpose").text
    glass = hub.client.post(
        f"/people/{hub.person_id}",
        data={**PURPOSE_FORM, "csrf_token": token, "break_glass": "yes",
              "justification": justification},
    )  # fmt: skip
    assert glass.status_code == 400, glass.text
    assert 'href="#justification"' in glass.text and rule in glass.text
    assert hub.entries("person.view") == []


def test_without_a_provider_the_sign_in_page_offers_links_only(hub: PagesHub) -> None:
    page = hub.client.get("/sign-in")
    assert page.status_code == 400
    assert "Sign in with" not in page.text and "mash-hub users login-link" in page.text
    assert hub.client.get("/sign-in/oidc", follow_redirects=False).status_code == 404
    assert hub.client.get("/sign-in/oidc/callback?state=s&code=c").status_code == 404
    assert hub.entries("auth.failed") == []
