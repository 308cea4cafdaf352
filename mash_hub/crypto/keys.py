"""Key-encryption keys (KEKs) and the blind-index root secret.

KEKs wrap the per-record data keys (DEKs); they never leave a :class:`KeyProvider`, so a KMS or
Vault-transit provider can implement the same protocol without exporting key material. The
blind-index root secret is separate from the KEKs because blind indexes must stay stable while
KEKs rotate, and because leaking one must not expose the other.

Two providers live here:

* :class:`LocalKeyringProvider`: a JSON keyring file (mode 0600) with rotation support (of
  KEKs, and online rotation of the blind-index root: see :class:`IndexRoots`);
* :class:`EnvKeyProvider`: keys from environment variables or Docker/Kubernetes secret files.

Raw keys never appear in ``repr``/``str``, log records or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shlex
import stat
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from mash_hub.crypto.errors import (
    DecryptionError,
    KeyConfigError,
    KeyringExistsError,
    KeyringPermissionError,
    UnknownKeyError,
)

__all__ = [
    "KEY_BYTES",
    "DevelopmentKeysWarning",
    "EnvKeyProvider",
    "IndexRoots",
    "KeyProvider",
    "LocalKeyringProvider",
    "generate_dev_keyring",
    "index_root_fingerprint",
    "index_roots_of",
    "new_kek_id",
]

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
WRAP_V1 = b"\x01"
KEYRING_FORMAT = 1
_KEK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def index_root_fingerprint(root: bytes) -> str:
    """A public name for a blind-index root: a keyed derivation, so it reveals nothing of the
    root, stored in the database to tell which root its blind indexes were built under."""
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=8,
        salt=b"mash-hub|blind-index-salt|v1",
        info=b"mash-hub|index-root-fingerprint|v1",
    ).derive(root)
    return derived.hex()


@dataclass(frozen=True, eq=True)
class IndexRoots:
    """The blind-index root secrets a provider holds.

    ``current`` keys the blind indexes. ``previous`` holds the roots it replaced, oldest
    first: full-length keyed hashes (source keys, content hashes) are computed under the
    oldest root and then wrapped (HMAC) under each later one, so rotation never needs the
    agency record ids or contents they were computed from. ``pending`` exists while a
    rotation re-indexes under it.
    """

    current: bytes
    previous: tuple[bytes, ...] = ()
    pending: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"<IndexRoots current={index_root_fingerprint(self.current)} "
            f"previous={len(self.previous)} pending={self.pending is not None}>"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("IndexRoots holds keys and cannot be pickled")


def index_roots_of(provider: KeyProvider) -> IndexRoots:
    """The provider's blind-index roots (a provider without rotation support has only one)."""
    roots = getattr(provider, "index_roots", None)
    if roots is not None:
        result: IndexRoots = roots()
        return result
    return IndexRoots(provider.index_root_key())


class DevelopmentKeysWarning(UserWarning):
    """Emitted when the hub generates its own keys on first run (fine for a demo only)."""


@runtime_checkable
class KeyProvider(Protocol):
    """Holds KEKs and the blind-index root secret; never hands KEK material to callers.

    ``wrap``/``unwrap`` use AES-256-GCM (or the KMS equivalent) with ``context`` as associated
    data, so a wrapped DEK only unwraps for the record it was wrapped for.
    """

    name: str

    def kek_ids(self) -> list[str]:
        """Ids of every KEK that can still unwrap."""
        ...

    def primary_kek_id(self) -> str:
        """Id of the KEK used to wrap new DEKs."""
        ...

    def wrap(self, kek_id: str, dek: bytes, context: bytes) -> bytes:
        """Encrypt ``dek`` under KEK ``kek_id`` bound to ``context``."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        """Decrypt a blob from :meth:`wrap`; raises DecryptionError or UnknownKeyError."""
        ...

    def index_root_key(self) -> bytes:
        """32-byte secret from which blind-index keys are derived (independent of KEKs)."""
        ...


def new_kek_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique-enough KEK id such as ``kek-20261128-1a2b3c``."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d")
    return f"kek-{stamp}-{secrets.token_hex(3)}"


def _check_kek_id(kek_id: str, where: str) -> None:
    if not _KEK_ID_RE.fullmatch(kek_id):
        raise KeyConfigError(
            f"{where}: KEK id {kek_id[:70]!r} is invalid "
            "(use 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)"
        )


def _decode_key(value: str, where: str) -> bytes:
    """Strict base64 decode of a 32-byte key; errors name ``where`` and never the value."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{where} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyConfigError(
            f"{where} must decode to {KEY_BYTES} bytes (256 bits); it decodes to {len(raw)}"
        )
    return raw


