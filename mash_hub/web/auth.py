"""Who is calling: hub-issued staff tokens, OIDC staff tokens and partner API keys.

Credentials arrive as ``Authorization: Bearer <token or key>`` or ``X-API-Key: <key>`` (not
both). A bearer value starting ``mash_pk_`` is a partner API key; anything else must be a JWT,
routed by its (unverified) ``iss`` to exactly one verifier, each with its own fixed list of
algorithms:

* ``iss`` = ``MASH_TOKEN_ISSUER``: a hub token, HS256 only, under the hub's token secret; the
  ``users`` row is read on every request, so disabling a user (or changing their role or
  agency) stops their tokens at once;
* ``iss`` = ``MASH_OIDC_ISSUER``: an OIDC access token, RS256 or ES256 only, under a key from
  the provider's JWKS (URL or file) whose type matches the algorithm; role and agency come
  from the configured claims and must be in the vocabulary.

A failure raises :class:`AuthFailure` with a reason code for the audit log; the code never
includes any part of the credential.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.authz.policy import Caller
from mash_hub.authz.vocabulary import AGENCIES
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.tokens import TokenKey, api_key_matches, load_token_key
from mash_hub.settings import Settings
from mash_hub.users.models import ApiClient, User
from mash_hub.users.service import (
    API_KEY_PREFIX,
    PARTNER_ROLE,
    STAFF_ROLES,
    parse_api_key,
    revoked_token_exists,
)

OIDC_ALGORITHMS: dict[str, str] = {"RS256": "RSA", "ES256": "EC"}  # algorithm -> JWK kty
OIDC_LEEWAY_SECONDS = 30  # clock skew tolerated against an external provider
_LAST_USED_EVERY = dt.timedelta(minutes=1)


class AuthConfigError(KeyConfigError):
    """Authentication settings that cannot work (reported like a key configuration error)."""


class AuthFailure(Exception):  # noqa: N818 (a verdict, not a fault of the hub)
    """The credentials were missing or not accepted; ``reason`` is a code for the audit log."""

    def __init__(self, reason: str, credential: str = "none") -> None:
        super().__init__(reason)
        self.reason = reason
        self.credential = credential  # none | api_key | hub_token | oidc_token | jwt


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``id`` is namespaced: ``user:``, ``oidc:`` or ``client:``;
    ``method`` ``session`` is a signed-in browser (the pages)."""

    id: str
    kind: Literal["staff", "partner"]
    role: str
    agency: str
    method: Literal["hub_token", "oidc", "api_key", "session"]
    # A hub token's jti and expiry, so the caller can sign it out.
    token_id: str | None = None
    token_expires: dt.datetime | None = None

    def caller(self) -> Caller:
        return Caller(self.id, self.role, self.agency)


# Most specific first: PyJWT's exceptions subclass one another.
_JWT_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidSignatureError, "invalid_signature"),
    (jwt.InvalidAlgorithmError, "unsupported_algorithm"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidIssuedAtError, "not_yet_valid"),
    (jwt.DecodeError, "malformed"),
)


def _jwt_reason(exc: jwt.InvalidTokenError) -> str:
    return next((code for kind, code in _JWT_REASONS if isinstance(exc, kind)), "invalid_token")


@dataclass(frozen=True)
class StaffClaims:
    """Who a provider says a member of staff is: its subject, their role and agency."""

    subject: str
    role: str
    agency: str


