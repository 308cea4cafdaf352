"""Signing in to the pages through the organisation's OIDC provider (authorization code, PKCE).

* ``begin``: a fresh browser secret (kept in the short-lived ``mash_oidc`` cookie) from which
  the ``state``, the ``nonce`` and the PKCE ``code_verifier`` are derived (HMAC), so nothing
  about the attempt is stored server-side and a callback only works in the browser that
  started it; the provider's authorization URL is built by Authlib (S256 challenge).
* ``finish``: the callback's ``state`` must be the cookie's, and the attempt at most
  10 minutes old; the code is exchanged once (with the verifier) at the provider's token
  endpoint; the ID token's signature (the provider's JWKS), issuer, audience (the pages'
  client id), expiry and nonce are checked by the API's own :class:`OidcVerifier`, whose
  ``staff_claims`` is the one mapping of claims to role and agency (unknown roles refused);
  the ID token comes back with the claims, for the session to keep sealed;
* ``logout_form``: signing out of an OIDC session at the provider too (OpenID Connect
  RP-Initiated Logout 1.0), when its discovery document names an ``end_session_endpoint``:
  the endpoint and the fields to POST to it (``id_token_hint`` when the session still has
  the ID token, ``client_id``, and ``post_logout_redirect_uri``: our ``/signed-out``).
  POST, not GET, so the ID token, which carries the provider's claims, is never in a URL.
  A provider that cannot be reached gives None: signing out of the hub never waits on it.

Failures raise :class:`AuthFailure` with a reason code for the audit log; neither tokens nor
claims go into logs, exception messages or URLs (the protocol's own ``code`` and ``state``
are the only values in the callback's query string).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from mash_hub.settings import Settings
from mash_hub.web.auth import AuthConfigError, AuthFailure, OidcVerifier, StaffClaims

ATTEMPT_LIFETIME_SECONDS = 600
CALLBACK_PATH = "/sign-in/oidc/callback"
SIGNED_OUT_PATH = "/signed-out"
_HTTP_TIMEOUT_SECONDS = 10
_DISCOVERY_LIFETIME_SECONDS = 3600


def _derive(secret: str, purpose: str, issued: int) -> str:
    digest = hmac.new(secret.encode(), f"{purpose}|{issued}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Attempt:
    """One sign-in attempt, as the browser's cookie carries it (``issued.secret``)."""

    issued: int
    secret: str

    @classmethod
    def new(cls) -> Attempt:
        return cls(int(time.time()), secrets.token_urlsafe(32))

    @classmethod
    def from_cookie(cls, value: str | None) -> Attempt | None:
        issued, _, secret = (value or "").partition(".")
        if not issued.isdigit() or len(secret) < 32:
            return None
        return cls(int(issued), secret)

    @property
    def cookie(self) -> str:
        return f"{self.issued}.{self.secret}"

    @property
    def state(self) -> str:
        return _derive(self.secret, "state", self.issued)

    @property
    def nonce(self) -> str:
        return _derive(self.secret, "nonce", self.issued)

    @property
    def code_verifier(self) -> str:
        return _derive(self.secret, "pkce", self.issued)  # 43 characters, as RFC 7636 asks


@dataclass(frozen=True)
class ProviderSignIn:
    """Who the provider vouched for, and the ID token it did so with (never logged)."""

    staff: StaffClaims
    id_token: str = field(repr=False)


@dataclass(frozen=True)
class Discovery:
    """The endpoints the pages use from the provider's discovery document."""

    authorization: str
    token: str
    end_session: str | None


@dataclass(frozen=True)
class LogoutForm:
    """Where the browser posts to sign out at the provider, and the fields it posts."""

    action: str
    fields: dict[str, str] = field(repr=False)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.action)
        return f"{parts.scheme}://{parts.netloc}"


