"""Data keys in the database: issue, open, re-wrap (KEK rotation), retire KEKs and shred.

This is the only place that turns a wrapped DEK from ``data_keys`` into a
:class:`~mash_hub.crypto.envelope.FieldCipher`. Services never see key material; they ask for
ciphers by owner id (the id of the row whose fields the DEK protects).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Uuid, any_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session

from mash_hub.crypto.envelope import (
    FieldCipher,
    WrappedKey,
    new_data_key,
    rewrap_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from mash_hub.crypto.errors import KeyConfigError
from mash_hub.crypto.keys import (
    EnvKeyProvider,
    KeyProvider,
    LocalKeyringProvider,
    generate_dev_keyring,
)
from mash_hub.crypto.models import DataKeyRow, KekRecord
from mash_hub.db.engine import Database
from mash_hub.settings import Settings


def load_key_provider(settings: Settings, *, create_dev_keys: bool | None = None) -> KeyProvider:
    """The configured key provider.

    On the embedded default a missing keyring is generated (development keys, with a loud
    warning); against an external database it must exist (``mash-hub keys init``).
    """
    use_env = settings.key_provider == "env" or (
        settings.key_provider == "auto" and EnvKeyProvider.configured()
    )
    if use_env:
        return EnvKeyProvider()
    path = settings.resolved_keyring_path
    if create_dev_keys is None:
        create_dev_keys = settings.uses_embedded_database
    if create_dev_keys:
        return generate_dev_keyring(path)
    if not path.exists():
        raise KeyConfigError(
            f"no keyring at {path}: create one with `mash-hub keys init`, or provide keys "
            "through MASH_KEKS and MASH_INDEX_ROOT_KEY"
        )
    return LocalKeyringProvider(path)


Owner = TypeVar("Owner", uuid.UUID, str)


def provider_batch(provider: KeyProvider) -> contextlib.AbstractContextManager[None]:
    """One check of the provider's key source for many wrap/unwrap calls, where the provider
    supports it (``batch()``, see :class:`~mash_hub.crypto.keys.LocalKeyringProvider`); other
    providers (a KMS) are unaffected."""
    batch: Callable[[], contextlib.AbstractContextManager[None]] | None = getattr(
        provider, "batch", None
    )
    return batch() if batch is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class IssuedKey:
    """A new DEK: the cipher to encrypt with now and the wrapped row to store beside the data."""

    cipher: FieldCipher
    row: dict[str, object]


@dataclass(frozen=True)
class KekStatus:
    kek_id: str
    primary: bool
    in_provider: bool
    data_keys: int
    retired: bool


# The primary KEK registered and the wrapped DEKs inserted, in one statement (data_keys has
# no foreign key to key_encryption_keys; the registration records the dependency).
# Up to this many keys are saved by one INSERT that also registers the KEK; more by COPY.
_SAVE_BY_STATEMENT = 20
_SAVE = text(
    "WITH registered AS (INSERT INTO key_encryption_keys (kek_id) VALUES (:primary)"
    " ON CONFLICT (kek_id) DO NOTHING)"
    " INSERT INTO data_keys (owner_id, kek_id, wrapped)"
    " SELECT * FROM unnest(CAST(:owners AS uuid[]), CAST(:keks AS varchar[]),"
    " CAST(:wrapped AS bytea[]))"
)


class KeyStore:
    """Wrapped DEKs in ``data_keys`` under the provider's KEKs."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider

    def issue(self, owner_id: uuid.UUID) -> IssuedKey:
        """A fresh DEK for one owner row; the caller inserts ``row`` in its transaction."""
        dek = new_data_key()
        wrapped = wrap_data_key(self.provider, dek, owner_id)
        row: dict[str, object] = {
            "owner_id": owner_id,
            "kek_id": wrapped.kek_id,
            "wrapped": wrapped.blob,
        }
        return IssuedKey(FieldCipher(dek), row)

    def register_primary(self, session: Session) -> None:
        """Record that the database now depends on the primary KEK."""
        session.execute(
            insert(KekRecord)
            .values(kek_id=self.provider.primary_kek_id())
            .on_conflict_do_nothing(index_elements=["kek_id"])
        )

    def save(self, session: Session, rows: list[dict[str, object]]) -> None:
        """Insert the wrapped-key rows of :meth:`issue` (the caller's transaction), and
        register the primary KEK (:meth:`register_primary`) in the same statement: one round
        trip, which a referral makes twice; bulk saves (an ingest chunk) go by COPY."""
        if not rows:
            return
        if len(rows) <= _SAVE_BY_STATEMENT:
            session.execute(
                _SAVE,
                {
                    "primary": self.provider.primary_kek_id(),
                    "owners": [row["owner_id"] for row in rows],
                    "keks": [row["kek_id"] for row in rows],
                    "wrapped": [row["wrapped"] for row in rows],
                },
            )
            return
        self.register_primary(session)
        # COPY: an ingest saves one key per record, 2,000 per chunk.
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy("COPY data_keys (owner_id, kek_id, wrapped) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((row["owner_id"], row["kek_id"], row["wrapped"]))

    def ciphers(
        self, session: Session, owner_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, FieldCipher]:
        """Ciphers for the owners whose DEK still exists (a shredded owner is simply absent)."""
        if not owner_ids:
            return {}
        rows = session.execute(
            select(DataKeyRow.owner_id, DataKeyRow.kek_id, DataKeyRow.wrapped).where(
                DataKeyRow.owner_id
                == any_(bindparam("owner_ids", list(owner_ids), type_=ARRAY(Uuid)))
            )
        ).all()
        return self.open_wrapped(rows)

    def open_wrapped(self, rows: Iterable[tuple[Owner, str, bytes]]) -> dict[Owner, FieldCipher]:
        """Ciphers from ``(owner id, KEK id, wrapped DEK)`` rows a caller already fetched
        (a bulk read joins them to the ciphertexts); the provider is checked once for all.
        An owner id may be given as text: the wrap binds its text form either way."""
        with provider_batch(self.provider):
            return {
                owner: FieldCipher(
                    unwrap_data_key(self.provider, WrappedKey(kek, bytes(blob)), owner)
                )
                for owner, kek, blob in rows
            }

    def shred(self, session: Session, owner_ids: Collection[uuid.UUID]) -> int:
        """Destroy the DEKs of these owners: their ciphertexts, and every copy, become noise."""
        if not owner_ids:
            return 0
        result = session.execute(
            delete(DataKeyRow).where(
                DataKeyRow.owner_id
                == any_(bindparam("owner_ids", list(owner_ids), type_=ARRAY(Uuid)))
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def check_provider_covers_database(self, session: Session) -> None:
        """Refuse to work with a provider that lacks a KEK the stored DEKs need."""
        needed = set(session.scalars(select(DataKeyRow.kek_id).distinct()))
        missing = sorted(needed - set(self.provider.kek_ids()))
        if missing:
            raise KeyConfigError(
                "the database holds data keys wrapped by KEK(s) "
                f"{', '.join(missing)} that the {self.provider.name} key provider does not "
                "have; restore the keyring or key configuration that holds them"
            )

    def status(self, session: Session) -> list[KekStatus]:
        counts = dict(
            session.execute(
                select(DataKeyRow.kek_id, func.count()).group_by(DataKeyRow.kek_id)
            ).all()
        )
        known = {row.kek_id: row for row in session.scalars(select(KekRecord))}
        provider_ids = set(self.provider.kek_ids())
        primary = self.provider.primary_kek_id()
        ids = sorted(set(counts) | set(known) | provider_ids | {primary})
        return [
            KekStatus(
                kek_id=kek,
                primary=kek == primary,
                in_provider=kek in provider_ids,
                data_keys=int(counts.get(kek, 0)),
                retired=bool(known.get(kek) and known[kek].retired_at is not None)
                or kek not in provider_ids,
            )
            for kek in ids
        ]

    def outstanding(self, session: Session) -> int:
        """How many DEKs are not yet wrapped by the primary KEK (an unfinished rotation)."""
        return int(
            session.scalar(
                select(func.count())
                .select_from(DataKeyRow)
                .where(DataKeyRow.kek_id != self.provider.primary_kek_id())
            )
            or 0
        )

    def rewrap_batch(self, session: Session, batch_size: int) -> int:
        """Re-wrap up to ``batch_size`` DEKs under the primary KEK; returns how many.

        Rows are locked with SKIP LOCKED, so several rotators (or a resumed one) never
        fight over a row, and readers keep reading: the old KEK still unwraps until retired.
        """
        primary = self.provider.primary_kek_id()
        rows = session.execute(
            select(DataKeyRow.owner_id, DataKeyRow.kek_id, DataKeyRow.wrapped)
            .where(DataKeyRow.kek_id != primary)
            .order_by(DataKeyRow.owner_id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        self.register_primary(session)
        now = dt.datetime.now(dt.UTC)
        updates = []
        with provider_batch(self.provider):
            for owner, kek, blob in rows:
                rewrapped = rewrap_data_key(self.provider, WrappedKey(kek, bytes(blob)), owner)
                updates.append(
                    {
                        "owner_id": owner,
                        "kek_id": rewrapped.kek_id,
                        "wrapped": rewrapped.blob,
                        "rewrapped_at": now,
                    }
                )
        session.execute(update(DataKeyRow), updates)
        return len(rows)

    def retire(self, session: Session, kek_id: str) -> None:
        """Mark a KEK retired once no DEK depends on it; refuses the primary and KEKs in use.

        The key material is destroyed by :meth:`destroy` after this transaction commits, so a
        failed commit never leaves a destroyed key without its record and audit entry.
        """
        if kek_id == self.provider.primary_kek_id():
            raise KeyConfigError(f"KEK {kek_id} is the primary KEK; rotate to a new one first")
        if kek_id not in self.provider.kek_ids():
            raise KeyConfigError(f"the {self.provider.name} key provider has no KEK {kek_id}")
        # Waits for writers still inserting data keys (perhaps under this KEK) to commit.
        session.execute(text("LOCK TABLE data_keys IN SHARE MODE"))
        in_use = session.scalar(
            select(func.count()).select_from(DataKeyRow).where(DataKeyRow.kek_id == kek_id)
        )
        if in_use:
            raise KeyConfigError(
                f"KEK {kek_id} still wraps {in_use} data key(s); finish `mash-hub keys rotate` "
                "before retiring it"
            )
        session.execute(
            insert(KekRecord)
            .values(kek_id=kek_id, retired_at=func.now())
            .on_conflict_do_update(index_elements=["kek_id"], set_={"retired_at": func.now()})
        )

    def destroy(self, kek_id: str) -> bool:
        """Destroy a retired KEK's material where the hub holds it; False if the operator must
        (keys from the environment or a KMS are removed there)."""
        if isinstance(self.provider, LocalKeyringProvider):
            self.provider.retire_kek(kek_id)
            return True
        return False


def rotate(
    db: Database,
    keys: KeyStore,
    *,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-wrap every DEK under the primary KEK, one committed batch at a time.

    A job that owns its transactions: each batch commits on its own, so an interruption
    loses at most one batch of work and a re-run resumes where it stopped.
    """
    with db.transaction() as session:
        total = keys.outstanding(session)
    done = 0
    if progress is not None:
        progress(done, total)
    while True:
        with db.transaction() as session:
            count = keys.rewrap_batch(session, batch_size)
        if count == 0:
            return done
        done += count
        if progress is not None:
            progress(done, max(total, done))
