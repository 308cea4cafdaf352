"""Tables of referrals and the MASH triage queue. No column holds personal data in clear.

* ``referrals``: one row per referral: reference, who submitted it (principal id, role,
  agency), CIN codes, consent state, status, RAG, deadlines and the decision as codes; the
  referrer's contact details, the consent reason and the decision's free-text reason are
  AES-256-GCM ciphertexts under the referral's own data key (``data_keys`` owner = referral id);
* ``referral_subjects``: which source record (in the encrypted person store, source
  ``referral``) holds each subject; the person index links those records to persons;
* ``referral_feedback``: feedback to the referrer, encrypted under the referral's data key;
* ``information_requests``: the MASH's request to one partner agency for what it holds about a
  referral's subjects, and the agency's answer (or "nothing held"); the question and the
  answer are ciphertexts under the referral's data key, everything else is codes and times;
* ``referral_idempotency_keys``: a client's ``Idempotency-Key`` (keyed hash only), the keyed
  hash of the request it came with and the response to replay, kept for 24 hours.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint("status IN ('received', 'in_triage', 'decided')", name="status"),
        CheckConstraint("rag IS NULL OR rag IN ('red', 'amber', 'green')", name="rag"),
        Index("ix_referrals_status_decision_due_at", "status", "decision_due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    submitted_by: Mapped[str] = mapped_column(String(200), index=True)
    submitter_role: Mapped[str] = mapped_column(String(64))
    submitter_agency: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    source_code: Mapped[str] = mapped_column(String(4))
    primary_need: Mapped[str] = mapped_column(String(4))
    factors: Mapped[list[str]] = mapped_column(ARRAY(String(4)))
    consent: Mapped[str] = mapped_column(String(32))
    subject_count: Mapped[int] = mapped_column(SmallInteger)
    # "incremental" (matched against the person index) or "new_persons" (no linkage model
    # or no full linkage run yet: each subject became a person of its own).
    linkage: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    rag: Mapped[str | None] = mapped_column(String(8))
    rag_set_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    rag_set_by: Mapped[str | None] = mapped_column(String(200))
    information_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision_due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str | None] = mapped_column(String(32))
    decision_reasons: Mapped[list[str] | None] = mapped_column(ARRAY(String(48)))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    # Referrer contact and consent reason (one group), and the decision's reason text.
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    decision_text: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ReferralSubject(Base):
    __tablename__ = "referral_subjects"

    referral_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("referrals.id", ondelete="RESTRICT"), primary_key=True
    )
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="RESTRICT"), unique=True
    )
    subject_role: Mapped[str] = mapped_column(String(32))
    # Whether linkage put the subject with a person the index already held.
    matched_existing: Mapped[bool] = mapped_column(Boolean)


class ReferralFeedback(Base):
    __tablename__ = "referral_feedback"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    referral_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("referrals.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    author: Mapped[str] = mapped_column(String(200))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class ReferralIdempotencyKey(Base):
    __tablename__ = "referral_idempotency_keys"

    principal: Mapped[str] = mapped_column(String(200), primary_key=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    referral_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("referrals.id", ondelete="RESTRICT"), index=True
    )
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class InformationRequest(Base):
    __tablename__ = "information_requests"
    __table_args__ = (
        CheckConstraint(
            "outcome IS NULL OR outcome IN ('information', 'nothing_held')", name="outcome"
        ),
        CheckConstraint("(answered_at IS NULL) = (outcome IS NULL)", name="answered"),
        Index("ix_information_requests_agency_answered_at", "agency", "answered_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    referral_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("referrals.id", ondelete="RESTRICT"), index=True
    )
    agency: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    requested_by: Mapped[str] = mapped_column(String(200))
    question: Mapped[bytes] = mapped_column(LargeBinary)
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    answered_by: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(16))
    # Whether the answer came after the information deadline in force when it was given.
    answered_late: Mapped[bool | None] = mapped_column(Boolean)
    answer: Mapped[bytes | None] = mapped_column(LargeBinary)
