"""OIDC sign-in for the pages against a real provider (``oidc-provider-mock``, made to check
PKCE as a real provider does) on a loopback port: the browser's steps go through the hub's
app and the provider over HTTP, and the hub calls the provider's discovery, token and JWKS
endpoints over HTTP too.

The provider puts a user's extra claims into the ID token after its own, so a user whose
claims hold ``aud``, ``nonce`` or ``exp`` gets an ID token with the wrong audience, nonce or
expiry, signed by the provider's real key."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import jwt
import oidc_provider_mock
import pytest
import werkzeug.serving
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import select, update

from mash_hub.audit.models import AuditEntry
from mash_hub.db.engine import Database
from mash_hub.settings import Settings
from mash_hub.users.models import User, UserVersion, WebSession
from mash_hub.users.oidc import oidc_user_name
from mash_hub.users.service import UserError, add_user, disable_user
from mash_hub.web.auth import AuthConfigError, OidcVerifier
from mash_hub.web.oidc_signin import Attempt, OidcSignIn
from mash_hub.web.pages.session import COOKIE
from mash_hub.web.pages.signin import OIDC_COOKIE
from tests.web.test_pages import PagesHub, csrf

CLIENT_ID = "mash-hub-pages"
PROVIDER = "Test Council account"


def enforce_pkce(provider_app: flask.Flask) -> None:
    """Make the provider check PKCE as a real one does (the mock ignores ``code_verifier``):
    a code is only exchanged with the verifier whose S256 challenge it was issued for."""
    challenges: dict[str, str] = {}

    @provider_app.after_request
    def remember(response: flask.Response) -> flask.Response:
        request = flask.request
        if request.path == "/oauth2/authorize" and response.status_code == 302:
            code = parse_qs(urlsplit(response.headers["Location"]).query).get("code")
            if code:
                challenges[code[0]] = request.args.get("code_challenge", "")
        return response

    @provider_app.before_request
    def check() -> Any:
        request = flask.request
        if request.path == "/oauth2/token":
            challenge = challenges.get(request.form.get("code", ""))
            verifier = request.form.get("code_verifier", "")
            if challenge is not None and create_s256_code_challenge(verifier) != challenge:
                return {"error": "invalid_grant", "error_description": "PKCE"}, 400
        return None


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    provider_app = oidc_provider_mock.app(require_nonce=True)
    enforce_pkce(provider_app)
    server = werkzeug.serving.make_server("localhost", 0, provider_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


class OidcHub(PagesHub):
    def __init__(self, database: Database, tmp_path: Path, issuer: str) -> None:
        self.issuer = issuer
        super().__init__(
            database, tmp_path, oidc_issuer=issuer, oidc_jwks_file=None,
            oidc_jwks_url=f"{issuer}/jwks", oidc_client_id=CLIENT_ID,
            oidc_provider_name=PROVIDER, public_url="http://testserver",
            oidc_client_secret="a-client-secret-for-tests",
        )  # fmt: skip

    def set_claims(self, subject: str, **claims: Any) -> None:
        """The provider's claims for ``subject`` (a social worker unless told otherwise)."""
        body = {"mash_role": "social_worker", "mash_agency": "social_care", **claims}
        answer = httpx.put(f"{self.issuer}/users/{subject}", json=body)
        assert answer.status_code == 204, answer.text

    def authorize(self, subject: str, decision: str = "allow") -> str:
        """Start at the hub, consent at the provider; the callback's path and query."""
        start = self.client.get("/sign-in/oidc", follow_redirects=False)
        assert start.status_code == 303, start.text
        consent = httpx.post(
            start.headers["location"], data={"sub": subject, "action": decision},
            follow_redirects=False,
        )  # fmt: skip
        assert consent.status_code == 302, consent.text
        back = urlsplit(consent.headers["location"])
        assert f"{back.scheme}://{back.netloc}{back.path}" == (
            "http://testserver/sign-in/oidc/callback"
        )
        return f"{back.path}?{back.query}"

    def oidc_sign_in(self, subject: str = "staff-0001", **claims: Any) -> httpx.Response:
        self.set_claims(subject, **claims)
        response: httpx.Response = self.client.get(self.authorize(subject), follow_redirects=False)
        return response

    def entries(self, action: str) -> list[AuditEntry]:
        with self.database.transaction() as session:
            rows = list(
                session.scalars(
                    select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
                )
            )
            session.expunge_all()
            return rows

    def oidc_failures(self) -> list[tuple[str, str]]:
        return [(e.details["credential"], e.details["reason"]) for e in self.entries("auth.failed")]


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path, provider: str) -> Iterator[OidcHub]:
    yield OidcHub(committing_database, tmp_path, provider)


def refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert COOKIE not in response.cookies
    assert f"Sign in with {PROVIDER}" in response.text


def test_the_sign_in_page_offers_the_provider_and_links_still_work(hub: OidcHub) -> None:
    page = hub.client.get("/sign-in")
    assert page.status_code == 200
    assert f"Sign in with {PROVIDER}" in page.text and 'href="/sign-in/oidc"' in page.text
    assert f"Sign in with {PROVIDER}" in hub.client.get("/search").text  # the 401 page too
    link_user = hub.login_link("linked")
    assert hub.client.post("/sign-in", data={"token": link_user}).status_code == 200
    # A link's session is the hub's alone: signing out does not go to the provider.
    out = hub.client.post(
        "/sign-out", data={"csrf_token": csrf(hub.client.get("/").text)}, follow_redirects=False
    )
    assert (out.status_code, out.headers["location"]) == (303, "/signed-out")


def test_the_full_flow_signs_in_with_pkce_and_audits_without_claims(hub: OidcHub) -> None:
    hub.set_claims("staff-0001", email="worker@council.example")
    start = hub.client.get("/sign-in/oidc", follow_redirects=False)
    cookie = start.headers["set-cookie"]
    assert cookie.startswith(f"{OIDC_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/sign-in/oidc" in cookie
    attempt = Attempt.from_cookie(hub.client.cookies[OIDC_COOKIE])
    assert attempt is not None
    location = urlsplit(start.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == hub.issuer
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == create_s256_code_challenge(attempt.code_verifier)
    assert (query["state"], query["nonce"]) == (attempt.state, attempt.nonce)
    assert attempt.code_verifier not in start.headers["location"]
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"

    consent = httpx.post(start.headers["location"], data={"sub": "staff-0001"})
    back = urlsplit(consent.headers["location"])
    callback = hub.client.get(f"{back.path}?{back.query}", follow_redirects=False)
    assert callback.status_code == 200, callback.text
    assert 'http-equiv="refresh" content="0;url=/"' in callback.text
    assert COOKIE in callback.cookies
    assert "Signed in as" in hub.client.get("/").text
    assert hub.client.get("/search").status_code == 200

    name = oidc_user_name(hub.issuer, "staff-0001")
    with hub.database.transaction() as session:
        user = session.scalar(select(User).where(User.name == name))
        assert user is not None and (user.role, user.agency) == ("social_worker", "social_care")
        versions = session.scalars(select(UserVersion).where(UserVersion.user_id == user.id))
        assert len(list(versions)) == 1
        web = session.scalar(select(WebSession))
        assert web is not None and (web.method, web.user_id) == ("oidc", user.id)
    signed_in = hub.entries("auth.signed_in")
    assert [(e.actor, e.details["method"]) for e in signed_in] == [(f"user:{user.id}", "oidc")]
    assert [e.subject_id for e in hub.entries("users.add")] == [str(user.id)]
    everything = json.dumps(
        [[e.actor, e.subject_id, e.details] for e in hub.entries("users.add") + signed_in]
    )
    assert "staff-0001" not in everything and "council.example" not in everything

    out = hub.client.post("/sign-out", data={"csrf_token": csrf(hub.client.get("/").text)})
    assert out.status_code == 200 and "Continue signing out" in out.text  # at the provider too
    assert [e.details["reason"] for e in hub.entries("auth.signed_out")] == ["signed_out"]


def test_a_new_role_at_the_provider_changes_the_same_row_with_history(hub: OidcHub) -> None:
    assert hub.oidc_sign_in("staff-0002").status_code == 200
    assert (
        hub.oidc_sign_in("staff-0002", mash_role="police_officer", mash_agency="police").status_code
        == 200
    )
    name = oidc_user_name(hub.issuer, "staff-0002")
    with hub.database.transaction() as session:
        users = list(session.scalars(select(User).where(User.name == name)))
        assert len(users) == 1 and (users[0].role, users[0].agency) == ("police_officer", "police")
        roles = session.scalars(
            select(UserVersion.role).where(UserVersion.user_id == users[0].id)
            .order_by(UserVersion.version)
        ).all()  # fmt: skip
    assert roles == ["social_worker", "police_officer"]
    assert len(hub.entries("users.change")) == 1


def test_a_wrong_or_missing_state_is_refused_and_audited(hub: OidcHub) -> None:
    hub.set_claims("staff-0003")
    callback = hub.authorize("staff-0003")
    path, _, query = callback.partition("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    refused(hub.client.get(path, params={**params, "state": "forged-state-value"}))
    hub.client.cookies.clear()  # the cookie went with the refusal; another browser has none
    refused(hub.client.get(callback))
    assert hub.oidc_failures() == [("oidc_sign_in", "wrong_state"), ("oidc_sign_in", "no_attempt")]
    assert hub.entries("auth.signed_in") == []


def test_a_replayed_code_is_refused_by_the_provider_and_audited(hub: OidcHub) -> None:
    hub.set_claims("staff-0004")
    first = hub.authorize("staff-0004")
    assert hub.client.get(first, follow_redirects=False).status_code == 200
    refused(hub.client.get(first))  # the same callback again: its attempt is spent
    old_code = parse_qs(urlsplit(first).query)["code"][0]
    fresh = hub.authorize("staff-0004")
    path, _, query = fresh.partition("?")
    state = parse_qs(query)["state"][0]
    refused(hub.client.get(path, params={"state": state, "code": old_code}))
    assert hub.oidc_failures() == [("oidc_sign_in", "no_attempt"), ("oidc_sign_in", "code_refused")]
    assert len(hub.entries("auth.signed_in")) == 1


def test_a_code_injected_into_another_browsers_attempt_is_refused(hub: OidcHub) -> None:
    """A code obtained in one browser, delivered with another browser's state: the verifier
    (PKCE) does not match the code's challenge, so the provider will not exchange it."""
    hub.set_claims("staff-0007")
    stolen = parse_qs(urlsplit(hub.authorize("staff-0007")).query)["code"][0]
    hub.client.cookies.clear()  # the victim's browser
    victims = hub.authorize("staff-0008")
    path, _, query = victims.partition("?")
    state = parse_qs(query)["state"][0]
    refused(hub.client.get(path, params={"state": state, "code": stolen}))
    assert hub.oidc_failures() == [("oidc_sign_in", "code_refused")]
    assert hub.entries("auth.signed_in") == []


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "a-nonce-from-another-attempt"}, "wrong_nonce"),
        ({"aud": "another-client"}, "wrong_audience"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"iss": "https://impostor.example"}, "wrong_issuer"),
        ({"mash_role": "root"}, "unmapped_role"),
        ({"mash_role": "partner_agency"}, "unmapped_role"),
        ({"mash_agency": None}, "unmapped_role"),
    ],
)
def test_id_tokens_failing_a_check_are_refused_and_audited(
    hub: OidcHub, claims: dict[str, Any], reason: str
) -> None:
    subject = f"staff-{reason}"
    refused(hub.oidc_sign_in(subject, **claims))
    assert hub.oidc_failures() == [("oidc_sign_in", reason)]
    assert hub.entries("auth.signed_in") == []
    with hub.database.transaction() as session:
        assert (
            session.scalar(select(User).where(User.name == oidc_user_name(hub.issuer, subject)))
            is None
        )


