"""The audit table. It holds ids and codes, never plaintext personal data."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class AuditEntry(Base):
    """One entry. ``seq`` is its id (given at insert; gaps where transactions rolled back);
    ``chain_seq``, ``prev_hash`` and ``entry_hash`` stay NULL until the entry is chained after
    its commit (see :mod:`mash_hub.audit.log`); ``chain_seq`` is its gapless chain position."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(
            "(chain_seq IS NULL) = (prev_hash IS NULL) "
            "AND (chain_seq IS NULL) = (entry_hash IS NULL)",
            name="chained_together",
        ),
        Index("ix_audit_log_unchained", "seq", postgresql_where=text("chain_seq IS NULL")),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(50))
    subject_id: Mapped[str | None] = mapped_column(String(100), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    entry_hash: Mapped[bytes | None] = mapped_column(LargeBinary)


class AuditCheckpoint(Base):
    """A signed checkpoint of the chain's head, copied here for convenience.

    The authoritative copy is the JSON-lines file exported outside the database; verification
    accepts a checkpoint from either place only if its Ed25519 signature checks.
    """

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    signed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
