"""The full authorisation matrix, generated from the policy and checked through ``view_person``.

For every role x staff agency x source x field group, with and without break-glass, the
reference answer is pycasbin's own ``enforce()`` on the baseline files (not the compiled mask
table under test); a group is shown exactly when the policy allows it, and nothing else is
even decrypted.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, Caller, build_enforcer, compile_policy
from mash_hub.authz.vocabulary import (
    AGENCIES,
    PERSON_FIELDS,
    READ,
    READ_BREAK_GLASS,
    ROLES,
    SOURCES,
    SUBJECT_ACCESS,
    source_fields,
)
from mash_hub.casework.view import AccessDeniedError, BreakGlass, Purpose, view_person
from mash_hub.persons.store import QUALITY, PersonStore
from tests.authz.conftest import BASELINE, Household

PURPOSE = Purpose(code="mash_triage", text="Triage of contact C-1024 received today")
GLASS = BreakGlass("Child reported missing overnight; police need the full picture now.")

_ENFORCER, _ = build_enforcer(BASELINE)


def reference(role: str, agency: str, source: str, field: str, action: str) -> bool:
    """The policy's own answer (pycasbin enforce, single-threaded test)."""
    if field not in source_fields(source):
        return False  # a source's records are only ever shown the groups that source supplies
    return bool(_ENFORCER.enforce(role, agency, source, field, action))


def expected(role: str, agency: str, *, glass: bool, view: bool = False) -> dict[str, set[str]]:
    """The groups the policy grants per source; ``view``: those the person view decrypts
    (all but the quality group, of which it shows only a count)."""
    out: dict[str, set[str]] = {}
    for source in SOURCES:
        shown = {
            f
            for f in PERSON_FIELDS
            if not (view and f == QUALITY)
            and (
                reference(role, agency, source, f, READ)
                or (glass and reference(role, agency, source, f, READ_BREAK_GLASS))
            )
        }
        if shown:
            out[source] = shown
    return out


def may_view(role: str, agency: str) -> bool:
    return any(
        reference(role, agency, s, f, a)
        for s in SOURCES
        for f in PERSON_FIELDS
        for a in (READ, READ_BREAK_GLASS)
    )


