"""Envelope encryption: per-record data keys (DEKs) wrapped by a KEK, AES-256-GCM fields.

Each record gets a random 256-bit DEK. The DEK is stored only wrapped by the provider's
primary KEK, with the record id as associated data; destroying a record's wrapped DEK
crypto-shreds every copy of its ciphertext, backups included.

Field ciphertext layout (version 1)::

    0x01 | 12-byte random nonce | AES-256-GCM(ciphertext || 16-byte tag)

The associated data is a length-prefixed encoding of (version, kind, table, column-or-group,
row id), so a ciphertext copied to another row, column or table fails to decrypt, and a
field ciphertext can never be passed off as a group ciphertext or vice versa. Plaintext is
padded (ISO/IEC 7816-4) to a multiple of 16 bytes so lengths leak only in 16-byte steps.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mash_hub.crypto.errors import DecryptionError
from mash_hub.crypto.keys import KEY_BYTES, NONCE_BYTES, TAG_BYTES, KeyProvider

__all__ = [
    "FIELD_FORMAT_V1",
    "DataKey",
    "FieldCipher",
    "GroupValue",
    "RecordId",
    "WrappedKey",
    "dek_context",
    "new_data_key",
    "rewrap_data_key",
    "unwrap_data_key",
    "wrap_data_key",
]

FIELD_FORMAT_V1: Final = 1
PAD_BLOCK: Final = 16
_HEADER = bytes([FIELD_FORMAT_V1])
_MIN_LEN = 1 + NONCE_BYTES + TAG_BYTES
_TAG_TEXT = b"s"
_TAG_BYTES_VALUE = b"b"
_TAG_GROUP = b"g"

RecordId = str | int | uuid.UUID
# Group fields are JSON values: address history is a list of objects, details may nest.
GroupValue = Any


class DataKey:
    """A 256-bit data key whose bytes never show up in repr/str or pickles."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError(f"data keys must be {KEY_BYTES} bytes")
        self._raw = bytes(raw)

    @property
    def material(self) -> bytes:
        """The raw key, for the crypto layer only."""
        return self._raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        return hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash((DataKey, self._raw))

    def __repr__(self) -> str:
        return "<DataKey (256-bit, hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("DataKey cannot be pickled")


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A DEK wrapped by KEK ``kek_id``; store both (``to_bytes`` packs them in one column)."""

    kek_id: str
    blob: bytes

    def to_bytes(self) -> bytes:
        kek = self.kek_id.encode("ascii")
        return bytes([len(kek)]) + kek + self.blob

    @classmethod
    def from_bytes(cls, packed: bytes) -> WrappedKey:
        if not packed or len(packed) < 1 + packed[0]:
            raise DecryptionError("packed wrapped key is truncated")
        size = packed[0]
        try:
            kek_id = packed[1 : 1 + size].decode("ascii")
        except UnicodeDecodeError:
            raise DecryptionError("packed wrapped key has a malformed KEK id") from None
        return cls(kek_id, packed[1 + size :])


def new_data_key() -> DataKey:
    """A fresh random DEK from the OS CSPRNG."""
    return DataKey(os.urandom(KEY_BYTES))


def _record_str(record_id: RecordId) -> str:
    return str(record_id)


def dek_context(record_id: RecordId) -> bytes:
    """Associated data binding a wrapped DEK to its record."""
    return b"mash-hub|dek|v1|" + _record_str(record_id).encode("utf-8")


def wrap_data_key(provider: KeyProvider, dek: DataKey, record_id: RecordId) -> WrappedKey:
    """Wrap ``dek`` under the provider's primary KEK, bound to ``record_id``."""
    kek_id = provider.primary_kek_id()
    return WrappedKey(kek_id, provider.wrap(kek_id, dek.material, dek_context(record_id)))


def unwrap_data_key(provider: KeyProvider, wrapped: WrappedKey, record_id: RecordId) -> DataKey:
    """Unwrap a DEK; fails (DecryptionError) if it was wrapped for another record."""
    return DataKey(provider.unwrap(wrapped.kek_id, wrapped.blob, dek_context(record_id)))


def rewrap_data_key(provider: KeyProvider, wrapped: WrappedKey, record_id: RecordId) -> WrappedKey:
    """Re-wrap under the current primary KEK (KEK rotation; field ciphertexts are untouched)."""
    if wrapped.kek_id == provider.primary_kek_id():
        return wrapped
    return wrap_data_key(provider, unwrap_data_key(provider, wrapped, record_id), record_id)


@functools.lru_cache(maxsize=1024)
def _aad_prefix(kind: bytes, table: str, name: str) -> bytes:
    """The row-independent start of :func:`_aad` (schema names only), built once."""
    out = bytearray(b"mash-hub|field|")
    out.append(FIELD_FORMAT_V1)
    for part in (kind, table.encode("utf-8"), name.encode("utf-8")):
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def _aad(kind: bytes, table: str, name: str, row_id: RecordId) -> bytes:
    """Length-prefixed (format version, kind, table, column or group, row id)."""
    row = _record_str(row_id).encode()
    return _aad_prefix(kind, table, name) + len(row).to_bytes(4, "big") + row


def _pad(data: bytes) -> bytes:
    return data + b"\x80" + b"\x00" * (-(len(data) + 1) % PAD_BLOCK)


def _unpad(data: bytes) -> bytes | None:
    end = data.rfind(b"\x80")
    if end < 0 or data[end + 1 :].strip(b"\x00"):
        return None
    return data[:end]


def _where(table: str, name: str, row_id: RecordId) -> str:
    return f"{table}.{name} for row {_record_str(row_id)}"


