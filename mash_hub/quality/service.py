"""Listing, showing and correcting data-quality issues: the services the CLI and API share.

Working like the quarantine's correction, but on an indexed record:

* **list** gives ids, feed, field, reason code and status: no personal data.
* **show** decrypts one issue's raw value for a member of staff whose role may read the
  record's ``quality`` group *and* the group the field belongs to (an NHS number is an
  identifier); it is audited (``quality.view``) before anything is decrypted, and a refusal
  is audited (``authz.denied``).
* **correct** standardises the new value as ingestion would (an invalid one changes nothing),
  then writes a new version of the record with the value in place and the issue gone: it is
  indexed again (blind index), keeps its person as an agency's update does, and is linked when
  it has no person yet and a linkage model is given. Audited as ``quality.correct``.

Services never commit; the command or request owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.authz.policy import Caller, Decisions
from mash_hub.authz.refusals import record_refusal
from mash_hub.feeds import standardise as std
from mash_hub.persons.models import RecordFieldGroup, SourceRecord
from mash_hub.persons.reindex import index_fields
from mash_hub.persons.store import (
    CONTACT,
    DETAILS_PREFIX,
    IDENTIFIERS,
    IDENTITY,
    QUALITY,
    NewRecord,
    PersonStore,
)
from mash_hub.quality.models import CORRECTED, OPEN, STATUSES, QualityIssue

_ADDRESS = re.compile(r"^addresses\[(\d{1,3})\]\.(line1|line2|town|postcode|from|to)$")
_DETAIL = re.compile(r"^details\.([a-z][a-z0-9_]{0,62})\.([A-Za-z0-9_]{1,64})$")
_IDENTITY_FIELDS = frozenset(
    {"given_names", "family_name", "other_names", "full_name", "date_of_birth", "sex"}
)


class QualityError(LookupError):
    """No such issue, or it is no longer open (the message holds ids only)."""


class QualityDeniedError(PermissionError):
    """The caller's role may not see the value; the refusal was audited."""


class CorrectionInvalidError(ValueError):
    """The corrected value does not standardise either; nothing changed. ``code`` says why."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"the corrected value is still invalid: {code}")


@dataclass(frozen=True)
class IssueSummary:
    """An issue as lists show it: no value, only where and why."""

    id: uuid.UUID
    record_id: uuid.UUID
    feed: str
    source_agency: str
    field: str
    code: str
    status: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    corrected_record_id: uuid.UUID | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "record_id": str(self.record_id),
            "feed": self.feed,
            "source_agency": self.source_agency,
            "field": self.field,
            "code": self.code,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "corrected_record_id": (
                str(self.corrected_record_id) if self.corrected_record_id else None
            ),
        }


@dataclass(frozen=True)
class Correction:
    issue_id: uuid.UUID
    field: str
    old_record_id: uuid.UUID
    new_record_id: uuid.UUID
    person_id: uuid.UUID | None
    open_issues_left: int
    linked: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "issue_id": str(self.issue_id),
            "field": self.field,
            "old_record_id": str(self.old_record_id),
            "new_record_id": str(self.new_record_id),
            "person_id": str(self.person_id) if self.person_id else None,
            "open_issues_left": self.open_issues_left,
            "linked": self.linked,
        }


def summary(issue: QualityIssue) -> IssueSummary:
    return IssueSummary(
        issue.id,
        issue.record_id,
        issue.feed,
        issue.source_agency,
        issue.field,
        issue.code,
        issue.status,
        issue.created_at,
        issue.resolved_at,
        issue.corrected_record_id,
    )


def group_of(field: str) -> str:
    """The field group a flagged field belongs to (what a caller must be allowed to read)."""
    if field in _IDENTITY_FIELDS:
        return IDENTITY
    if field in {"nhs_number", "upn", "pnc_id"}:
        return IDENTIFIERS
    if field in {"phone", "email"} or _ADDRESS.match(field):
        return CONTACT
    if match := _DETAIL.match(field):
        return DETAILS_PREFIX + match[1]
    raise QualityError(f"unknown quality field {field!r}")


def list_issues(
    session: Session,
    *,
    feed: str | None = None,
    status: str | None = OPEN,
    sources: set[str] | None = None,
    limit: int = 100,
) -> list[IssueSummary]:
    """Issues, oldest first; ``sources`` limits them to those source agencies."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)} or all")
    query = select(QualityIssue).order_by(QualityIssue.created_at, QualityIssue.id)
    if feed is not None:
        query = query.where(QualityIssue.feed == feed)
    if status is not None:
        query = query.where(QualityIssue.status == status)
    if sources is not None:
        query = query.where(QualityIssue.source_agency.in_(sorted(sources)))
    return [summary(i) for i in session.scalars(query.limit(limit))]


