"""The words an access policy may use: roles, agencies, source agencies, fields and actions.

``mash-hub policy check`` refuses a policy that names anything not listed here, and the mask
table is compiled over exactly these values, so a role, agency, source or field group that is
not listed is denied everything (default deny). Adding a word is a code change, reviewed.
"""

from __future__ import annotations

from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, QUALITY

# Roles a member of staff (or a partner's client) can hold.
ROLES: tuple[str, ...] = (
    "mash_officer",
    "police_officer",
    "social_worker",
    "council_officer",
    "auditor",
    "partner_agency",
    "admin",
    "information_governance",
)

# Agencies staff work for (the Casbin domain).
AGENCIES: tuple[str, ...] = ("police", "council", "social_care", "health", "education")

# Agencies that supply records (a record's ``source_agency``). ``referral``: the subjects of
# referrals submitted through the API (mash_hub.referrals), whatever agency referred them.
SOURCES: tuple[str, ...] = ("police", "council", "social_care", "referral")

IDENTITY_FIELDS: tuple[str, ...] = (IDENTITY, IDENTIFIERS, CONTACT)

# Values of a record that failed validation (mash_hub.quality): the person view shows only how
# many; correcting one decrypts its raw value. Any source's records may carry it.
QUALITY_FIELDS: tuple[str, ...] = (QUALITY,)

# The detail groups each source supplies.
SOURCE_DETAILS: dict[str, tuple[str, ...]] = {
    "police": ("details.warning_markers", "details.incidents"),
    "council": ("details.education", "details.housing"),
    "social_care": ("details.case",),
    # The referral a subject record came from: reference, subject role, concerns.
    "referral": ("details.referral",),
}

DETAIL_FIELDS: tuple[str, ...] = tuple(f for groups in SOURCE_DETAILS.values() for f in groups)

# Person field groups: the unit the policy grants (see mash_hub.persons.store).
PERSON_FIELDS: tuple[str, ...] = IDENTITY_FIELDS + DETAIL_FIELDS + QUALITY_FIELDS

# Actions on person field groups.
READ = "read"
READ_BREAK_GLASS = "read_break_glass"
# Disclosure to the person themselves (UK GDPR Art. 15), only through a subject-access export.
SUBJECT_ACCESS = "subject_access"
FIELD_ACTIONS: tuple[str, ...] = (READ, READ_BREAK_GLASS, SUBJECT_ACCESS)

# Actions on things that are not person data, with the one resource each applies to.
RESOURCE_ACTIONS: dict[str, str] = {
    "audit_read": "audit_log",
    "referral_submit": "referral",
    "referral_status": "referral",
    # The MASH triage queue: RAG ratings, decisions and feedback on every referral.
    "referral_triage": "referral",
    # Answering the MASH's information requests addressed to the caller's own agency
    # (mash_hub.referrals.requests): what that agency holds about a referral's subjects.
    "information_respond": "referral",
    "users_manage": "users",
    "clients_manage": "clients",
    "keys_manage": "keys",
    "policy_publish": "policy",
    # The linkage review queue: deciding whether two records are one person (mash_hub.matching
    # .review), which changes the person index every agency sees.
    "linkage_review": "review_queue",
}
RESOURCES: tuple[str, ...] = tuple(dict.fromkeys(RESOURCE_ACTIONS.values()))

ACTIONS: tuple[str, ...] = FIELD_ACTIONS + tuple(RESOURCE_ACTIONS)


def source_fields(source: str) -> tuple[str, ...]:
    """The field groups records from ``source`` carry (identity fields, its details, quality)."""
    return IDENTITY_FIELDS + SOURCE_DETAILS.get(source, ()) + QUALITY_FIELDS
