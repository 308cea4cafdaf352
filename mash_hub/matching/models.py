"""Tables of record linkage: runs, the links (and review items) they decided, the review queue,
reviewers' decisions, and the merge/split/create events of persons across runs.

Nothing here is personal data in clear: ids, weights, statuses, codes, and explanations that
name only the *kind* of agreement ("same date of birth +13.0"), never a value. A reviewer's
free-text reason may name people, so it is stored encrypted under a data key of its own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class LinkRun(Base):
    """One linkage run: which model, who ran it, and what it changed."""

    __tablename__ = "link_runs"
    # The latest full run (whose name frequencies every incremental link and search uses),
    # found without scanning the incremental runs, one per referral or batch.
    __table_args__ = (
        Index("ix_link_runs_full_started_at", "started_at", postgresql_where=text("mode = 'full'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    started_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    actor: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int] = mapped_column(Integer)
    model_definition: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # "full" (every current record) or "incremental" (new records against the index).
    mode: Mapped[str] = mapped_column(String(16), server_default=text("'full'"), default="full")
    # A full run's term frequencies of common names (matching/frequencies.py), AES-GCM under
    # a data key issued for the run: what incremental runs score with until the next one.
    term_frequencies: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


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


class ReviewTask(Base):
    """A pair for a person to decide: one row per record pair, refreshed by each run."""

    __tablename__ = "review_tasks"
    __table_args__ = (UniqueConstraint("record_id_l", "record_id_r"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    record_id_l: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), index=True
    )
    record_id_r: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), index=True
    )
    created_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("link_runs.id"))
    last_run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("link_runs.id"))
    # Why it is here: review (band), possible_twin, auto (a strong link a guard blocked).
    kind: Mapped[str] = mapped_column(String(32))
    match_weight: Mapped[float] = mapped_column(Float)
    weights: Mapped[dict[str, float]] = mapped_column(JSONB)
    explanation: Mapped[str] = mapped_column(Text)
    # open | decided | closed (a later run no longer needs it)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class LinkDecision(Base):
    """A reviewer's decision on a record pair: the constraint every later run obeys.

    The latest decision on a pair is the one in force (earlier ones get ``superseded_at``).
    ``reason_code`` is a code; ``reason_ciphertext`` is the optional free text, encrypted
    under a data key owned by this row's id (crypto-shreddable like a record).
    """

    __tablename__ = "link_decisions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("review_tasks.id", ondelete="SET NULL"), index=True
    )
    record_id_l: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), index=True
    )
    record_id_r: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), index=True
    )
    decision: Mapped[str] = mapped_column(String(16))  # same | different
    reason_code: Mapped[str] = mapped_column(String(32))
    reason_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    actor: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    superseded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class LinkEvent(Base):
    """What a run did to persons: ``create``, ``join`` (records added), ``merge``, ``split``."""

    __tablename__ = "link_events"
    # A person's link history (casework/links.py) is found by containment in person_ids.
    __table_args__ = (
        Index(
            "ix_link_events_person_ids",
            "person_ids",
            postgresql_using="gin",
            postgresql_ops={"person_ids": "jsonb_path_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("link_runs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    # merge: [kept, absorbed...]; split: [kept, new parts...]; create / join: [person].
    person_ids: Mapped[list[str]] = mapped_column(JSONB)
    records: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