def get_issue(session: Session, issue_id: uuid.UUID, *, for_update: bool = False) -> QualityIssue:
    issue = session.get(QualityIssue, issue_id, with_for_update=for_update)
    if issue is None:
        raise QualityError(f"no quality issue {issue_id}")
    return issue


def _check(  # noqa: PLR0917 - one call site per service
    session: Session,
    decisions: Decisions,
    caller: Caller,
    issue: QualityIssue,
    requested: str,
    via: str,
) -> None:
    """Refuse (audited) unless the caller may read the quality group and the field's group."""
    needed = {QUALITY, group_of(issue.field)}
    missing = sorted(needed - decisions.mask(caller, issue.source_agency))
    if missing:
        record_refusal(
            session,
            caller,
            decisions,
            requested,
            subject_type="quality_issue",
            subject_id=str(issue.id),
            source=issue.source_agency,
            missing=missing,
            via=via,
        )
        raise QualityDeniedError(
            f"the role {caller.role} may not read {', '.join(missing)} of "
            f"{issue.source_agency} records (the refusal is audited)"
        )


def _quality_group(
    session: Session, store: PersonStore, record_id: uuid.UUID
) -> list[dict[str, Any]]:
    stored = store.read(session, [record_id], [QUALITY]).get(record_id)
    if stored is None or QUALITY not in stored.groups:
        raise QualityError(f"the values of record {record_id} are no longer held (erased)")
    issues = stored.groups[QUALITY].get("issues") or []
    return [i for i in issues if isinstance(i, dict)]


def _raw_of(issues: list[dict[str, Any]], issue: QualityIssue) -> str | None:
    for item in issues:
        if item.get("field") == issue.field and item.get("code") == issue.code:
            return str(item.get("raw"))
    return None


def show_issue(
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    issue_id: uuid.UUID,
    *,
    via: str,
) -> dict[str, Any]:
    """One issue with its raw value, for correction (policy-checked, audited first)."""
    issue = get_issue(session, issue_id)
    _check(session, decisions, caller, issue, "quality.view", via)
    audit(
        session,
        AuditEvent(
            caller.user_id,
            "quality.view",
            "quality_issue",
            str(issue.id),
            {
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                "source": issue.source_agency,
                "record_id": str(issue.record_id),
                "field": issue.field,
                "via": via,
            },
        ),
    )
    raw = _raw_of(_quality_group(session, store, issue.record_id), issue)
    return summary(issue).as_dict() | {"raw": raw}


# -- correcting ---------------------------------------------------------------------------


def _date(value: str) -> str:
    parsed = std.parse_date(value)
    if parsed is None:
        raise std.StandardisationError("date_invalid")
    return parsed.isoformat()


_STANDARDISERS: Mapping[str, Callable[[str], Any]] = {
    "nhs_number": std.validate_nhs_number,
    "upn": std.validate_upn,
    "pnc_id": std.validate_pnc_id,
    "phone": std.normalise_phone,
    "email": std.normalise_email,
    "sex": std.normalise_sex,
    "date_of_birth": _date,
    "given_names": std.clean_name,
    "other_names": std.clean_name,
    "family_name": std.clean_name,
    "full_name": std.split_full_name,
}


def _standardise(field: str, value: str) -> Any:
    if match := _ADDRESS.match(field):
        key = match[2]
        function: Callable[[str], Any] = (
            std.normalise_postcode
            if key == "postcode"
            else _date
            if key in {"from", "to"}
            else std.clean_address
        )
    elif _DETAIL.match(field):
        function = _date  # only dates of detail fields are validated, so only they are flagged
    else:
        function = _STANDARDISERS[field]
    try:
        result = function(value)
    except std.StandardisationError as exc:
        raise CorrectionInvalidError(exc.code) from None
    if result is None:
        raise CorrectionInvalidError("value_empty")
    return result


