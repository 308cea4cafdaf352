"""The Ed25519 key that signs audit checkpoints.

Checkpoints (sequence number, head hash, time) are signed so that someone who can rewrite the
audit table, and recompute its hash chain, still cannot make the rewritten log match the
checkpoints exported outside the database. The private key therefore never goes into the
database; it lives in a file of mode 0600 (``<data dir>/audit-signing.key`` or
``MASH_AUDIT_SIGNING_KEY_PATH``), or comes from ``MASH_AUDIT_SIGNING_KEY`` /
``MASH_AUDIT_SIGNING_KEY_FILE`` in containers. Files readable by group or others are refused,
as for the keyring.

The file holds one line: the base64 encoding of the 32-byte Ed25519 seed.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.keys import create_key_file, load_secret
from mash_hub.settings import Settings

log = logging.getLogger(__name__)

SEED_BYTES = 32


def key_id_of(public_key: bytes) -> str:
    """A short, stable name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(public_key).digest()[:8].hex()


class AuditVerifyKey:
    """The public half: checks checkpoint signatures."""

    def __init__(self, public_key: bytes) -> None:
        self._public = Ed25519PublicKey.from_public_bytes(public_key)
        self.public_key = public_key
        self.key_id = key_id_of(public_key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"AuditVerifyKey(key_id={self.key_id!r})"


class AuditSigningKey(AuditVerifyKey):
    """The private signing key. Never printed, logged or pickled."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise KeyConfigError(f"an audit signing key must be {SEED_BYTES} bytes")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        super().__init__(
            self._private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def verify_key(self) -> AuditVerifyKey:
        return AuditVerifyKey(self.public_key)

    def __repr__(self) -> str:
        return f"AuditSigningKey(key_id={self.key_id!r})"

    def __reduce__(self) -> Any:
        raise TypeError("audit signing keys cannot be pickled")


def create_signing_key_file(path: Path) -> AuditSigningKey:
    """Generate a new signing key into ``path`` (mode 0600); refuses to overwrite."""
    return AuditSigningKey(create_key_file(path, what="audit signing key"))


def load_signing_key(settings: Settings, *, create: bool = False) -> AuditSigningKey:
    """The configured signing key.

    ``MASH_AUDIT_SIGNING_KEY`` or ``MASH_AUDIT_SIGNING_KEY_FILE`` win; otherwise the key file
    (``MASH_AUDIT_SIGNING_KEY_PATH``, default ``<data dir>/audit-signing.key``). With
    ``create`` a missing key file is generated (with a warning to back it up); verification
    never creates one, since a new key cannot vouch for old checkpoints.
    """
    seed, created = load_secret(
        settings.audit_signing_key,
        settings.audit_signing_key_file,
        settings.resolved_audit_signing_key_path,
        env="MASH_AUDIT_SIGNING_KEY",
        what="audit signing key",
        create=create,
    )
    key = AuditSigningKey(seed)
    if created:
        log.warning(
            "created audit checkpoint signing key %s (key id %s); back it up: without it "
            "existing checkpoints cannot be checked",
            settings.resolved_audit_signing_key_path,
            key.key_id,
        )
    return key
