"""Tables of the key store: wrapped data keys and the KEKs the database depends on.

Raw keys are never stored here: a DEK is stored only wrapped by a KEK, and KEKs live with the
key provider (keyring file, environment, KMS). ``data_keys`` is keyed by the id of the row the
DEK protects (a source record, a quarantined row ...), so any table can own encrypted data.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class DataKeyRow(Base):
    """One wrapped DEK. Deleting the row crypto-shreds everything encrypted under it."""

    __tablename__ = "data_keys"

    owner_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(64), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    rewrapped_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class KekRecord(Base):
    """A KEK the database knows about (no key material): when it was primary, when retired."""

    __tablename__ = "key_encryption_keys"

    kek_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_used_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
