"""Tables of API principals.

* ``users``: staff known to the hub (for hub-issued tokens on the embedded default); a
  disabled user's tokens stop working at their next request;
* ``user_versions``: every state a user has had (name, role, agency, disabled) and from when,
  so the audit log can name an actor as they were when they acted;
* ``revoked_tokens``: hub tokens signed out or revoked before they expire, by ``jti`` (kept
  until the token would have expired anyway);
* ``clients``: partner agencies' API clients; only the SHA-256 of a key's secret is stored;
* ``web_sessions`` and ``login_links``: signed-in browser sessions and one-time sign-in links
  (:mod:`mash_hub.users.sessions`); only the SHA-256 of each secret id is stored;
* ``rate_limit_buckets``: the callers' token buckets, shared by every server process
  (:mod:`mash_hub.web.ratelimit`); keys stored as SHA-256 digests.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    false,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from mash_hub.db.base import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(64))
    agency: Mapped[str] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # Tokens issued before this time are refused ("sign out everywhere").
    tokens_not_before: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RevokedToken(Base):
    """A hub token refused before its expiry (sign-out, or an operator's revocation)."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class UserVersion(Base):
    """One state of a user, valid from ``valid_from`` until the next version's."""

    __tablename__ = "user_versions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(64))
    agency: Mapped[str] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean)
    valid_from: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiClient(Base):
    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    agency: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A browser session. The cookie holds the secret id; the table only its SHA-256.

    ``user_id`` is set for hub users (their row is re-read on every request, so disabling a
    user ends the session); ``subject``, ``role`` and ``agency`` are what the session acts as
    (for a later OIDC sign-in, from the provider's claims, with no ``users`` row).
    ``id_token_sealed``: an OIDC session's ID token, for the provider's sign-out
    (``id_token_hint``), sealed under a key derived from the cookie's secret
    (:mod:`mash_hub.crypto.session_seal`) and deleted when the session ends.
    """

    __tablename__ = "web_sessions"

    id_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(64))
    agency: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    id_token_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class LoginLink(Base):
    """A one-time sign-in link for a hub user (``mash-hub users login-link``)."""

    __tablename__ = "login_links"

    id_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RateLimitBucket(Base):
    """One caller's token bucket for one limit (see :mod:`mash_hub.web.ratelimit`)."""

    __tablename__ = "rate_limit_buckets"

    limiter: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    refreshed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    granted: Mapped[bool] = mapped_column(Boolean)
