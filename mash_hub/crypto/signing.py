"""The Ed25519 key that signs audit checkpoints.

Checkpoints (sequence number, head hash, time) are signed so that someone who can rewrite the
audit table, and recompute its hash chain, still cannot make the rewritten log match the
checkpoints exported outside the database. The private key therefore never goes into the
database; it lives in a file of mode 0600 (``<data dir>/audit-signing.key`` or
``MASH_AUDIT_SIGNING_KEY_PATH``), or comes from ``MASH_AUDIT_SIGNING_KEY`` /
``MASH_AUDIT_SIGNING_KEY_FILE`` in containers. Files readable by group or others are refused,
as for the keyring.

The file holds one line: the base64 encoding of the 32-byte Ed25519 seed.

Rotation (``mash-hub audit rotate-signing-key``) replaces the key file with a new key and
keeps the old key's *public* half in ``audit-retired-keys.json`` next to it, so checkpoints
signed before the rotation still verify. That file must be protected like the key file: a
key added to it is trusted for old checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.keys import atomic_write, create_key_file, load_secret
from mash_hub.settings import Settings

log = logging.getLogger(__name__)

SEED_BYTES = 32
RETIRED_KEYS_FILE = "audit-retired-keys.json"


def key_id_of(public_key: bytes) -> str:
    """A short, stable name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(public_key).digest()[:8].hex()


class AuditVerifyKey:
    """The public half: checks checkpoint signatures; ``retired`` are earlier keys' public
    halves, by key id, for checkpoints signed before a rotation."""

    def __init__(
        self, public_key: bytes, retired: Mapping[str, AuditVerifyKey] | None = None
    ) -> None:
        self._public = Ed25519PublicKey.from_public_bytes(public_key)
        self.public_key = public_key
        self.key_id = key_id_of(public_key)
        self.retired: dict[str, AuditVerifyKey] = dict(retired or {})

    def verifier_for(self, key_id: str) -> AuditVerifyKey | None:
        """The key that signed checkpoints naming ``key_id``: this one or a retired one."""
        if key_id == self.key_id:
            return self
        return self.retired.get(key_id)

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

    def __init__(self, seed: bytes, retired: Mapping[str, AuditVerifyKey] | None = None) -> None:
        if len(seed) != SEED_BYTES:
            raise KeyConfigError(f"an audit signing key must be {SEED_BYTES} bytes")
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        super().__init__(
            self._private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
            retired,
        )

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def verify_key(self) -> AuditVerifyKey:
        return AuditVerifyKey(self.public_key, self.retired)

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
    key = AuditSigningKey(seed, load_retired_keys(retired_keys_path(settings)))
    if created:
        log.warning(
            "created audit checkpoint signing key %s (key id %s); back it up: without it "
            "existing checkpoints cannot be checked",
            settings.resolved_audit_signing_key_path,
            key.key_id,
        )
    return key


def retired_keys_path(settings: Settings) -> Path:
    return settings.resolved_audit_signing_key_path.with_name(RETIRED_KEYS_FILE)


def load_retired_keys(path: Path) -> dict[str, AuditVerifyKey]:
    """The retired public keys by key id (none when the file does not exist)."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        keys = {}
        for entry in doc["keys"]:
            key = AuditVerifyKey(base64.b64decode(entry["public_key"], validate=True))
            if key.key_id != entry["key_id"]:
                raise ValueError("a key id does not match its public key")
            keys[key.key_id] = key
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyConfigError(
            f"{path} is not a list of retired audit signing keys ({type(exc).__name__}); "
            "restore it from backup: without it older checkpoints cannot be checked"
        ) from None
    return keys


def rotate_signing_key(settings: Settings) -> tuple[AuditSigningKey, AuditSigningKey]:
    """Retire the key in the key file and write a new one; returns (old, new).

    The old public half is written to the retired-keys file first, so a crash between the
    two steps leaves the old key in use and nothing unverifiable. Keys given through
    ``MASH_AUDIT_SIGNING_KEY[_FILE]`` are rotated in the secret store instead.
    """
    if settings.audit_signing_key is not None or settings.audit_signing_key_file is not None:
        raise KeyConfigError(
            "the audit signing key comes from MASH_AUDIT_SIGNING_KEY[_FILE]: put a new key in "
            "your secret store and add the old public key to "
            f"{RETIRED_KEYS_FILE} beside MASH_AUDIT_SIGNING_KEY_PATH"
        )
    old = load_signing_key(settings, create=False)
    path = retired_keys_path(settings)
    listed = [
        {"key_id": key.key_id, "public_key": base64.b64encode(key.public_key).decode()}
        for key in old.retired.values()
    ]
    listed.append(
        {
            "key_id": old.key_id,
            "public_key": base64.b64encode(old.public_key).decode(),
            "retired_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    atomic_write(path, (json.dumps({"keys": listed}, indent=2) + "\n").encode(), overwrite=True)
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    key_text = base64.b64encode(seed).decode("ascii") + "\n"
    atomic_write(settings.resolved_audit_signing_key_path, key_text.encode("ascii"), overwrite=True)
    retired = {**old.retired, old.key_id: old.verify_key()}
    return old, AuditSigningKey(seed, retired)
