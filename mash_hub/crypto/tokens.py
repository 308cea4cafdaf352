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

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import jwt

from mash_hub.crypto.errors import KeyConfigError, KeyringExistsError
from mash_hub.crypto.keys import _atomic_write, read_secret_file
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


def _decode(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{where} is not valid base64") from None
    if len(raw) != SECRET_BYTES:
        raise KeyConfigError(f"{where} must decode to {SECRET_BYTES} bytes, not {len(raw)}")
    return raw


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyConfigError(f"{where} is not base64 text") from None


def load_token_key(settings: Settings, *, create: bool = False) -> TokenKey:
    """The configured token signing key; with ``create`` a missing key file is generated.

    Raises :class:`KeyConfigError` when it is missing (and not created) or unusable.
    """
    direct, file_name = settings.token_signing_key, settings.token_signing_key_file
    if direct is not None and file_name is not None:
        raise KeyConfigError(
            "set either MASH_TOKEN_SIGNING_KEY or MASH_TOKEN_SIGNING_KEY_FILE, not both"
        )
    if direct is not None:
        return TokenKey(_decode(direct.get_secret_value(), "MASH_TOKEN_SIGNING_KEY"))
    if file_name is not None:
        raw = read_secret_file(
            file_name, what="MASH_TOKEN_SIGNING_KEY_FILE file", follow_symlinks=True
        )
        return TokenKey(_decode(_text(raw, str(file_name)), str(file_name)))
    path = settings.resolved_token_signing_key_path
    if create and not path.exists() and not path.is_symlink():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = secrets.token_bytes(SECRET_BYTES)
        try:
            _atomic_write(path, base64.b64encode(secret) + b"\n", overwrite=False)
        except KeyringExistsError:
            pass  # another process created it first: load theirs
        else:
            log.info("created token signing key %s", path)
            return TokenKey(secret)
    raw = read_secret_file(path, what="token signing key", follow_symlinks=False)
    where = f"token signing key {path}"
    return TokenKey(_decode(_text(raw, where), where))


def api_key_hash(secret: str) -> bytes:
    """The stored form of a partner API key's secret part."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def api_key_matches(secret: str, stored: bytes) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time."""
    return hmac.compare_digest(api_key_hash(secret), stored)


def new_api_key_secret() -> str:
    """A new 256-bit partner API key secret, URL-safe."""
    return secrets.token_urlsafe(SECRET_BYTES)