def _apply(groups: dict[str, dict[str, Any]], field: str, value: Any) -> None:
    """Put a standardised value where ingestion would have put it."""
    if match := _ADDRESS.match(field):
        addresses = groups.setdefault(CONTACT, {}).setdefault("addresses", [])
        index = int(match[1])
        while len(addresses) <= index:
            addresses.append({})
        addresses[index][match[2]] = value
        return
    if match := _DETAIL.match(field):
        groups.setdefault(DETAILS_PREFIX + match[1], {})[match[2]] = value
        return
    group = groups.setdefault(group_of(field), {})
    if field in {"given_names", "other_names"}:
        group[field] = [*(group.get(field) or []), value]
    elif field == "full_name":
        assert isinstance(value, std.PersonName)
        group["given_names"] = group.get("given_names") or list(value.given_names)
        group["family_name"] = group.get("family_name") or value.family_name
    else:
        group[field] = value


def correct_issue(  # noqa: PLR0917 - the services the API and CLI pass
    session: Session,
    store: PersonStore,
    decisions: Decisions,
    caller: Caller,
    issue_id: uuid.UUID,
    value: str,
    *,
    via: str,
    link: Callable[[Session, uuid.UUID], dict[str, Any] | None] | None = None,
) -> Correction:
    """Correct one issue: a new version of the record with the standardised value (module
    docstring). Raises :class:`CorrectionInvalidError` (nothing changed) for a value that is
    still invalid; ``link`` links the new version when it has no person yet."""
    issue = get_issue(session, issue_id, for_update=True)
    if issue.status != OPEN:
        raise QualityError(f"quality issue {issue_id} is {issue.status}, not open")
    _check(session, decisions, caller, issue, "quality.correct", via)
    standardised = _standardise(issue.field, value)
    # Before reading the old source key: a root rotation cannot re-key it under us.
    store.fence(session)
    old = session.get(SourceRecord, issue.record_id, with_for_update=True)
    if old is None or not old.is_current or old.erased_at is not None:
        raise QualityError(f"the record of quality issue {issue_id} is no longer current")
    present = list(
        session.scalars(
            select(RecordFieldGroup.group_name).where(RecordFieldGroup.record_id == old.id)
        )
    )
    stored = store.read(session, [old.id], present)[old.id]
    groups = {name: dict(values) for name, values in stored.groups.items()}
    _apply(groups, issue.field, standardised)
    remaining = [
        i
        for i in (groups.get(QUALITY, {}).get("issues") or [])
        if not (i.get("field") == issue.field and i.get("code") == issue.code)
    ]
    if remaining:
        groups[QUALITY] = {"issues": remaining}
    else:
        groups.pop(QUALITY, None)

    new = NewRecord(
        feed=old.feed,
        source_agency=old.source_agency,
        source_record_id="(kept)",  # the source key is carried over below; no plaintext id
        groups=groups,
        index_fields=index_fields(groups),
        person_id=old.person_id,
        version=old.version + 1,
        batch_id=old.batch_id,
    )
    prepared = replace(store.prepare(new), source_key=bytes(old.source_key))
    store.supersede(session, [old.id])
    session.flush()
    (new_id,) = store.write(session, [prepared])
    now = dt.datetime.now(dt.UTC)
    issue.status = CORRECTED
    issue.resolved_at = now
    issue.resolved_by = caller.user_id
    issue.corrected_record_id = new_id
    # The record's other open issues move to the new version with it.
    moved = session.execute(
        update(QualityIssue)
        .where(QualityIssue.record_id == old.id, QualityIssue.status == OPEN)
        .values(record_id=new_id)
    )
    left = int(getattr(moved, "rowcount", 0) or 0)
    linked = link(session, new_id) if link is not None and old.person_id is None else None
    audit(
        session,
        AuditEvent(
            caller.user_id,
            "quality.correct",
            "quality_issue",
            str(issue.id),
            {
                "role": caller.role,
                "agency": caller.agency,
                "policy_version": decisions.version,
                "source": issue.source_agency,
                "field": issue.field,
                "code": issue.code,
                "old_record_id": str(old.id),
                "new_record_id": str(new_id),
                "linked": bool(linked),
                "via": via,
            },
        ),
    )
    return Correction(issue.id, issue.field, old.id, new_id, old.person_id, left, linked)