def _must_be_https(url: str, setting: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in {"localhost", "127.0.0.1"}:
        raise AuthConfigError(f"{setting} must be an https:// URL")


class OidcSignIn:
    """The pages' client of the OIDC provider; endpoints come from its discovery document."""

    def __init__(self, settings: Settings, verifier: OidcVerifier) -> None:
        if not settings.oidc_sign_in_enabled or settings.oidc_client_id is None:
            raise AuthConfigError("OIDC sign-in needs MASH_OIDC_ISSUER, _AUDIENCE, _CLIENT_ID")
        if "openid" not in settings.oidc_scope.split():
            raise AuthConfigError("MASH_OIDC_SCOPE must include openid")
        _must_be_https(verifier.issuer, "MASH_OIDC_ISSUER")
        self.verifier = verifier
        self.client_id = settings.oidc_client_id
        secret = settings.oidc_client_secret
        self._client_secret = None if secret is None else secret.get_secret_value()
        self.scope = settings.oidc_scope
        self.provider_name = settings.oidc_provider_name
        self.redirect_uri = f"{settings.public_url.rstrip('/')}{CALLBACK_PATH}"
        self.post_logout_redirect_uri = f"{settings.public_url.rstrip('/')}{SIGNED_OUT_PATH}"
        self._discovery: Discovery | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _session(self) -> Any:
        return OAuth2Session(
            client_id=self.client_id,
            client_secret=self._client_secret,
            token_endpoint_auth_method=(
                "none" if self._client_secret is None else "client_secret_basic"
            ),
            scope=self.scope,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
        )

    def endpoints(self) -> tuple[str, str]:
        """The provider's authorization and token endpoints."""
        found = self.discovery()
        return found.authorization, found.token

    def discovery(self) -> Discovery:
        """The provider's endpoints (discovery, cached for an hour); a document naming
        another issuer is refused."""
        with self._lock:
            if self._discovery is None or time.time() - self._fetched_at > (
                _DISCOVERY_LIFETIME_SECONDS
            ):
                url = f"{self.verifier.issuer.rstrip('/')}/.well-known/openid-configuration"
                try:
                    response = requests.get(url, timeout=_HTTP_TIMEOUT_SECONDS)
                    response.raise_for_status()
                    document = response.json()
                except (requests.RequestException, ValueError):
                    raise AuthFailure("provider_unavailable", "oidc_sign_in") from None
                if not isinstance(document, dict) or document.get("issuer") != (
                    self.verifier.issuer
                ):
                    raise AuthFailure("wrong_issuer", "oidc_sign_in")
                authorize, token = (
                    document.get("authorization_endpoint"),
                    document.get("token_endpoint"),
                )
                if not isinstance(authorize, str) or not isinstance(token, str):
                    raise AuthFailure("provider_unavailable", "oidc_sign_in")
                _must_be_https(authorize, "the provider's authorization endpoint")
                _must_be_https(token, "the provider's token endpoint")
                end_session = document.get("end_session_endpoint")
                if not isinstance(end_session, str):
                    end_session = None
                else:
                    _must_be_https(end_session, "the provider's end-session endpoint")
                self._discovery = Discovery(authorize, token, end_session)
                self._fetched_at = time.time()
            return self._discovery

    def logout_form(self, id_token: str | None) -> LogoutForm | None:
        """The provider's sign-out for a session that came from it, or None when the provider
        has no end-session endpoint or cannot be reached (then only the hub's session ends)."""
        try:
            endpoint = self.discovery().end_session
        except (AuthFailure, AuthConfigError):
            return None
        if endpoint is None:
            return None
        fields = {"client_id": self.client_id}
        if id_token is not None:
            fields["id_token_hint"] = id_token
        fields["post_logout_redirect_uri"] = self.post_logout_redirect_uri
        return LogoutForm(endpoint, fields)

    def begin(self) -> tuple[Attempt, str]:
        """A new attempt and the provider's URL to send the browser to."""
        attempt = Attempt.new()
        authorize, _ = self.endpoints()
        url, _ = self._session().create_authorization_url(
            authorize, state=attempt.state, code_verifier=attempt.code_verifier,
            nonce=attempt.nonce,
        )  # fmt: skip
        return attempt, str(url)

    def finish(
        self, attempt: Attempt | None, *, state: str | None, code: str | None, error: str | None
    ) -> ProviderSignIn:
        """The member of staff the provider vouches for, or :class:`AuthFailure`."""
        if error is not None:  # starts nothing, so it need not carry the state (some omit it)
            raise AuthFailure("provider_refused", "oidc_sign_in")
        if attempt is None:
            raise AuthFailure("no_attempt", "oidc_sign_in")
        if not state or not hmac.compare_digest(attempt.state, state):
            raise AuthFailure("wrong_state", "oidc_sign_in")
        if time.time() - attempt.issued > ATTEMPT_LIFETIME_SECONDS:
            raise AuthFailure("attempt_expired", "oidc_sign_in")
        if not code:
            raise AuthFailure("missing_code", "oidc_sign_in")
        _, token_endpoint = self.endpoints()
        try:
            token = self._session().fetch_token(
                token_endpoint, grant_type="authorization_code", code=code,
                code_verifier=attempt.code_verifier, timeout=_HTTP_TIMEOUT_SECONDS,
            )  # fmt: skip
        except OAuthError:
            raise AuthFailure("code_refused", "oidc_sign_in") from None
        except (requests.RequestException, ValueError):
            raise AuthFailure("provider_unavailable", "oidc_sign_in") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise AuthFailure("missing_id_token", "oidc_sign_in")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.InvalidTokenError:
            raise AuthFailure("malformed", "oidc_sign_in") from None
        try:
            claims = self.verifier.decode(
                id_token,
                header,
                audience=self.client_id,
                required=("exp", "iat", "iss", "aud", "sub", "nonce"),
            )
            # With more than one audience, the token must have been issued to this client.
            authorized_party = claims.get("azp")
            if authorized_party is not None and authorized_party != self.client_id:
                raise AuthFailure("wrong_audience", "oidc_sign_in")
            nonce = claims.get("nonce")
            if not isinstance(nonce, str) or not hmac.compare_digest(nonce, attempt.nonce):
                raise AuthFailure("wrong_nonce", "oidc_sign_in")
            return ProviderSignIn(self.verifier.staff_claims(claims), id_token)
        except AuthFailure as failure:
            raise AuthFailure(failure.reason, "oidc_sign_in") from None