def _encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _chmod_hint(path: Path) -> str:
    return f"chmod 600 {shlex.quote(str(path))}"


def read_secret_file(path: Path, *, what: str, follow_symlinks: bool) -> bytes:
    """Read a key file after checking it is a regular file that only its owner can access.

    The mode is checked on the open descriptor (fstat), so the file cannot be swapped between
    the check and the read.
    """
    flags = os.O_RDONLY | _O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyringPermissionError(
                f"{what} {path} is a symbolic link; refusing to follow it. "
                "Point the hub at the real file instead."
            ) from None
        raise KeyConfigError(f"cannot open {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyringPermissionError(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyringPermissionError(
                f"{what} {path} has mode {mode:04o}, so group or other users can access it; "
                f"refusing to use it. Fix with: {_chmod_hint(path)}"
            )
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def create_key_file(path: Path, *, what: str) -> bytes:
    """A new random 32-byte secret written to ``path`` (mode 0600); refuses to overwrite."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_bytes(KEY_BYTES)
    try:
        atomic_write(path, (_encode_key(secret) + "\n").encode("ascii"), overwrite=False)
    except KeyringExistsError:
        raise KeyringExistsError(
            f"{what} {path} already exists; refusing to overwrite it"
        ) from None
    return secret


def load_secret(
    direct: SecretStr | None,
    file_name: Path | None,
    path: Path,
    *,
    env: str,
    what: str,
    create: bool,
) -> tuple[bytes, bool]:
    """A 32-byte secret from ``env`` (base64), from ``<env>_FILE``, or from the 0600 key file
    at ``path`` (generated when missing and ``create``). Returns (secret, created).

    One path for every single-secret key (audit signing, token signing), so they share the
    same checks: never both forms, strict base64, owner-only files, no symlinked key file.
    """
    if direct is not None and file_name is not None:
        raise KeyConfigError(f"set either {env} or {env}_FILE, not both")
    if direct is not None:
        return _decode_key(direct.get_secret_value(), env), False
    if file_name is not None:
        raw = read_secret_file(file_name, what=f"{env}_FILE file", follow_symlinks=True)
        return _decode_key(_ascii(raw, str(file_name)), str(file_name)), False
    if create and not path.exists() and not path.is_symlink():
        try:
            return create_key_file(path, what=what), True
        except KeyringExistsError:
            pass  # another process created it first: load theirs
    where = f"{what} {path}"
    raw = read_secret_file(path, what=what, follow_symlinks=False)
    return _decode_key(_ascii(raw, where), where), False


def _ascii(raw: bytes, where: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyConfigError(f"{where} is not base64 text") from None


def atomic_write(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600 via a temp file in the same directory.

    With ``overwrite=False`` the final step is a hard link, which fails if ``path`` already
    exists, so two processes creating a keyring at once cannot clobber each other.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            tmp.replace(path)
        else:
            try:
                path.hardlink_to(tmp)
            except FileExistsError:
                raise KeyringExistsError(
                    f"keyring {path} already exists; refusing to overwrite it"
                ) from None
            except OSError:
                if path.exists() or path.is_symlink():
                    raise KeyringExistsError(
                        f"keyring {path} already exists; refusing to overwrite it"
                    ) from None
                tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


class _AeadKeys:
    """Shared in-memory implementation of wrap/unwrap for providers that hold raw KEKs."""

    name = "in-memory"

    def __init__(self) -> None:
        self._keks: dict[str, AESGCM] = {}
        self._retired: frozenset[str] = frozenset()
        self._primary = ""
        self._index_roots = IndexRoots(b"")
        self._batches = threading.local()

    def _set_keys(
        self,
        keks: Mapping[str, bytes],
        primary: str,
        index_roots: IndexRoots,
        retired: frozenset[str],
    ) -> None:
        self._keks = {kek_id: AESGCM(raw) for kek_id, raw in keks.items()}
        self._primary = primary
        if index_roots != self._index_roots:
            # Kept as the same object while unchanged, so indexers can cache derived keys.
            self._index_roots = index_roots
        self._retired = retired

    def _refresh(self) -> None:
        """Hook for providers whose keys can change underneath them."""

    def _current(self) -> None:
        """Refresh before a key operation, unless this thread is inside :meth:`batch`."""
        if not getattr(self._batches, "depth", 0):
            self._refresh()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Check the key source once for a run of wrap/unwrap calls, not before each one.

        A full relink unwraps one data key per record: 173,583 unwraps took 0.9 s of CPU with
        the keyring file checked before each, 0.6 s with one check per batch of 2,000. The
        check happens on entry (a keyring that became group/world-accessible, was replaced
        by a symlink or was rotated is noticed there); nested batches add no checks, and each
        thread has its own.
        """
        self._current()
        depth = getattr(self._batches, "depth", 0)
        self._batches.depth = depth + 1
        try:
            yield
        finally:
            self._batches.depth = depth

    def kek_ids(self) -> list[str]:
        self._current()
        return sorted(self._keks)

    def primary_kek_id(self) -> str:
        self._current()
        return self._primary

    def _cipher(self, kek_id: str) -> AESGCM:
        cipher = self._keks.get(kek_id)
        if cipher is not None:
            return cipher
        if kek_id in self._retired:
            raise UnknownKeyError(
                f"KEK {kek_id!r} has been retired and its key material destroyed; data keys "
                "wrapped only under it can no longer be unwrapped"
            )
        raise UnknownKeyError(f"KEK {kek_id!r} is not known to the {self.name} key provider")

    def wrap(self, kek_id: str, dek: bytes, context: bytes) -> bytes:
        self._current()
        if len(dek) != KEY_BYTES:
            raise ValueError(f"data keys must be {KEY_BYTES} bytes")
        nonce = os.urandom(NONCE_BYTES)
        return WRAP_V1 + nonce + self._cipher(kek_id).encrypt(nonce, dek, context)

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        self._current()
        cipher = self._cipher(kek_id)
        if len(wrapped) != 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES or wrapped[:1] != WRAP_V1:
            raise DecryptionError(
                f"wrapped data key under KEK {kek_id!r} is truncated or has an unknown format"
            )
        try:
            return cipher.decrypt(wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :], context)
        except InvalidTag:
            raise DecryptionError(
                f"cannot unwrap data key with KEK {kek_id!r}: authentication failed "
                "(wrong KEK, wrong record, or tampered)"
            ) from None

    def index_root_key(self) -> bytes:
        self._current()
        return self._index_roots.current

    def index_roots(self) -> IndexRoots:
        """Current, previous and pending blind-index roots (see :class:`IndexRoots`)."""
        self._current()
        return self._index_roots

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} name={self.name!r} primary={self._primary!r} "
            f"keks={sorted(self._keks)!r}>"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds keys and cannot be pickled")


