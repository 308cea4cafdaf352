"""Exceptions raised by :mod:`mash_hub.crypto`.

Messages name files, environment variables, key ids, tables, columns and row ids so an
operator can act on them; they never contain plaintext or key material.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class for every error raised by the crypto layer."""


class KeyConfigError(CryptoError):
    """A keyring file or key variable is missing, malformed or has the wrong length."""


class KeyringPermissionError(KeyConfigError):
    """A key file is a symlink, not a regular file, or readable/writable by group or others."""


class KeyringExistsError(KeyConfigError):
    """Creating a keyring would overwrite an existing file."""


class UnknownKeyError(CryptoError):
    """A key id is unknown to the provider, or its key material has been retired."""


class DecryptionError(CryptoError):
    """Authentication failed: wrong key, ciphertext moved elsewhere, tampered or truncated."""


class IndexRootMismatchError(KeyConfigError):
    """The database's blind indexes were built under a root the key provider does not hold
    as its current or pending root (a wrong or out-of-date keyring)."""
