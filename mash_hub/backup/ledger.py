"""The erasure ledger: one JSON line per erased person, outside the database.

A backup taken before an erasure still holds the person's wrapped data keys (until the KEK
that wrapped them is retired). Restoring it would bring the person back; the ledger, kept
beside the keys and not in the database, says whom to erase again. It holds ids and times
only (no names, no reasons: a reason is free text).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from pathlib import Path


class LedgerError(ValueError):
    """The ledger file cannot be read as a ledger."""


def append(path: Path, person_id: uuid.UUID, erased_at: dt.datetime) -> None:
    """Add one erasure, durably (fsync) before returning; the file is created 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = json.dumps({"person_id": str(person_id), "erased_at": erased_at.isoformat()})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def erased_persons(path: Path) -> list[uuid.UUID]:
    """Every person id in the ledger, in order, once each; an absent ledger is empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    seen: dict[uuid.UUID, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            seen[uuid.UUID(json.loads(line)["person_id"])] = None
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(f"{path}: line {number} is not a ledger entry") from exc
    return list(seen)