def may_break_glass(role: str, agency: str) -> bool:
    return any(
        reference(role, agency, s, f, READ_BREAK_GLASS) for s in SOURCES for f in PERSON_FIELDS
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_field_group_is_shown_exactly_when_the_policy_allows_it(
    role: str,
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    household: Household,
    decrypted: list[tuple[uuid.UUID, str]],
) -> None:
    by_record = {record_id: source for source, record_id in household.records.items()}
    for agency in AGENCIES:
        caller = Caller(f"user:{role}:{agency}", role, agency)
        for glass in (False, True):
            decrypted.clear()
            want = expected(role, agency, glass=glass, view=True)
            allowed = may_view(role, agency) and (not glass or may_break_glass(role, agency))
            if not allowed:
                with pytest.raises(AccessDeniedError) as denied:
                    view_person(
                        session,
                        store,
                        policy,
                        caller,
                        household.person_id,
                        PURPOSE,
                        GLASS if glass else None,
                    )
                assert denied.value.reason in {"role_not_permitted", "break_glass_not_permitted"}
                assert decrypted == []
                continue
            view = view_person(
                session,
                store,
                policy,
                caller,
                household.person_id,
                PURPOSE,
                GLASS if glass else None,
            )
            shown = {s: set(groups) for s, groups in view.shown().items()}
            assert shown == want, (role, agency, glass)
            # Nothing outside the mask was even decrypted.
            assert {(by_record[r], g) for r, g in decrypted} == {
                (s, g) for s, groups in want.items() for g in groups
            }
            text = json.dumps(view.to_dict())
            for (source, group), value in household.values.items():
                assert (value in text) == (group in want.get(source, set())), (source, group)


def test_the_compiled_table_agrees_with_enforce_everywhere() -> None:
    decisions = compile_policy(BASELINE)
    for role in ROLES:
        for agency in AGENCIES:
            caller = Caller("u", role, agency)
            for source in SOURCES:
                for glass in (False, True):
                    want = expected(role, agency, glass=glass).get(source, set())
                    assert decisions.mask(caller, source, break_glass=glass) == want
                for action in (READ, READ_BREAK_GLASS, SUBJECT_ACCESS):
                    want = {f for f in PERSON_FIELDS if reference(role, agency, source, f, action)}
                    assert decisions.action_mask(caller, source, action) == want, action


IDS = {"identity", "identifiers", "contact"}
POLICE = {"details.warning_markers", "details.incidents"}
COUNCIL = {"details.education", "details.housing"}
CASE = {"details.case"}
REFERRAL = {"details.referral"}
NONE: dict[str, set[str]] = {
    "police": set(),
    "council": set(),
    "social_care": set(),
    "referral": set(),
}

# The baseline as documented in policies/README.md: (read, read with break-glass) per source.
Q = {"quality"}
DOCUMENTED: dict[str, tuple[dict[str, set[str]], dict[str, set[str]]]] = {
    "mash_officer": (
        {
            "police": IDS | POLICE | Q,
            "council": IDS | COUNCIL | Q,
            "social_care": IDS | CASE | Q,
            "referral": IDS | REFERRAL | Q,
        },
        {
            "police": IDS | POLICE | Q,
            "council": IDS | COUNCIL | Q,
            "social_care": IDS | CASE | Q,
            "referral": IDS | REFERRAL | Q,
        },
    ),
    "police_officer": (
        {"police": IDS | POLICE | Q, "council": IDS, "social_care": IDS, "referral": IDS},
        {
            "police": IDS | POLICE | Q,
            "council": IDS | COUNCIL | Q,
            "social_care": IDS | CASE | Q,
            "referral": IDS | REFERRAL | Q,
        },
    ),
    "social_worker": (
        {
            "police": IDS | {"details.warning_markers"},
            "council": IDS | COUNCIL,
            "social_care": IDS | CASE | Q,
            "referral": IDS | REFERRAL,
        },
        {
            "police": IDS | POLICE | Q,
            "council": IDS | COUNCIL | Q,
            "social_care": IDS | CASE | Q,
            "referral": IDS | REFERRAL | Q,
        },
    ),
    "council_officer": (
        {"police": IDS, "council": IDS | COUNCIL | Q, "social_care": IDS, "referral": IDS},
        {"police": IDS, "council": IDS | COUNCIL | Q, "social_care": IDS, "referral": IDS},
    ),
    "auditor": (NONE, NONE),
    "partner_agency": (NONE, NONE),
    "admin": (NONE, NONE),
    "information_governance": (NONE, NONE),
}
DOCUMENTED_ACTIONS = {
    "mash_officer": {"referral_triage", "linkage_review"},
    "police_officer": {"referral_submit", "referral_status", "information_respond"},
    "social_worker": {"information_respond"},
    "council_officer": {"referral_submit", "referral_status", "information_respond"},
    "auditor": {"audit_read"},
    "partner_agency": {"referral_submit", "referral_status"},
    "admin": {"users_manage", "clients_manage", "keys_manage", "policy_publish"},
    "information_governance": set(),
}
# Granted in one staff agency only: health has no role of its own, so the MASH's health
# practitioner answers information requests addressed to health.
DOCUMENTED_AGENCY_ACTIONS = {("mash_officer", "health"): {"information_respond"}}
# Subject access (UK GDPR Art. 15): information-governance staff, every group of every source.
DOCUMENTED_SUBJECT_ACCESS = {"information_governance"}


def test_the_baseline_is_what_the_readme_documents() -> None:
    decisions = compile_policy(BASELINE)
    for role, (read, glass) in DOCUMENTED.items():
        for agency in AGENCIES:
            caller = Caller("u", role, agency)
            got: dict[str, Any] = {
                s: (decisions.mask(caller, s), decisions.mask(caller, s, break_glass=True))
                for s in SOURCES
            }
            assert got == {s: (read[s], glass[s]) for s in SOURCES}, (role, agency)
            actions = DOCUMENTED_ACTIONS[role] | DOCUMENTED_AGENCY_ACTIONS.get(
                (role, agency), set()
            )
            assert {a for a in actions if decisions.allows(caller, a)} == actions
            assert decisions.actions[(role, agency)] == actions
            for source in SOURCES:
                sar = decisions.action_mask(caller, source, SUBJECT_ACCESS)
                everything = set(source_fields(source))
                assert sar == (everything if role in DOCUMENTED_SUBJECT_ACCESS else set())


def test_unknown_role_agency_or_source_gets_nothing() -> None:
    decisions = compile_policy(BASELINE)
    assert decisions.mask(Caller("u", "superuser", "police"), "police") == frozenset()
    assert decisions.mask(Caller("u", "mash_officer", "narnia"), "police") == frozenset()
    assert decisions.mask(Caller("u", "mash_officer", "council"), "health") == frozenset()
    assert decisions.mask(Caller("u", "identity_reader", "council"), "police") == frozenset()
    assert not decisions.may_view_persons(Caller("u", "superuser", "police"))