def test_a_refusal_at_the_provider_is_audited(hub: OidcHub) -> None:
    hub.set_claims("staff-0005")
    refused(hub.client.get(hub.authorize("staff-0005", decision="deny")))
    assert hub.oidc_failures() == [("oidc_sign_in", "provider_refused")]


def test_a_disabled_user_is_refused_and_their_session_ends(hub: OidcHub) -> None:
    assert hub.oidc_sign_in("staff-0006").status_code == 200
    name = oidc_user_name(hub.issuer, "staff-0006")
    with hub.database.transaction() as session:
        disable_user(session, name)
    assert hub.client.get("/search").status_code == 401
    refused(hub.oidc_sign_in("staff-0006"))
    assert hub.oidc_failures() == [("oidc_sign_in", "user_disabled")]
    assert "disabled" in hub.oidc_sign_in("staff-0006").text
    with hub.database.transaction() as session:
        user = session.scalar(select(User).where(User.name == name))
        assert user is not None and user.disabled


def test_oidc_names_are_kept_for_oidc_rows(committing_database: Database) -> None:
    with committing_database.transaction() as session, pytest.raises(UserError):
        add_user(session, "oidc-0123456789abcdef01234567", "social_worker", "social_care")


def test_a_discovery_document_naming_another_issuer_is_refused(
    committing_database: Database, tmp_path: Path, provider: str
) -> None:
    # The issuer configured with a trailing slash: the provider's document names itself
    # without one, and an issuer must match exactly (OpenID Connect Discovery, 4.3).
    hub = OidcHub(committing_database, tmp_path, f"{provider}/")
    start = hub.client.get("/sign-in/oidc", follow_redirects=False)
    assert start.status_code == 401 and OIDC_COOKIE not in start.cookies
    assert hub.oidc_failures() == [("oidc_sign_in", "wrong_issuer")]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"oidc_issuer": "http://idp.example"}, "MASH_OIDC_ISSUER must be an https"),
        ({"oidc_scope": "profile email"}, "MASH_OIDC_SCOPE must include openid"),
    ],
)
def test_oidc_sign_in_settings_that_cannot_work_are_refused(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    configured: dict[str, Any] = {
        "oidc_issuer": "https://idp.example", "oidc_audience": "mash-hub-api",
        "oidc_jwks_url": "https://idp.example/jwks", "oidc_client_id": CLIENT_ID,
    }  # fmt: skip
    settings = Settings(data_dir=tmp_path, **{**configured, **overrides})
    with pytest.raises(AuthConfigError, match=message):
        OidcSignIn(settings, OidcVerifier(settings))


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', html))


def test_signing_out_ends_the_session_at_the_provider_too(hub: OidcHub) -> None:
    """RP-initiated logout: the sign-out page posts the session's ID token (kept sealed until
    then, never in clear in the database) to the provider's end-session endpoint, which sends
    the browser back to our signed-out page."""
    hub.set_claims("staff-0002", email="worker2@council.example")
    assert hub.client.get(hub.authorize("staff-0002"), follow_redirects=False).status_code == 200
    with hub.database.transaction() as session:
        web = session.scalar(select(WebSession).where(WebSession.ended_at.is_(None)))
        assert web is not None and web.id_token_sealed is not None
        sealed = bytes(web.id_token_sealed)
    assert b"council.example" not in sealed and b"staff-0002" not in sealed
    assert b"eyJ" not in sealed  # no JWT (base64 JSON) in clear

    out = hub.client.post(
        "/sign-out", data={"csrf_token": csrf(hub.client.get("/").text)}, follow_redirects=False
    )
    assert out.status_code == 200, out.text
    assert "location" not in out.headers  # nothing in a URL: the token goes in a POST body
    assert hub.client.get("/search", follow_redirects=False).status_code in {303, 401}
    action = re.search(r'<form method="post" action="([^"]+)" data-autosubmit', out.text)
    assert action is not None and action.group(1) == f"{hub.issuer}/oauth2/end_session"
    assert f"form-action {hub.issuer}; " in out.headers["content-security-policy"]
    assert '<script src="/static/js/autosubmit.js"></script>' in out.text
    assert hub.client.get("/static/js/autosubmit.js").status_code == 200
    fields = hidden_fields(out.text)
    assert fields["client_id"] == CLIENT_ID
    assert fields["post_logout_redirect_uri"] == "http://testserver/signed-out"
    claims = jwt.decode(fields["id_token_hint"], options={"verify_signature": False})
    assert (claims["sub"], claims["iss"]) == ("staff-0002", hub.issuer)
    assert CLIENT_ID in claims["aud"]
    with hub.database.transaction() as session:
        ended = session.scalar(select(WebSession).where(WebSession.id_hash == web.id_hash))
        assert ended is not None and ended.ended_at is not None
        assert ended.id_token_sealed is None  # gone with the session

    # The provider ends its session and sends the browser back to the hub.
    provider_page = httpx.post(action.group(1), data=fields)
    assert provider_page.status_code == 200 and "End session" in provider_page.text
    assert fields["id_token_hint"] in provider_page.text  # the provider got the hint
    confirm = httpx.post(
        f"{hub.issuer}/oauth2/end_session/confirm",
        data={"redirect_uri": fields["post_logout_redirect_uri"]},
        follow_redirects=False,
    )
    assert confirm.headers["location"] == "http://testserver/signed-out"
    back = hub.client.get("/signed-out")
    assert back.status_code == 200 and f"Sign in with {PROVIDER}" in back.text


def test_a_session_from_before_the_token_was_kept_signs_out_by_client_id(hub: OidcHub) -> None:
    hub.oidc_sign_in("staff-0003")
    with hub.database.transaction() as session:
        session.execute(update(WebSession).values(id_token_sealed=None))
    out = hub.client.post("/sign-out", data={"csrf_token": csrf(hub.client.get("/").text)})
    fields = hidden_fields(out.text)
    assert fields == {
        "client_id": CLIENT_ID,
        "post_logout_redirect_uri": "http://testserver/signed-out",
    }


@pytest.fixture(scope="module")
def provider_without_logout() -> Iterator[str]:
    """A provider whose discovery document names no end-session endpoint."""
    provider_app = oidc_provider_mock.app(require_nonce=True)

    @provider_app.after_request
    def strip(response: flask.Response) -> flask.Response:
        if flask.request.path == "/.well-known/openid-configuration":
            document = response.get_json()
            document.pop("end_session_endpoint", None)
            response.set_data(json.dumps(document))
        return response

    server = werkzeug.serving.make_server("localhost", 0, provider_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def test_without_an_end_session_endpoint_signing_out_is_the_hubs_alone(
    committing_database: Database, tmp_path: Path, provider_without_logout: str
) -> None:
    hub = OidcHub(committing_database, tmp_path, provider_without_logout)
    hub.oidc_sign_in("staff-0004")
    out = hub.client.post(
        "/sign-out", data={"csrf_token": csrf(hub.client.get("/").text)}, follow_redirects=False
    )
    assert (out.status_code, out.headers["location"]) == (303, "/signed-out")
    with hub.database.transaction() as session:
        assert session.scalar(select(WebSession.id_token_sealed)) is None
    assert [e.details["reason"] for e in hub.entries("auth.signed_out")] == ["signed_out"]


def test_a_provider_out_of_reach_does_not_stop_signing_out(tmp_path: Path) -> None:
    """Discovery fails (nothing listens on the port): no provider sign-out, no error."""
    settings = Settings(
        data_dir=tmp_path, oidc_issuer="http://localhost:9", oidc_audience="mash-hub-api",
        oidc_jwks_url="http://localhost:9/jwks", oidc_client_id=CLIENT_ID,
    )  # fmt: skip
    assert OidcSignIn(settings, OidcVerifier(settings)).logout_form("a.b.c") is None
