"""Sealing a value for the life of one browser session, under a key only its cookie holds.

A browser session's secret (256 random bits) lives in the browser's cookie; the database keeps
only its SHA-256. A value sealed here is AES-256-GCM under a key derived from that secret
(HKDF-SHA256, one key per purpose), so a copy of the database, or of a backup, cannot open it:
only a request carrying the cookie can. Used for the OIDC ID token that signing out hands back
to the identity provider (``id_token_hint``): it carries the provider's claims about the
member of staff, so it is never stored in clear, and it is deleted when the session ends.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mash_hub.crypto.envelope import FieldCipher
from mash_hub.crypto.keys import KEY_BYTES

_TABLE = "web_sessions"
_ROW = "session"


def _cipher(session_secret: str, purpose: str) -> FieldCipher:
    if len(session_secret) < 32:
        raise ValueError("a session secret has at least 256 bits (43 URL-safe characters)")
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=f"mash-hub session seal v1|{purpose}".encode(),
    ).derive(session_secret.encode("ascii"))
    return FieldCipher(key)


def seal_for_session(session_secret: str, value: str, *, purpose: str) -> bytes:
    """``value`` sealed for the session whose cookie holds ``session_secret``."""
    return _cipher(session_secret, purpose).encrypt(
        value, table=_TABLE, column=purpose, row_id=_ROW
    )


def open_for_session(session_secret: str, sealed: bytes, *, purpose: str) -> str:
    """The value of :func:`seal_for_session`; :class:`~mash_hub.crypto.errors.DecryptionError`
    for another session's secret, another purpose or a changed ciphertext."""
    value = _cipher(session_secret, purpose).decrypt(
        sealed, table=_TABLE, column=purpose, row_id=_ROW
    )
    if not isinstance(value, str):
        raise TypeError("a session seal holds text")
    return value
