"""Recording issues as records are written, and retiring them when a record is replaced.

Used by ingestion (``mash_hub.feeds.ingest``) in the caller's transaction; holds no values.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from mash_hub.persons.store import PreparedRecord
from mash_hub.quality.models import OPEN, SUPERSEDED, QualityIssue


def record_issues(session: Session, written: Sequence[PreparedRecord]) -> int:
    """One ``quality_issues`` row per flagged value of the records just written."""
    rows = [
        {
            "id": uuid.uuid4(),
            "record_id": p.id,
            "feed": p.feed,
            "source_agency": p.source_agency,
            "batch_id": p.batch_id,
            "field": field,
            "code": code,
            "status": OPEN,
        }
        for p in written
        for field, code in p.issues
    ]
    if rows:
        session.execute(insert(QualityIssue), rows)
    return len(rows)


def supersede_issues(session: Session, record_ids: Collection[uuid.UUID]) -> None:
    """A new version of a record replaces the old one's open issues with its own."""
    if record_ids:
        session.execute(
            update(QualityIssue)
            .where(QualityIssue.record_id.in_(list(record_ids)), QualityIssue.status == OPEN)
            .values(status=SUPERSEDED, resolved_at=dt.datetime.now(dt.UTC))
        )


def open_issue_counts(session: Session, record_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
    """How many values of each record failed validation and are not yet corrected."""
    if not record_ids:
        return {}
    rows = session.execute(
        select(QualityIssue.record_id, func.count())
        .where(QualityIssue.record_id.in_(list(record_ids)), QualityIssue.status == OPEN)
        .group_by(QualityIssue.record_id)
    ).all()
    return {record_id: int(count) for record_id, count in rows}
