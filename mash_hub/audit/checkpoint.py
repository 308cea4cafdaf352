"""Signed checkpoints of the audit chain's head, exported outside the database.

A checkpoint is an Ed25519 signature over (seq, head hash, time). The authoritative copy is a
line of ``<checkpoint dir>/checkpoints.jsonl``; a copy also goes to ``audit_checkpoints`` for
convenience. Someone who can rewrite ``audit_log`` and recompute every hash still cannot make
the rewritten log match a checkpoint without the signing key, which is not in the database.

One JSON object per line (keys sorted)::

    {"head_hash": "<64 hex>", "key_id": "<16 hex>", "seq": 1234,
     "signature": "<base64 Ed25519 signature>", "signed_at": "2026-11-28T14:05:00.123456+00:00",
     "version": 1}

The signed message is ``b"mash-hub audit checkpoint v1\\n<seq>\\n<head hex>\\n<signed_at>\\n"``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditCheckpoint
from mash_hub.crypto.signing import AuditSigningKey

CHECKPOINT_FILE = "checkpoints.jsonl"
FORMAT_VERSION = 1
_MESSAGE_PREFIX = b"mash-hub audit checkpoint v1\n"


class CheckpointFileError(ValueError):
    """The checkpoint file cannot be read or has a malformed line."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: bytes
    signed_at: dt.datetime
    key_id: str
    signature: bytes

    @staticmethod
    def message_for(seq: int, head_hash: bytes, signed_at: dt.datetime) -> bytes:
        when = signed_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
        return _MESSAGE_PREFIX + f"{seq}\n{head_hash.hex()}\n{when}\n".encode()

    def message(self) -> bytes:
        return self.message_for(self.seq, self.head_hash, self.signed_at)

    @classmethod
    def sign(
        cls, key: AuditSigningKey, seq: int, head_hash: bytes, signed_at: dt.datetime
    ) -> Checkpoint:
        signature = key.sign(cls.message_for(seq, head_hash, signed_at))
        return cls(seq, head_hash, signed_at, key.key_id, signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "seq": self.seq,
            "head_hash": self.head_hash.hex(),
            "signed_at": self.signed_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Checkpoint:
        """Parse one exported line's object; raises ValueError when malformed."""
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise ValueError("not a version-1 checkpoint object")
        try:
            seq = doc["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise ValueError("seq must be a positive integer")
            signed_at = dt.datetime.fromisoformat(str(doc["signed_at"]))
            if signed_at.tzinfo is None:
                raise ValueError("signed_at has no time zone")
            return cls(
                seq=seq,
                head_hash=bytes.fromhex(str(doc["head_hash"])),
                signed_at=signed_at,
                key_id=str(doc["key_id"]),
                signature=base64.b64decode(str(doc["signature"]), validate=True),
            )
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"malformed checkpoint ({exc.__class__.__name__})") from None


def checkpoint_file(directory: Path) -> Path:
    return directory / CHECKPOINT_FILE


def append_to_file(directory: Path, checkpoint: Checkpoint) -> Path:
    """Append one line (locked, fsynced) to the export file, creating it with mode 0600."""
    new_dir = not directory.exists()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = checkpoint_file(directory)
    line = json.dumps(checkpoint.to_json(), sort_keys=True, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if new_dir:
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    return path


def read_file(directory: Path) -> list[tuple[str, Checkpoint]]:
    """Every checkpoint in the export file, with where it came from ("file:line")."""
    path = checkpoint_file(directory)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointFileError(f"cannot read checkpoint file {path}: {exc}") from None
    found: list[tuple[str, Checkpoint]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append((f"{path}:{number}", Checkpoint.from_json(json.loads(line))))
        except ValueError as exc:
            raise CheckpointFileError(f"checkpoint file {path} line {number}: {exc}") from None
    return found


def read_database(session: Session) -> list[tuple[str, Checkpoint]]:
    rows = session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).scalars()
    return [
        (
            "the audit_checkpoints table",
            Checkpoint(
                row.seq, bytes(row.head_hash), row.signed_at, row.key_id, bytes(row.signature)
            ),
        )
        for row in rows
    ]


def load_checkpoints(
    engine: Engine, directory: Path | None, *, include_database: bool = True
) -> list[tuple[str, Checkpoint]]:
    """Exported checkpoints first, then the database copies (signatures are checked later)."""
    found = read_file(directory) if directory is not None else []
    if include_database:
        with Session(engine) as session:
            found.extend(read_database(session))
    return found


def latest(checkpoints: list[tuple[str, Checkpoint]]) -> Checkpoint | None:
    return max((cp for _, cp in checkpoints), key=lambda cp: cp.seq, default=None)
