"""The ``users`` row of someone who signs in to the pages through the OIDC provider.

A provider's person is keyed by issuer and subject: their row's login name is
``oidc-`` and 24 hex digits of SHA-256(issuer, subject), so nothing the provider says about
them (names, e-mail addresses) is stored, and the same person always finds the same row.
The first sign-in creates the row; a later one with another role or agency changes it.
Either way a ``user_versions`` row keeps the new state, so the audit log names the actor as
they were; ``sign_in_oidc_user`` audits the change and starts the session. A disabled row is
refused (the provider cannot re-enable it): an administrator disables such a user with
``mash-hub users disable oidc-…`` as any other. Names with the ``oidc-`` prefix are reserved
for these rows (``add_user`` refuses them).
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.users.models import User
from mash_hub.users.service import OIDC_NAME_PREFIX, check_user_role, record_version
from mash_hub.users.sessions import ActiveSession, start_session


class OidcUserDisabledError(Exception):
    """The provider's person has a disabled ``users`` row."""


def oidc_user_name(issuer: str, subject: str) -> str:
    digest = hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()
    return f"{OIDC_NAME_PREFIX}{digest[:24]}"


def user_for_oidc(
    session: Session, *, issuer: str, subject: str, role: str, agency: str
) -> tuple[User, str | None]:
    """The row for (issuer, subject), created or brought up to date with the provider's role
    and agency; with ``"created"``, ``"changed"`` or None saying what happened."""
    check_user_role(role, agency)
    name = oidc_user_name(issuer, subject)
    user = session.scalar(select(User).where(User.name == name).with_for_update())
    if user is None:
        user = User(id=uuid.uuid4(), name=name, role=role, agency=agency, disabled=False)
        session.add(user)
        session.flush()
        record_version(session, user)
        return user, "created"
    if user.disabled:
        raise OidcUserDisabledError
    if (user.role, user.agency) == (role, agency):
        return user, None
    user.role, user.agency = role, agency
    session.flush()
    record_version(session, user)
    return user, "changed"


def sign_in_oidc_user(
    session: Session,
    *,
    issuer: str,
    subject: str,
    role: str,
    agency: str,
    id_token: str | None = None,
) -> ActiveSession:
    """A new session for the person the provider vouched for: their row created or changed
    (audited ``users.add`` / ``users.change`` as the CLI's, by the person themselves), then
    :func:`~mash_hub.users.sessions.start_session` (``auth.signed_in``, method ``oidc``).
    Raises :class:`OidcUserDisabledError` for a disabled row. ``id_token`` is kept, sealed,
    for signing out at the provider."""
    user, change = user_for_oidc(session, issuer=issuer, subject=subject, role=role, agency=agency)
    if change is not None:
        audit(
            session,
            AuditEvent(
                f"user:{user.id}",
                "users.add" if change == "created" else "users.change",
                "user",
                str(user.id),
                {"role": user.role, "agency": user.agency, "method": "oidc"},
            ),
        )
    return start_session(
        session,
        user=user,
        subject=f"user:{user.id}",
        name=user.name,
        role=user.role,
        agency=user.agency,
        method="oidc",
        id_token=id_token,
    )
