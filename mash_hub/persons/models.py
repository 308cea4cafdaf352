"""Tables of the person store. No column here holds plaintext personal data.

* ``persons``: one row per person in the index (linkage assigns records to persons);
* ``source_records``: one row per record an agency supplied, with only non-personal metadata
  (which feed and agency, which version, which person) and a keyed hash of the agency's own
  record id for replacement look-ups;
* ``record_field_groups``: one AES-256-GCM ciphertext per record and policy field group, so a
  caller fetches and decrypts only the groups the access policy lets it see;
* ``blind_index``: truncated keyed hashes of normalised values, for search and candidate
  retrieval without decryption (while a root rotation runs, also the pending root's values,
  under the other bank of index ids: see :mod:`mash_hub.crypto.blind_index`);
* ``index_root_state``: one row: which root the blind indexes and full-length keyed hashes
  are keyed by (its fingerprint), how many rotations there have been, and the pending root.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class SourceRecord(Base):
    __tablename__ = "source_records"
    __table_args__ = (
        Index(
            "uq_source_records_current_source_key",
            "feed",
            "source_key",
            unique=True,
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    feed: Mapped[str] = mapped_column(String(64))
    source_agency: Mapped[str] = mapped_column(String(64), index=True)
    source_key: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    person_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("persons.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # A keyed hash of the record's standardised content: a re-sent, unchanged record is
    # recognised without decrypting anything.
    content_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("feed_batches.id", ondelete="RESTRICT"), index=True
    )
    superseded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RecordFieldGroup(Base):
    __tablename__ = "record_field_groups"

    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), primary_key=True
    )
    group_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class BlindIndexEntry(Base):
    __tablename__ = "blind_index"

    index_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_records.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class IndexRootState(Base):
    """Which blind-index root the database is keyed by; writers read it under a lock that
    the rotation's switch takes exclusively, so no value under a left root gets in."""

    __tablename__ = "index_root_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # None until the first rotation records it (any root was accepted before).
    root_fingerprint: Mapped[str | None] = mapped_column(String(32))
    pending_fingerprint: Mapped[str | None] = mapped_column(String(32))
    switched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
