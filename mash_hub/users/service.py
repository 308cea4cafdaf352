"""Managing staff users and partner API clients, and issuing hub tokens.

Audit entries are written by the callers (the CLI today, an admin API later) in the same
transaction, with ids and codes only: a user's name is not put in the audit log.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Exists, delete, exists, func, select
from sqlalchemy.orm import Session

from mash_hub.authz.vocabulary import AGENCIES, ROLES, SOURCES
from mash_hub.crypto.tokens import TokenKey, api_key_hash, new_api_key_secret
from mash_hub.users.models import ApiClient, RevokedToken, User, UserVersion

PARTNER_ROLE = "partner_agency"
STAFF_ROLES: tuple[str, ...] = tuple(role for role in ROLES if role != PARTNER_ROLE)
# Partner staff with no system of their own (a school's safeguarding lead, a health visitor)
# sign in to the referral pages: only agencies that supply no records of their own.
PARTNER_AGENCIES: tuple[str, ...] = tuple(a for a in AGENCIES if a not in SOURCES)
USER_ROLES: tuple[str, ...] = (*STAFF_ROLES, PARTNER_ROLE)
API_KEY_PREFIX = "mash_pk_"
OIDC_NAME_PREFIX = "oidc-"  # reserved for users signing in through OIDC (users/oidc.py)
MAX_TOKEN_MINUTES = 480  # one working shift
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_API_KEY_RE = re.compile(r"^mash_pk_([0-9a-f]{32})_([A-Za-z0-9_-]{20,200})$")


class UserError(ValueError):
    """A request the service refuses (unknown role, duplicate name, ...); safe to show."""


def check_user_role(role: str, agency: str) -> None:
    """Refuse a role or agency outside the vocabulary, and a partner user of an agency that
    has staff roles of its own (police, council and social care staff are not partners)."""
    if role not in USER_ROLES:
        raise UserError(f"unknown role {role!r}; one of: {', '.join(USER_ROLES)}")
    check_agency(agency)
    if role == PARTNER_ROLE and agency not in PARTNER_AGENCIES:
        raise UserError(
            f"a {PARTNER_ROLE} user works for a partner agency: one of "
            f"{', '.join(PARTNER_AGENCIES)}"
        )


def check_agency(agency: str) -> None:
    if agency not in AGENCIES:
        raise UserError(f"unknown agency {agency!r}; one of: {', '.join(AGENCIES)}")


def add_user(session: Session, name: str, role: str, agency: str) -> User:
    _check_name(name)
    check_user_role(role, agency)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise UserError(f"a user named {name!r} already exists")
    user = User(id=uuid.uuid4(), name=name, role=role, agency=agency, disabled=False)
    session.add(user)
    session.flush()
    record_version(session, user)
    return user


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise UserError(
            "a user name is 1-100 characters: letters, digits and . _ @ - "
            "(starting with a letter or digit)"
        )
    if name.lower().startswith(OIDC_NAME_PREFIX):
        raise UserError(f"names starting {OIDC_NAME_PREFIX!r} are kept for OIDC sign-in")


def record_version(session: Session, user: User) -> None:
    """Keep the user's new state in ``user_versions``, so past audit entries keep naming
    the actor as they were when they acted. ``valid_from`` is the transaction's time, as is
    the ``occurred_at`` of the audit entry written with the change."""
    latest = session.scalar(
        select(func.max(UserVersion.version)).where(UserVersion.user_id == user.id)
    )
    session.add(
        UserVersion(
            user_id=user.id,
            version=(latest or 0) + 1,
            name=user.name,
            role=user.role,
            agency=user.agency,
            disabled=user.disabled,
        )
    )
    session.flush()


def change_user(
    session: Session,
    name: str,
    *,
    role: str | None = None,
    agency: str | None = None,
    new_name: str | None = None,
) -> User:
    """Change a user's role, agency or login name. Their tokens and sessions carry the old
    role and agency, so they stop working at the next request; the old state stays in
    ``user_versions`` for the audit log."""
    user = find_user(session, name)
    if role is None and agency is None and new_name is None:
        raise UserError("nothing to change: give a new role, agency or name")
    check_user_role(role or user.role, agency or user.agency)
    if new_name is not None and new_name != user.name:
        _check_name(new_name)
        if session.scalar(select(User.id).where(User.name == new_name)) is not None:
            raise UserError(f"a user named {new_name!r} already exists")
        user.name = new_name
    user.role = role or user.role
    user.agency = agency or user.agency
    session.flush()
    record_version(session, user)
    return user


def find_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise UserError(f"no user named {name!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def disable_user(session: Session, name: str) -> User:
    user = find_user(session, name)
    if not user.disabled:
        user.disabled = True
        session.flush()
        record_version(session, user)
    return user


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: dt.datetime


def issue_token(
    user: User,
    key: TokenKey,
    *,
    issuer: str,
    audience: str,
    minutes: int,
    now: dt.datetime | None = None,
) -> IssuedToken:
    """A signed, short-lived token for an enabled user."""
    if user.disabled:
        raise UserError(f"user {user.name!r} is disabled")
    if not 1 <= minutes <= MAX_TOKEN_MINUTES:
        raise UserError(f"a token lasts 1 to {MAX_TOKEN_MINUTES} minutes")
    issued = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    expires = issued + dt.timedelta(minutes=minutes)
    jti = uuid.uuid4().hex
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "role": user.role,
        "agency": user.agency,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "iss": issuer,
        "aud": audience,
        "jti": jti,
    }
    return IssuedToken(key.sign(claims), jti, expires)


def revoke_token(
    session: Session, jti: str, *, expires_at: dt.datetime, user_id: uuid.UUID | None = None
) -> bool:
    """Refuse the hub token ``jti`` from now until it would have expired. True when it was
    not revoked already."""
    if session.get(RevokedToken, jti) is not None:
        return False
    purge_revocations(session)
    session.add(RevokedToken(jti=jti, user_id=user_id, expires_at=expires_at))
    session.flush()
    return True


def revoked_token_exists(jti: str) -> Exists:
    """``EXISTS`` (a revocation of token ``jti``), to ask alongside another query."""
    return exists().where(RevokedToken.jti == jti)


def sign_out_everywhere(session: Session, name: str) -> User:
    """Refuse every token the user was issued before this second; tokens issued afterwards
    work. (Token ``iat`` claims are whole seconds, so a token issued earlier within the same
    second survives: a one-second window, in exchange for signing straight back in.)"""
    user = find_user(session, name)
    user.tokens_not_before = session.scalar(select(func.date_trunc("second", func.now())))
    session.flush()
    return user


def purge_revocations(session: Session, now: dt.datetime | None = None) -> int:
    """Forget revocations of tokens that have expired anyway (each revocation does this, so
    the table holds at most a shift's sign-outs); how many were forgotten."""
    cutoff = now or dt.datetime.now(dt.UTC)
    result = session.execute(delete(RevokedToken).where(RevokedToken.expires_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def add_client(session: Session, agency: str) -> tuple[ApiClient, str]:
    """A new partner client and its API key (shown once; only its hash is stored)."""
    check_agency(agency)
    secret = new_api_key_secret()
    client = ApiClient(id=uuid.uuid4(), agency=agency, key_hash=api_key_hash(secret))
    session.add(client)
    session.flush()
    return client, f"{API_KEY_PREFIX}{client.id.hex}_{secret}"


def list_clients(session: Session) -> list[ApiClient]:
    return list(session.scalars(select(ApiClient).order_by(ApiClient.created_at)))


def revoke_client(session: Session, client_id: str) -> ApiClient:
    try:
        key = uuid.UUID(client_id)
    except ValueError:
        raise UserError(f"{client_id!r} is not a client id") from None
    client = session.get(ApiClient, key)
    if client is None:
        raise UserError(f"no client {client_id}")
    if client.revoked_at is None:
        client.revoked_at = dt.datetime.now(dt.UTC)
        session.flush()
    return client


def parse_api_key(text: str) -> tuple[uuid.UUID, str] | None:
    """``(client id, secret)`` of a well-formed partner key, else None."""
    match = _API_KEY_RE.fullmatch(text)
    if match is None:
        return None
    return uuid.UUID(match.group(1)), match.group(2)
