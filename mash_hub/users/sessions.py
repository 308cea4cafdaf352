"""Browser sessions and one-time sign-in links: signing in without an identity provider.

* ``issue_login_link``: a one-time link secret for an enabled hub user, valid for 10 minutes
  (``mash-hub users login-link NAME``, ``mash-hub demo``);
* ``redeem_login_link``: the link's secret, once, becomes a new session;
* ``start_session``: the one way a session begins; link sign-in and OIDC sign-in
  (``web/pages/signin.py``, with the row from :mod:`mash_hub.users.oidc`) both call it;
* ``resume_session``: each request's check: ends the session (and says why) when it was
  signed out, idle for 15 minutes, older than 8 hours, or its user was disabled; else it
  refreshes role and agency from the user's row and the idle clock;
* ``end_session``: sign-out; it hands back an OIDC session's ID token, which
  ``start_session`` sealed under a key derived from the session's secret
  (:mod:`mash_hub.crypto.session_seal`: the database cannot open it), for the provider's
  sign-out. Every end of a session deletes it.

Secrets are 256-bit random values; the tables store only their SHA-256, so a copy of the
database lets nobody sign in. Each step writes its audit entry (``auth.login_link_issued``,
``auth.signed_in``, ``auth.signed_out``, ``auth.failed``) in the caller's transaction, naming
the session by a short reference derived from its hash, never by its secret.
CSRF tokens are derived from the session secret (HMAC), so nothing more is stored for them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.authz.policy import Caller
from mash_hub.crypto.errors import DecryptionError
from mash_hub.crypto.session_seal import open_for_session, seal_for_session
from mash_hub.users.models import LoginLink, User, WebSession
from mash_hub.users.service import UserError

LINK_LIFETIME = dt.timedelta(minutes=10)
IDLE_TIMEOUT = dt.timedelta(minutes=15)
ABSOLUTE_TIMEOUT = dt.timedelta(hours=8)
SIGN_IN_PATH = "/sign-in"
SEAL_PURPOSE = "oidc_id_token"


class SignInRefused(Exception):  # noqa: N818 (a verdict)
    """A link that cannot sign anyone in; ``reason`` is a code for the audit log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SessionEnded(Exception):  # noqa: N818 (a verdict)
    """The session is over (``reason``: signed_out, idle, expired, user_disabled, unknown)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedLink:
    secret: str
    expires_at: dt.datetime

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}{SIGN_IN_PATH}?token={self.secret}"


@dataclass(frozen=True)
class ActiveSession:
    """A live session: who it acts as (``subject`` is the principal id, ``user:<uuid>``)."""

    secret: str
    subject: str
    name: str
    role: str
    agency: str
    user_id: uuid.UUID | None
    method: str

    @property
    def csrf_token(self) -> str:
        return csrf_token(self.secret)

    def caller(self) -> Caller:
        return Caller(self.subject, self.role, self.agency)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii", "replace")).digest()


def session_ref(id_hash: bytes) -> str:
    """A short, non-secret name for a session in the audit log."""
    return id_hash[:8].hex()


def csrf_token(secret: str) -> str:
    """The CSRF token of a session (every form carries it; a POST without it is refused)."""
    return hmac.new(secret.encode(), b"mash-hub csrf v1", hashlib.sha256).hexdigest()


def csrf_matches(secret: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(csrf_token(secret), token)


def issue_login_link(
    session: Session, user: User, *, actor: str, now: dt.datetime | None = None
) -> IssuedLink:
    """A one-time sign-in link for an enabled user, valid for 10 minutes (audited)."""
    if user.disabled:
        raise UserError(f"user {user.name!r} is disabled")
    issued = _now(now)
    secret = secrets.token_urlsafe(32)
    link = LoginLink(
        id_hash=secret_hash(secret),
        user_id=user.id,
        created_at=issued,
        expires_at=issued + LINK_LIFETIME,
    )
    session.add(link)
    session.flush()
    audit(
        session,
        AuditEvent(
            actor,
            "auth.login_link_issued",
            "user",
            str(user.id),
            {"link": session_ref(link.id_hash), "expires_at": link.expires_at.isoformat()},
        ),
    )
    return IssuedLink(secret, link.expires_at)


def redeem_login_link(
    session: Session, secret: str, *, now: dt.datetime | None = None
) -> ActiveSession:
    """Use a link once: a new session for its user, or :class:`SignInRefused` (the caller
    audits the failure, as it knows the client's address)."""
    moment = _now(now)
    link = session.scalar(
        select(LoginLink).where(LoginLink.id_hash == secret_hash(secret)).with_for_update()
    )
    if link is None:
        raise SignInRefused("unknown_link")
    if link.used_at is not None:
        raise SignInRefused("link_used")
    if moment >= link.expires_at:
        raise SignInRefused("link_expired")
    user = session.get(User, link.user_id)
    if user is None or user.disabled:
        raise SignInRefused("user_disabled")
    link.used_at = moment
    return start_session(
        session,
        user=user,
        subject=f"user:{user.id}",
        name=user.name,
        role=user.role,
        agency=user.agency,
        method="login_link",
        now=moment,
    )


def start_session(
    session: Session,
    *,
    user: User | None,
    subject: str,
    name: str,
    role: str,
    agency: str,
    method: str,
    id_token: str | None = None,
    now: dt.datetime | None = None,
) -> ActiveSession:
    """Begin a session for a signed-in member of staff (audited as ``auth.signed_in``);
    ``id_token`` (OIDC) is kept sealed for :func:`end_session`."""
    moment = _now(now)
    secret = secrets.token_urlsafe(32)
    row = WebSession(
        id_hash=secret_hash(secret),
        user_id=None if user is None else user.id,
        subject=subject,
        role=role,
        agency=agency,
        method=method,
        created_at=moment,
        last_seen_at=moment,
        id_token_sealed=None
        if id_token is None
        else seal_for_session(secret, id_token, purpose=SEAL_PURPOSE),
    )
    session.add(row)
    session.flush()
    audit(
        session,
        AuditEvent(
            subject,
            "auth.signed_in",
            "user" if user is not None else "subject",
            str(user.id) if user is not None else subject,
            {"method": method, "session": session_ref(row.id_hash), "role": role, "agency": agency},
        ),
    )
    return ActiveSession(
        secret, subject, name, role, agency, None if user is None else user.id, method
    )


def resume_session(
    session: Session, secret: str, *, now: dt.datetime | None = None
) -> ActiveSession:
    """The live session for a cookie's secret, or :class:`SessionEnded` (ending it first,
    audited, when it has just timed out or its user was disabled)."""
    moment = _now(now)
    row = session.get(WebSession, secret_hash(secret))
    if row is None:
        raise SessionEnded("unknown")
    if row.ended_at is not None:
        raise SessionEnded("signed_out")
    reason: str | None = None
    name = row.subject
    role, agency = row.role, row.agency
    if moment - row.created_at >= ABSOLUTE_TIMEOUT:
        reason = "expired"
    elif moment - row.last_seen_at >= IDLE_TIMEOUT:
        reason = "idle"
    elif row.user_id is not None:
        user = session.get(User, row.user_id)
        if user is None or user.disabled:
            reason = "user_disabled"
        else:
            name, role, agency = user.name, user.role, user.agency
    if reason is not None:
        _end(session, row, reason, moment)
        raise SessionEnded(reason)
    row.role, row.agency, row.last_seen_at = role, agency, moment
    return ActiveSession(secret, row.subject, name, role, agency, row.user_id, row.method)


def end_session(
    session: Session, secret: str, *, reason: str = "signed_out", now: dt.datetime | None = None
) -> str | None:
    """Sign out (a no-op for a session already ended). Returns the session's OIDC ID token,
    if it has one, for the provider's sign-out (``id_token_hint``); the row keeps none."""
    row = session.get(WebSession, secret_hash(secret))
    if row is None or row.ended_at is not None:
        return None
    id_token = None
    if row.id_token_sealed is not None:
        try:
            id_token = open_for_session(secret, bytes(row.id_token_sealed), purpose=SEAL_PURPOSE)
        except DecryptionError:
            id_token = None  # the provider's sign-out then goes by client id alone
    _end(session, row, reason, _now(now))
    return id_token


def _end(session: Session, row: WebSession, reason: str, moment: dt.datetime) -> None:
    row.ended_at, row.end_reason = moment, reason
    row.id_token_sealed = None
    session.flush()
    audit(
        session,
        AuditEvent(
            row.subject,
            "auth.signed_out",
            "user" if row.user_id is not None else "subject",
            str(row.user_id) if row.user_id is not None else row.subject,
            {"session": session_ref(row.id_hash), "reason": reason},
        ),
    )