class OidcVerifier:
    """Verifies access tokens of one OIDC provider against its JWKS."""

    def __init__(self, settings: Settings) -> None:
        issuer, audience = settings.oidc_issuer, settings.oidc_audience
        if not issuer or not audience:
            raise AuthConfigError("OIDC needs both MASH_OIDC_ISSUER and MASH_OIDC_AUDIENCE")
        if issuer == settings.token_issuer:
            raise AuthConfigError("MASH_OIDC_ISSUER must differ from MASH_TOKEN_ISSUER")
        url, file = settings.oidc_jwks_url, settings.oidc_jwks_file
        if (url is None) == (file is None):
            raise AuthConfigError("set exactly one of MASH_OIDC_JWKS_URL and MASH_OIDC_JWKS_FILE")
        self.issuer = issuer
        self.audience = audience
        self.role_claim = settings.oidc_role_claim
        self.agency_claim = settings.oidc_agency_claim
        self._keys: list[jwt.PyJWK] | None = None
        self._client: jwt.PyJWKClient | None = None
        if file is not None:
            self._keys = self._load_file(file)
        else:
            assert url is not None
            parts = urlsplit(url)
            if parts.scheme != "https" and parts.hostname not in {"localhost", "127.0.0.1"}:
                raise AuthConfigError("MASH_OIDC_JWKS_URL must be an https:// URL")
            self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        self._lock = threading.Lock()

    @staticmethod
    def _load_file(path: Path) -> list[jwt.PyJWK]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (OSError, ValueError, jwt.PyJWKSetError) as exc:
            raise AuthConfigError(
                f"cannot read a JWKS from {path} ({type(exc).__name__})"
            ) from None
        return [
            key
            for key in keys
            if key.public_key_use in (None, "sig") and key.key_type in OIDC_ALGORITHMS.values()
        ]

    def _key_for(self, token: str, header: Mapping[str, Any]) -> jwt.PyJWK:
        kid = header.get("kid")
        if self._client is not None:
            try:
                with self._lock:
                    if kid is not None:
                        return self._client.get_signing_key_from_jwt(token)
                    # No kid (some providers' ID tokens): only a JWKS of one key will do.
                    keys = self._client.get_signing_keys()
                if len(keys) == 1:
                    return keys[0]
                raise AuthFailure("unknown_key", "oidc_token")
            except jwt.PyJWKClientConnectionError:
                raise AuthFailure("jwks_unavailable", "oidc_token") from None
            except (jwt.PyJWKClientError, jwt.DecodeError):
                raise AuthFailure("unknown_key", "oidc_token") from None
        keys = self._keys or []
        if kid is None:
            if len(keys) == 1:
                return keys[0]
            raise AuthFailure("unknown_key", "oidc_token")
        for key in keys:
            if key.key_id == kid:
                return key
        raise AuthFailure("unknown_key", "oidc_token")

    def decode(
        self,
        token: str,
        header: Mapping[str, Any],
        *,
        audience: str | None = None,
        required: tuple[str, ...] = ("exp", "iss", "aud", "sub"),
    ) -> dict[str, Any]:
        """The token's claims once its signature (JWKS), issuer, audience (the API's, or the
        pages' client id for an ID token) and expiry are checked; else :class:`AuthFailure`."""
        algorithm = header.get("alg")
        if algorithm not in OIDC_ALGORITHMS:
            raise AuthFailure("unsupported_algorithm", "oidc_token")
        key = self._key_for(token, header)
        # The key's own (declared or implied) algorithm must be the token's: an RSA key is
        # never used for ES256, nor an EC P-384 key for ES256, nor any symmetric key at all.
        if key.key_type != OIDC_ALGORITHMS[algorithm] or key.algorithm_name != algorithm:
            raise AuthFailure("unsupported_algorithm", "oidc_token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=audience or self.audience,
                issuer=self.issuer,
                leeway=OIDC_LEEWAY_SECONDS,
                options={"require": list(required)},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthFailure(_jwt_reason(exc), "oidc_token") from None
        return claims

    def staff_claims(self, claims: Mapping[str, Any]) -> StaffClaims:
        """The one mapping of provider claims to a member of staff (API tokens and page
        sign-in alike): the subject, and a staff role and agency from the vocabulary."""
        role, agency, subject = (
            claims.get(self.role_claim),
            claims.get(self.agency_claim),
            claims.get("sub"),
        )
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise AuthFailure("missing_claim", "oidc_token")
        if role not in STAFF_ROLES or agency not in AGENCIES:
            raise AuthFailure("unmapped_role", "oidc_token")
        return StaffClaims(subject, str(role), str(agency))

    def verify(self, token: str, header: Mapping[str, Any]) -> Principal:
        staff = self.staff_claims(self.decode(token, header))
        return Principal(f"oidc:{staff.subject}", "staff", staff.role, staff.agency, "oidc")


class Authenticator:
    """Turns request headers into a :class:`Principal` or raises :class:`AuthFailure`."""

    def __init__(self, settings: Settings, token_key: TokenKey | None = None) -> None:
        self.settings = settings
        self._token_key = token_key
        self._key_lock = threading.Lock()
        self.oidc = OidcVerifier(settings) if settings.oidc_issuer else None

    def _hub_key(self) -> TokenKey | None:
        """The token secret; loaded when first needed (``mash-hub token`` may create it later)."""
        if self._token_key is None:
            cfg = self.settings
            configured = cfg.token_signing_key is not None or cfg.token_signing_key_file is not None
            path = cfg.resolved_token_signing_key_path
            if configured or path.exists() or path.is_symlink():
                with self._key_lock:
                    self._token_key = load_token_key(cfg)
        return self._token_key

    def authenticate(self, session: Session, headers: Mapping[str, str]) -> Principal:
        authorization = headers.get("authorization")
        api_key = headers.get("x-api-key")
        if authorization is not None and api_key is not None:
            raise AuthFailure("ambiguous_credentials")
        if api_key is not None:
            return self._api_key(session, api_key.strip())
        if authorization is None:
            raise AuthFailure("missing_credentials")
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise AuthFailure("unsupported_scheme")
        if value.startswith(API_KEY_PREFIX):
            return self._api_key(session, value)
        return self._jwt(session, value)

    def _api_key(self, session: Session, text: str) -> Principal:
        parsed = parse_api_key(text)
        if parsed is None:
            raise AuthFailure("malformed", "api_key")
        client_id, secret = parsed
        client = session.get(ApiClient, client_id)
        if client is None:
            raise AuthFailure("unknown_client", "api_key")
        if not api_key_matches(secret, client.key_hash):
            raise AuthFailure("invalid_key", "api_key")
        if client.revoked_at is not None:
            raise AuthFailure("client_revoked", "api_key")
        now = dt.datetime.now(dt.UTC)
        if client.last_used_at is None or now - client.last_used_at > _LAST_USED_EVERY:
            client.last_used_at = now
        return Principal(f"client:{client.id}", "partner", PARTNER_ROLE, client.agency, "api_key")

    def _jwt(self, session: Session, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise AuthFailure("malformed", "jwt") from None
        issuer = unverified.get("iss")
        if issuer == self.settings.token_issuer:
            return self._hub_token(session, token)
        if self.oidc is not None and issuer == self.oidc.issuer:
            return self.oidc.verify(token, header)
        raise AuthFailure("unknown_issuer", "jwt")

    def _hub_token(self, session: Session, token: str) -> Principal:
        key = self._hub_key()
        if key is None:
            raise AuthFailure("hub_tokens_unavailable", "hub_token")
        try:
            claims = key.verify(
                token, issuer=self.settings.token_issuer, audience=self.settings.token_audience
            )
        except jwt.InvalidTokenError as exc:
            raise AuthFailure(_jwt_reason(exc), "hub_token") from None
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise AuthFailure("missing_claim", "hub_token") from None
        jti = str(claims["jti"])
        # The user and whether this token was revoked, in one statement (one round trip).
        found = session.execute(
            select(User, revoked_token_exists(jti)).where(User.id == user_id)
        ).one_or_none()
        if found is None:
            raise AuthFailure("unknown_user", "hub_token")
        user, revoked = found
        if user.disabled:
            raise AuthFailure("user_disabled", "hub_token")
        if claims.get("role") != user.role or claims.get("agency") != user.agency:
            raise AuthFailure("claims_stale", "hub_token")
        if user.tokens_not_before is not None and (
            int(claims["iat"]) < user.tokens_not_before.timestamp()
        ):
            raise AuthFailure("signed_out", "hub_token")
        if revoked:
            raise AuthFailure("revoked", "hub_token")
        return Principal(
            f"user:{user.id}",
            "staff",
            user.role,
            user.agency,
            "hub_token",
            token_id=jti,
            token_expires=dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC),
        )