class _Where:
    """Error-message location, formatted only if an error is actually raised."""

    __slots__ = ("name", "row_id", "table")

    def __init__(self, table: str, name: str, row_id: RecordId) -> None:
        self.table, self.name, self.row_id = table, name, row_id

    def __str__(self) -> str:
        return _where(self.table, self.name, self.row_id)


def _encode_group(mapping: Mapping[str, GroupValue]) -> bytes:
    if not all(isinstance(key, str) for key in mapping):
        raise TypeError("group field names must be str")
    try:
        text = json.dumps(
            mapping, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError):
        # The message names no value: it may be personal data.
        raise TypeError(
            "group fields must be JSON values (str, int, float, bool, None, list, dict)"
        ) from None
    return text.encode("utf-8")


class FieldCipher:
    """AES-256-GCM with one record's DEK; reuse one instance for all fields of a record."""

    __slots__ = ("_aead",)

    def __init__(self, dek: DataKey | bytes) -> None:
        raw = dek.material if isinstance(dek, DataKey) else dek
        if len(raw) != KEY_BYTES:
            raise ValueError(f"data keys must be {KEY_BYTES} bytes")
        self._aead = AESGCM(raw)

    def __repr__(self) -> str:
        return "<FieldCipher (key hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("FieldCipher cannot be pickled")

    def _seal(self, payload: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return _HEADER + nonce + self._aead.encrypt(nonce, _pad(payload), aad)

    def _open(
        self, ciphertext: bytes, kind: bytes, table: str, name: str, row_id: RecordId
    ) -> bytes:
        aad = _aad(kind, table, name, row_id)
        where = _Where(table, name, row_id)
        if len(ciphertext) < _MIN_LEN:
            raise DecryptionError(f"cannot decrypt {where}: ciphertext is truncated")
        if ciphertext[0] != FIELD_FORMAT_V1:
            raise DecryptionError(
                f"cannot decrypt {where}: unknown ciphertext version {ciphertext[0]}"
            )
        try:
            padded = self._aead.decrypt(
                ciphertext[1 : 1 + NONCE_BYTES], ciphertext[1 + NONCE_BYTES :], aad
            )
        except InvalidTag:
            raise DecryptionError(
                f"cannot decrypt {where}: authentication failed "
                "(wrong key, ciphertext moved from another place, or tampered)"
            ) from None
        payload = _unpad(padded)
        if payload is None:
            raise DecryptionError(f"cannot decrypt {where}: malformed padding")
        return payload

    def encrypt(
        self,
        plaintext: str | bytes,
        *,
        table: str,
        column: str,
        row_id: RecordId,
        version: int = FIELD_FORMAT_V1,
    ) -> bytes:
        """Encrypt one field value bound to (table, column, row_id)."""
        _check_version(version)
        if isinstance(plaintext, str):
            payload = _TAG_TEXT + plaintext.encode("utf-8")
        elif isinstance(plaintext, bytes | bytearray | memoryview):
            payload = _TAG_BYTES_VALUE + bytes(plaintext)
        else:
            raise TypeError("field plaintext must be str or bytes")
        return self._seal(payload, _aad(b"field", table, column, row_id))

    def decrypt(
        self, ciphertext: bytes, *, table: str, column: str, row_id: RecordId
    ) -> str | bytes:
        """Decrypt a field; returns str or bytes, whichever was encrypted."""
        payload = self._open(ciphertext, b"field", table, column, row_id)
        tag, body = payload[:1], payload[1:]
        if tag == _TAG_TEXT:
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                raise DecryptionError(
                    f"cannot decrypt {_where(table, column, row_id)}: malformed text"
                ) from None
        if tag == _TAG_BYTES_VALUE:
            return body
        raise DecryptionError(f"cannot decrypt {_where(table, column, row_id)}: unknown value type")

    def decrypt_text(self, ciphertext: bytes, *, table: str, column: str, row_id: RecordId) -> str:
        """Decrypt a field that must hold text (typed convenience for callers)."""
        value = self.decrypt(ciphertext, table=table, column=column, row_id=row_id)
        if not isinstance(value, str):
            raise DecryptionError(f"{_where(table, column, row_id)} holds bytes, not text")
        return value

    def encrypt_group(
        self,
        mapping: Mapping[str, GroupValue],
        *,
        table: str,
        group: str,
        row_id: RecordId,
        version: int = FIELD_FORMAT_V1,
    ) -> bytes:
        """Encrypt several fields as one ciphertext (one nonce, one tag: cheaper than per field)."""
        _check_version(version)
        return self._seal(_TAG_GROUP + _encode_group(mapping), _aad(b"group", table, group, row_id))

    def decrypt_group(
        self, ciphertext: bytes, *, table: str, group: str, row_id: RecordId
    ) -> dict[str, GroupValue]:
        """Decrypt a group ciphertext back to its mapping."""
        payload = self._open(ciphertext, b"group", table, group, row_id)
        if payload[:1] != _TAG_GROUP:
            raise DecryptionError(
                f"cannot decrypt {_where(table, group, row_id)}: not a field group"
            )
        try:
            value = json.loads(payload[1:].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DecryptionError(
                f"cannot decrypt {_where(table, group, row_id)}: malformed group encoding"
            ) from None
        if not isinstance(value, dict):
            raise DecryptionError(
                f"cannot decrypt {_where(table, group, row_id)}: malformed group encoding"
            )
        return value


def _check_version(version: int) -> None:
    if version != FIELD_FORMAT_V1:
        raise ValueError(f"unsupported ciphertext version {version}; only 1 is defined")
