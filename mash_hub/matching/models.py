"""Tables of record linkage: one row per run, and the links (and review items) it decided.

Nothing here is personal data: ids, weights, statuses, and explanations that name only the
*kind* of agreement ("same date of birth +13.0"), never a value.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class LinkRun(Base):
    """One linkage run: which model, who ran it, and what it changed."""

    __tablename__ = "link_runs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    started_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    actor: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int] = mapped_column(Integer)
    model_definition: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class PersonLink(Base):
    """A scored pair a run linked (``auto``) or left for a person to decide (``review``)."""

    __tablename__ = "person_links"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("link_runs.id", ondelete="CASCADE"), index=True
    )
    record_id_l: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), index=True
    )
    record_id_r: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(32))
    match_weight: Mapped[float] = mapped_column(Float)
    weights: Mapped[dict[str, float]] = mapped_column(JSONB)
    explanation: Mapped[str] = mapped_column(Text)