class LocalKeyringProvider(_AeadKeys):
    """KEKs in a JSON keyring file that only its owner may read (mode 0600).

    Format::

        {"format": 1, "primary": "kek-20261128-1a2b3c",
         "keks": {"kek-20261128-1a2b3c": {"key": "<base64>", "created": "<iso>",
                                          "state": "active"},
                  "kek-20250101-aaaaaa": {"created": "<iso>", "retired": "<iso>",
                                          "state": "retired"}},
         "index_root_key": "<base64>",
         "index_root_previous": ["<base64>", ...],   # optional, oldest first
         "index_root_pending": "<base64>"}           # optional, during a root rotation

    Every change is an atomic rewrite under an exclusive lock on ``<path>.lock``; other
    processes notice the new file (by inode/mtime/size/mode) on their next call, or at the
    start of their next :meth:`batch`, and reload it, so a retired KEK stops working
    everywhere and a keyring made group/world-accessible or swapped for a symlink is refused.
    """

    name = "local-keyring"

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self._stamp: tuple[int, int, int, int] | None = None
        self._load()

    @classmethod
    def create(cls, path: Path | str) -> LocalKeyringProvider:
        """Create a new keyring with one primary KEK; refuses to overwrite an existing file."""
        path = Path(path)
        if path.exists() or path.is_symlink():
            raise KeyringExistsError(f"keyring {path} already exists; refusing to overwrite it")
        kek_id = new_kek_id()
        doc: dict[str, Any] = {
            "format": KEYRING_FORMAT,
            "primary": kek_id,
            "keks": {
                kek_id: {
                    "key": _encode_key(secrets.token_bytes(KEY_BYTES)),
                    "created": _utc_now_iso(),
                    "state": "active",
                }
            },
            "index_root_key": _encode_key(secrets.token_bytes(KEY_BYTES)),
        }
        atomic_write(path, cls._serialise(doc), overwrite=False)
        return cls(path)

    @staticmethod
    def _serialise(doc: Mapping[str, Any]) -> bytes:
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")

    def _file_stamp(self) -> tuple[int, int, int, int]:
        """What changes when the keyring is rewritten, replaced (a symlink too) or chmod-ed:
        any change re-reads it, and the re-read refuses a file others may access."""
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            raise KeyConfigError(f"keyring {self.path} does not exist") from None
        return (info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode)

    def _read_doc(self) -> dict[str, Any]:
        where = f"keyring {self.path}"
        raw = read_secret_file(self.path, what="keyring", follow_symlinks=False)
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeyConfigError(f"{where} is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != KEYRING_FORMAT:
            raise KeyConfigError(f"{where} has an unsupported format (expected format 1)")
        if not isinstance(doc.get("keks"), dict) or not isinstance(doc.get("primary"), str):
            raise KeyConfigError(f"{where} must have a 'primary' id and a 'keks' object")
        return doc

    def _parse(
        self, doc: Mapping[str, Any]
    ) -> tuple[dict[str, bytes], str, IndexRoots, frozenset[str]]:
        where = f"keyring {self.path}"
        keks: dict[str, bytes] = {}
        retired: set[str] = set()
        for kek_id, entry in doc["keks"].items():
            _check_kek_id(kek_id, where)
            if not isinstance(entry, dict):
                raise KeyConfigError(f"{where}: entry for KEK {kek_id!r} must be an object")
            state = entry.get("state")
            if state == "active":
                key = entry.get("key")
                if not isinstance(key, str):
                    raise KeyConfigError(f"{where}: active KEK {kek_id!r} has no key")
                keks[kek_id] = _decode_key(key, f"{where}: KEK {kek_id!r}")
            elif state == "retired":
                if "key" in entry:
                    raise KeyConfigError(f"{where}: retired KEK {kek_id!r} still has key material")
                retired.add(kek_id)
            else:
                raise KeyConfigError(f"{where}: KEK {kek_id!r} has unknown state {state!r}")
        primary = doc["primary"]
        if primary not in keks:
            raise KeyConfigError(f"{where}: primary KEK {primary!r} is not an active KEK")
        return keks, primary, self._parse_index_roots(doc, where), frozenset(retired)

    @staticmethod
    def _parse_index_roots(doc: Mapping[str, Any], where: str) -> IndexRoots:
        index_root = doc.get("index_root_key")
        if not isinstance(index_root, str):
            raise KeyConfigError(f"{where} has no index_root_key")
        previous = doc.get("index_root_previous", [])
        if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
            raise KeyConfigError(f"{where}: index_root_previous must be a list of keys")
        pending = doc.get("index_root_pending")
        if pending is not None and not isinstance(pending, str):
            raise KeyConfigError(f"{where}: index_root_pending must be a key")
        return IndexRoots(
            current=_decode_key(index_root, f"{where}: index_root_key"),
            previous=tuple(
                _decode_key(p, f"{where}: index_root_previous[{i}]") for i, p in enumerate(previous)
            ),
            pending=None
            if pending is None
            else _decode_key(pending, f"{where}: index_root_pending"),
        )

    def _load(self) -> None:
        stamp = self._file_stamp()
        self._set_keys(*self._parse(self._read_doc()))
        self._stamp = stamp

    def _refresh(self) -> None:
        if self._file_stamp() != self._stamp:
            self._load()

    def reload(self) -> None:
        """Re-read the keyring now (it is also re-read automatically when the file changes)."""
        self._load()

    @contextlib.contextmanager
    def _locked_doc(self) -> Iterator[dict[str, Any]]:
        """Yield the on-disk document under an exclusive lock, then write it back atomically."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            doc = self._read_doc()
            yield doc
            self._parse(doc)
            atomic_write(self.path, self._serialise(doc), overwrite=True)
            self._load()
        finally:
            os.close(fd)

    def add_kek(self, *, make_primary: bool = True) -> str:
        """Add a new random KEK (by default the new primary) and return its id.

        Existing wrapped DEKs keep working with their old KEK id; re-wrap them with
        :func:`mash_hub.crypto.envelope.rewrap_data_key` before retiring the old KEK.
        """
        with self._locked_doc() as doc:
            kek_id = new_kek_id()
            while kek_id in doc["keks"]:
                kek_id = new_kek_id()
            doc["keks"][kek_id] = {
                "key": _encode_key(secrets.token_bytes(KEY_BYTES)),
                "created": _utc_now_iso(),
                "state": "active",
            }
            if make_primary:
                doc["primary"] = kek_id
        logger.info("keyring %s: added KEK %s (primary=%s)", self.path, kek_id, make_primary)
        return kek_id

    def set_primary(self, kek_id: str) -> None:
        """Make an existing active KEK the one that wraps new DEKs."""
        with self._locked_doc() as doc:
            entry = doc["keks"].get(kek_id)
            if not isinstance(entry, dict) or entry.get("state") != "active":
                raise UnknownKeyError(f"KEK {kek_id!r} is not an active KEK in {self.path}")
            doc["primary"] = kek_id
        logger.info("keyring %s: primary KEK is now %s", self.path, kek_id)

    def retire_kek(self, kek_id: str) -> None:
        """Destroy a KEK's key material, keeping its id as a tombstone; refuses the primary.

        Any DEK still wrapped only under this KEK becomes permanently unreadable (this is
        also how a whole generation of data can be crypto-shredded).
        """
        with self._locked_doc() as doc:
            entry = doc["keks"].get(kek_id)
            if not isinstance(entry, dict):
                raise UnknownKeyError(f"KEK {kek_id!r} is not in keyring {self.path}")
            if doc["primary"] == kek_id:
                raise KeyConfigError(
                    f"KEK {kek_id!r} is the primary KEK of {self.path}; add or promote another "
                    "KEK before retiring it"
                )
            if entry.get("state") == "retired":
                return
            entry.pop("key", None)
            entry["state"] = "retired"
            entry["retired"] = _utc_now_iso()
        logger.warning("keyring %s: retired KEK %s (key material destroyed)", self.path, kek_id)

    def begin_index_root_rotation(self) -> bool:
        """Add a random pending blind-index root unless one exists; True if it was added.

        Every process using this keyring notices it on its next key operation and from then
        on also indexes new records under it (see :mod:`mash_hub.persons.rotation`).
        """
        with self._locked_doc() as doc:
            if doc.get("index_root_pending") is not None:
                return False
            doc["index_root_pending"] = _encode_key(secrets.token_bytes(KEY_BYTES))
        logger.info("keyring %s: added a pending blind-index root", self.path)
        return True

    def finish_index_root_rotation(self, fingerprint: str) -> bool:
        """Make the pending root (whose fingerprint the database recorded at its switch)
        current, keeping the old current root in ``index_root_previous``; True if changed.

        Idempotent: once the root with ``fingerprint`` is current nothing changes, so an
        interrupted finish is simply repeated.
        """
        with self._locked_doc() as doc:
            current = _decode_key(doc["index_root_key"], "index_root_key")
            if index_root_fingerprint(current) == fingerprint:
                return False
            pending = doc.get("index_root_pending")
            if not isinstance(pending, str) or (
                index_root_fingerprint(_decode_key(pending, "index_root_pending")) != fingerprint
            ):
                raise KeyConfigError(
                    f"keyring {self.path} holds no pending blind-index root {fingerprint}; "
                    "it is not the keyring this database was rotated with"
                )
            doc["index_root_previous"] = [
                *doc.get("index_root_previous", []),
                doc["index_root_key"],
            ]
            doc["index_root_key"] = pending
            del doc["index_root_pending"]
        logger.warning("keyring %s: blind-index root %s is now current", self.path, fingerprint)
        return True


class EnvKeyProvider(_AeadKeys):
    """Keys from environment variables, each optionally read from a secret file.

    * ``MASH_KEKS``: ``id1:<base64>,id2:<base64>`` (commas or newlines between entries);
    * ``MASH_KEK_PRIMARY``: id of the wrapping KEK (optional when there is only one KEK);
    * ``MASH_INDEX_ROOT_KEY``: base64 of the 32-byte blind-index root secret.

    Any of them may instead be given as ``<NAME>_FILE=/run/secrets/...`` (Docker/Kubernetes
    secrets); setting both forms is an error. Secret files may be symlinks (Kubernetes mounts
    use them) but the target must not be accessible to group or others.
    """

    name = "env"
    KEKS_VAR = "MASH_KEKS"
    PRIMARY_VAR = "MASH_KEK_PRIMARY"
    INDEX_ROOT_VAR = "MASH_INDEX_ROOT_KEY"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        env = os.environ if environ is None else environ
        keks_text, keks_where = self._read(env, self.KEKS_VAR, required=True)
        keks = self._parse_keks(keks_text, keks_where)
        primary_text, primary_where = self._read(env, self.PRIMARY_VAR, required=False)
        primary = primary_text.strip()
        if not primary:
            if len(keks) != 1:
                raise KeyConfigError(
                    f"{self.PRIMARY_VAR} must name the primary KEK when {keks_where} holds "
                    f"{len(keks)} KEKs"
                )
            primary = next(iter(keks))
        elif primary not in keks:
            raise KeyConfigError(f"{primary_where} names KEK {primary!r}, absent from {keks_where}")
        index_text, index_where = self._read(env, self.INDEX_ROOT_VAR, required=True)
        self._set_keys(keks, primary, IndexRoots(_decode_key(index_text, index_where)), frozenset())

    @classmethod
    def configured(cls, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the environment asks for this provider (``MASH_KEKS`` or its file form)."""
        env = os.environ if environ is None else environ
        return bool(env.get(cls.KEKS_VAR) or env.get(cls.KEKS_VAR + "_FILE"))

    @staticmethod
    def _read(env: Mapping[str, str], var: str, *, required: bool) -> tuple[str, str]:
        """Return (value, description of where it came from) for ``var`` or ``var_FILE``."""
        file_var = var + "_FILE"
        direct, file_name = env.get(var), env.get(file_var)
        if direct and file_name:
            raise KeyConfigError(f"set either {var} or {file_var}, not both")
        if file_name:
            path = Path(file_name)
            raw = read_secret_file(path, what=f"{file_var} file", follow_symlinks=True)
            try:
                return raw.decode("utf-8"), f"{file_var} ({path})"
            except UnicodeDecodeError:
                raise KeyConfigError(f"{file_var} ({path}) is not UTF-8 text") from None
        if direct:
            return direct, var
        if required:
            raise KeyConfigError(f"{var} (or {file_var}) is not set")
        return "", var

    @staticmethod
    def _parse_keks(text: str, where: str) -> dict[str, bytes]:
        keks: dict[str, bytes] = {}
        for item in re.split(r"[,\s]+", text.strip()):
            if not item:
                continue
            kek_id, sep, encoded = item.partition(":")
            if not sep:
                raise KeyConfigError(f"{where}: entries must look like <kek id>:<base64 key>")
            _check_kek_id(kek_id, where)
            if kek_id in keks:
                raise KeyConfigError(f"{where}: KEK {kek_id!r} appears twice")
            keks[kek_id] = _decode_key(encoded, f"{where}: KEK {kek_id!r}")
        if not keks:
            raise KeyConfigError(f"{where} holds no KEKs")
        return keks


def generate_dev_keyring(path: Path | str) -> LocalKeyringProvider:
    """Open the keyring at ``path``, creating it (with a loud warning) on first run.

    Meant for the embedded demo default only: losing this file makes the data unreadable, and
    anyone who copies it with the database can read everything.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        return LocalKeyringProvider(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        provider = LocalKeyringProvider.create(path)
    except KeyringExistsError:
        return LocalKeyringProvider(path)
    message = (
        f"development keys generated at {path}; back this file up (without it the data cannot "
        "be decrypted), keep it away from database backups, and use a KMS or Vault key "
        "provider in production"
    )
    logger.warning(message)
    warnings.warn(message, DevelopmentKeysWarning, stacklevel=2)
    return provider
