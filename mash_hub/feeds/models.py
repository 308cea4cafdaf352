"""Tables of feed ingestion: the batch ledger and the quarantine.

Neither holds plaintext personal data: the ledger holds file checksums and counts, and a
quarantined row is kept only as a ciphertext under its own data key, with machine-readable
reasons (codes and field names) and where in which file it came from.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class FeedBatch(Base):
    """One ingested file. A file's checksum is ingested at most once per feed."""

    __tablename__ = "feed_batches"
    __table_args__ = (Index("uq_feed_batches_feed_sha256", "feed", "sha256", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    feed: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    ingested_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    ingested_by: Mapped[str] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class QuarantinedRow(Base):
    """A row that failed validation, kept encrypted until it is corrected or discarded."""

    __tablename__ = "quarantined_rows"
    __table_args__ = (
        Index("ix_quarantined_rows_open", "feed", postgresql_where=text("status = 'open'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    batch_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("feed_batches.id", ondelete="RESTRICT"), index=True
    )
    feed: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(255))
    location: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSONB)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_record_id: Mapped[uuid.UUID | None] = mapped_column()
