"""The quarantine: rows that failed validation, kept encrypted until corrected or discarded.

Nothing is silently dropped. A quarantined row keeps the agency's raw values encrypted under a
data key of its own (so it can be crypto-shredded like any record), plus reasons as codes and
field names, and the file and line it came from.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.crypto.keystore import KeyStore
from mash_hub.feeds.models import QuarantinedRow

TABLE = "quarantined_rows"
GROUP = "raw"


class QuarantineError(LookupError):
    """No such quarantined row, or it is no longer open."""


def _storable(value: Any) -> Any:
    """The raw value in a form that always encrypts: lone surrogates (JSON escapes of half a
    character) become U+FFFD, NaN and infinities their text, other odd values their text.
    A row that cannot be read must still be kept, not stop the ingest."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(_storable(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return _storable(str(value))


def quarantine(
    session: Session,
    keys: KeyStore,
    *,
    batch_id: uuid.UUID,
    feed: str,
    file_name: str,
    location: str,
    raw: dict[str, Any],
    reasons: Sequence[dict[str, str]],
) -> uuid.UUID:
    row_id = uuid.uuid4()
    issued = keys.issue(row_id)
    keys.save(session, [issued.row])
    session.add(
        QuarantinedRow(
            id=row_id,
            batch_id=batch_id,
            feed=feed,
            file_name=file_name,
            location=location,
            reasons=list(reasons),
            ciphertext=issued.cipher.encrypt_group(
                {"raw": _storable(raw)}, table=TABLE, group=GROUP, row_id=row_id
            ),
            status="open",
        )
    )
    return row_id


def get_open(session: Session, row_id: uuid.UUID) -> QuarantinedRow:
    row = session.get(QuarantinedRow, row_id, with_for_update=True)
    if row is None:
        raise QuarantineError(f"no quarantined row {row_id}")
    if row.status != "open":
        raise QuarantineError(f"quarantined row {row_id} is {row.status}, not open")
    return row


def raw_values(session: Session, keys: KeyStore, row: QuarantinedRow) -> dict[str, Any]:
    """Decrypt a quarantined row's raw values (the caller audits this access)."""
    cipher = keys.ciphers(session, [row.id]).get(row.id)
    if cipher is None or row.ciphertext is None:
        raise QuarantineError(f"quarantined row {row.id} has been erased")
    value = cipher.decrypt_group(bytes(row.ciphertext), table=TABLE, group=GROUP, row_id=row.id)
    raw = value["raw"]
    assert isinstance(raw, dict)
    return raw


def resolve(row: QuarantinedRow, status: str, record_id: uuid.UUID | None = None) -> None:
    row.status = status
    row.resolved_at = dt.datetime.now(dt.UTC)
    row.resolved_record_id = record_id


def list_rows(
    session: Session, *, feed: str | None = None, status: str | None = "open", limit: int = 100
) -> list[QuarantinedRow]:
    query = select(QuarantinedRow).order_by(QuarantinedRow.created_at, QuarantinedRow.location)
    if feed is not None:
        query = query.where(QuarantinedRow.feed == feed)
    if status is not None:
        query = query.where(QuarantinedRow.status == status)
    return list(session.scalars(query.limit(limit)))
