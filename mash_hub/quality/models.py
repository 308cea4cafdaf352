"""The ``quality_issues`` table: which value of which record failed validation, and why.

No column holds personal data: the raw value is kept encrypted in the record's ``quality``
field group (under the record's own data key, so erasure shreds it with the record).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base

OPEN = "open"
CORRECTED = "corrected"
# The agency sent a new version of the record: that version carries its own issues.
SUPERSEDED = "superseded"
STATUSES = (OPEN, CORRECTED, SUPERSEDED)


class QualityIssue(Base):
    """One value of an indexed record that failed validation."""

    __tablename__ = "quality_issues"
    __table_args__ = (
        Index("ix_quality_issues_open", "feed", postgresql_where=text("status = 'open'")),
        Index("ix_quality_issues_feed_created", "feed", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), index=True
    )
    feed: Mapped[str] = mapped_column(String(64))
    source_agency: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("feed_batches.id", ondelete="RESTRICT")
    )
    field: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    # The record version that carries the corrected value.
    corrected_record_id: Mapped[uuid.UUID | None] = mapped_column()
