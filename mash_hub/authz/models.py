"""Tables of the access policy: published versions, access justifications, break-glass views.

* ``access_policy_versions``: every published policy (its texts and SHA-256), so each process
  enforces exactly the published version, whatever files it has on disk;
* ``access_justifications``: the free text of a purpose or a break-glass justification,
  encrypted under its own data key (it may name people; the audit log holds only its id and
  the SHA-256 of the ciphertext);
* ``break_glass_views``: one row per break-glass view, for a privacy officer's review (the
  audit log is append-only, so the review state lives here).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class AccessPolicyVersion(Base):
    __tablename__ = "access_policy_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sha256: Mapped[str] = mapped_column(String(64))
    model_text: Mapped[str] = mapped_column(Text)
    policy_text: Mapped[str] = mapped_column(Text)
    published_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    published_by: Mapped[str] = mapped_column(String(200))


class AccessJustification(Base):
    __tablename__ = "access_justifications"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    person_id: Mapped[uuid.UUID] = mapped_column(index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class BreakGlassView(Base):
    __tablename__ = "break_glass_views"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(64))
    agency: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[uuid.UUID] = mapped_column(index=True)
    justification_id: Mapped[uuid.UUID]
    occurred_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    review_outcome: Mapped[str | None] = mapped_column(String(32))
