"""The secret that signs hub-issued staff tokens, and the hash of partner API keys.

Hub-issued tokens are JWTs signed with HMAC-SHA256 (HS256) under a 32-byte random secret
that lives in its own file of mode 0600 (``<data dir>/token-signing.key`` or
``MASH_TOKEN_SIGNING_KEY_PATH``), or comes from ``MASH_TOKEN_SIGNING_KEY`` /
``MASH_TOKEN_SIGNING_KEY_FILE`` in containers, exactly like the audit signing key.

Why a separate secret and not one derived (HKDF) from the blind-index root key: the root key
cannot be rotated without recomputing every blind index, while a token secret should be
replaceable at any moment (replacing the file invalidates every outstanding token, which is
the emergency "log everyone out"); and leaking one must not expose the other. Only the hub
both signs and verifies these tokens, so a symmetric algorithm is enough; verification
accepts HS256 and nothing else.

Partner API keys are 256-bit random secrets, so one SHA-256 is a sufficient stored form
(no password stretching is needed for keys nobody chose); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import jwt

from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.keys import load_secret
from mash_hub.settings import Settings

log = logging.getLogger(__name__)

SECRET_BYTES = 32
HUB_TOKEN_ALGORITHM = "HS256"  # noqa: S105 (an algorithm name, not a secret)


class TokenKey:
    """Signs and verifies hub-issued JWTs. Never printed, logged or pickled."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_BYTES:
            raise KeyConfigError(f"a token signing key must be {SECRET_BYTES} bytes")
        self._secret = secret

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self._secret, algorithm=HUB_TOKEN_ALGORITHM)

    def verify(self, token: str, *, issuer: str, audience: str) -> dict[str, Any]:
        """The verified claims; raises :class:`jwt.InvalidTokenError` (or a subclass).

        Only HS256 is accepted, so a token claiming ``none`` or an asymmetric algorithm is
        refused before any key is used. ``exp``, ``iat``, ``iss``, ``aud``, ``sub`` and ``jti``
        must all be present.
        """
        claims: dict[str, Any] = jwt.decode(
            token,
            self._secret,
            algorithms=[HUB_TOKEN_ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
        return claims

    def __repr__(self) -> str:
        return "TokenKey(<secret>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("token signing keys cannot be pickled")


def load_token_key(settings: Settings, *, create: bool = False) -> TokenKey:
    """The configured token signing key; with ``create`` a missing key file is generated.

    Raises :class:`KeyConfigError` when it is missing (and not created) or unusable.
    """
    secret, created = load_secret(
        settings.token_signing_key,
        settings.token_signing_key_file,
        settings.resolved_token_signing_key_path,
        env="MASH_TOKEN_SIGNING_KEY",
        what="token signing key",
        create=create,
    )
    if created:
        log.info("created token signing key %s", settings.resolved_token_signing_key_path)
    return TokenKey(secret)


def api_key_hash(secret: str) -> bytes:
    """The stored form of a partner API key's secret part."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def api_key_matches(secret: str, stored: bytes) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time."""
    return hmac.compare_digest(api_key_hash(secret), stored)


def new_api_key_secret() -> str:
    """A new 256-bit partner API key secret, URL-safe."""
    return secrets.token_urlsafe(SECRET_BYTES)
