"""The one shape of a refusal in the audit log: an ``authz.denied`` entry.

Every refusal involving personal data or a protected resource is audited, in the caller's
transaction, naming who was refused what under which policy version. Entries that come from
here look the same whichever face (API, pages, CLI) refused, so an auditor can count them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.authz.policy import Caller, Decisions

DENIED = "authz.denied"
ROLE_NOT_PERMITTED = "role_not_permitted"


def record_refusal(
    session: Session,
    caller: Caller,
    decisions: Decisions,
    requested: str,
    *,
    reason: str = ROLE_NOT_PERMITTED,
    subject_type: str | None = None,
    subject_id: str | None = None,
    **details: Any,
) -> int:
    """Write the ``authz.denied`` entry (ids and codes in ``details`` only, never a value
    from the request) and return its sequence number; the owner of the transaction commits
    it before answering."""
    return audit(
        session,
        AuditEvent(
            caller.user_id,
            DENIED,
            subject_type,
            subject_id,
            {
                "reason": reason,
                "requested": requested,
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                **details,
            },
        ),
    )
