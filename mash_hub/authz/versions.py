"""Published policy versions in the database: ``mash-hub policy publish`` and its reader."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.authz.check import check_policy
from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.models import AccessPolicyVersion
from mash_hub.authz.policy import PolicyError

_PUBLISH_LOCK = 0x706F6C63  # "polc": one publisher at a time


@dataclass(frozen=True)
class Published:
    version: int
    sha256: str
    previous_version: int | None
    changed: bool


def current_version(session: Session) -> AccessPolicyVersion | None:
    return session.scalars(
        select(AccessPolicyVersion).order_by(AccessPolicyVersion.version.desc()).limit(1)
    ).first()


def publish(session: Session, texts: PolicyTexts, *, actor: str) -> Published:
    """Record ``texts`` as the new current version (audited ``policy.publish``).

    Refuses an invalid policy (:class:`PolicyError`). Publishing the texts that are already
    current changes nothing and writes nothing.
    """
    problems = check_policy(texts)
    if problems:
        raise PolicyError(problems)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PUBLISH_LOCK})
    current = current_version(session)
    digest = texts.sha256
    if current is not None and current.sha256 == digest:
        return Published(current.version, digest, current.version, changed=False)
    version = 1 if current is None else current.version + 1
    session.add(
        AccessPolicyVersion(
            version=version,
            sha256=digest,
            model_text=texts.model,
            policy_text=texts.policy,
            published_by=actor,
        )
    )
    session.flush()
    previous = None if current is None else current.version
    audit(
        session,
        AuditEvent(
            actor=actor,
            action="policy.publish",
            subject_type="access_policy",
            subject_id=str(version),
            details={"version": version, "sha256": digest, "previous_version": previous},
        ),
    )
    return Published(version, digest, previous, changed=True)
