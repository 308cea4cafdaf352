"""A person's referrals, for the person view.

The list (ids, reference, received date, status, RAG, the person's role in it) comes from the
referral tables and decrypts nothing. The concerns text lives in the ``details.referral``
group of the subject's record, so it is shown only when the person view already decrypted
that group, i.e. when the policy lets the caller see it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.persons.models import SourceRecord
from mash_hub.referrals.models import Referral, ReferralSubject

REFERRAL_SOURCE = "referral"
REFERRAL_GROUP = "details.referral"
# How long after its decision a referral may still be given as the purpose of access.
PURPOSE_WINDOW = dt.timedelta(days=30)


@dataclass(frozen=True)
class LinkedReferral:
    id: uuid.UUID
    reference: str
    received_at: dt.datetime
    status: str
    rag: str | None
    subject_role: str
    record_id: uuid.UUID
    concerns: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "reference": self.reference,
            "received_at": self.received_at.isoformat(),
            "status": self.status,
            "rag": self.rag,
            "subject_role": self.subject_role,
            "record_id": str(self.record_id),
            "concerns": self.concerns,
        }


def referrals_of_person(session: Session, person_id: uuid.UUID) -> list[LinkedReferral]:
    """The referrals naming the person through a current record, newest first."""
    rows = session.execute(
        select(Referral, ReferralSubject.subject_role, ReferralSubject.record_id)
        .join(ReferralSubject, ReferralSubject.referral_id == Referral.id)
        .join(SourceRecord, SourceRecord.id == ReferralSubject.record_id)
        .where(
            SourceRecord.person_id == person_id,
            SourceRecord.is_current.is_(True),
            SourceRecord.erased_at.is_(None),
        )
        .order_by(Referral.received_at.desc(), Referral.id)
    ).all()
    return [
        LinkedReferral(
            id=referral.id,
            reference=referral.reference,
            received_at=referral.received_at,
            status=referral.status,
            rag=referral.rag,
            subject_role=role,
            record_id=record_id,
        )
        for referral, role, record_id in rows
    ]


def with_concerns(
    referrals: list[LinkedReferral], shown: Mapping[uuid.UUID, Mapping[str, Any]]
) -> list[LinkedReferral]:
    """Add the concerns from groups the view decrypted (``shown``: record id -> groups)."""
    out = []
    for referral in referrals:
        group = shown.get(referral.record_id, {}).get(REFERRAL_GROUP) or {}
        concerns = group.get("concerns")
        out.append(
            dataclasses.replace(referral, concerns=concerns if isinstance(concerns, str) else None)
        )
    return out


def referral_purpose_problem(
    session: Session,
    reference: str,
    person_ids: Collection[uuid.UUID] | None,
    *,
    now: dt.datetime,
) -> str | None:
    """Why ``reference`` may not be the purpose of access to ``person_ids``, or None.

    A referral purpose must name an existing referral that is open, or was decided less than
    ``PURPOSE_WINDOW`` ago, and (when persons are given) one of its subjects must be one of
    those persons: the child, or anyone the referral names with them. Answers
    ``unknown_referral``, ``referral_closed`` or ``other_person``; reads ids and codes only.
    """
    referral = session.scalar(select(Referral).where(Referral.reference == reference))
    if referral is None:
        return "unknown_referral"
    if referral.status == "decided" and (
        referral.decided_at is None or referral.decided_at <= now - PURPOSE_WINDOW
    ):
        return "referral_closed"
    if person_ids is not None:
        subjects = set(
            session.scalars(
                select(SourceRecord.person_id)
                .join(ReferralSubject, ReferralSubject.record_id == SourceRecord.id)
                .where(
                    ReferralSubject.referral_id == referral.id,
                    SourceRecord.erased_at.is_(None),
                )
            )
        )
        if subjects.isdisjoint(person_ids):
            return "other_person"
    return None
