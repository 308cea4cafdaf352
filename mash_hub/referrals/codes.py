"""The code lists a referral uses: Children in Need census codes, consent, RAG, decisions.

CIN codes are the Department for Education's (source of referral, primary need, factors
identified at assessment); the rest are the hub's own. Codes, not free text, are what the
tables, the audit log and the queue hold.
"""

from __future__ import annotations

from collections.abc import Mapping

# CIN census: source of referral.
SOURCES_OF_REFERRAL: Mapping[str, str] = {
    "1A": "Individual: family member, relative or carer",
    "1B": "Individual: acquaintance",
    "1C": "Individual: self",
    "1D": "Individual: other",
    "2A": "Schools",
    "2B": "Education services",
    "3A": "Health services: GP",
    "3B": "Health services: health visitor",
    "3C": "Health services: school nurse",
    "3D": "Health services: other primary health services",
    "3E": "Health services: A&E",
    "3F": "Health services: other",
    "4": "Housing",
    "5A": "LA services: social care",
    "5B": "LA services: other internal department",
    "5C": "LA services: another local authority",
    "5D": "LA services: early help",
    "6": "Police",
    "7": "Other legal agency (courts, probation, immigration, CAFCASS, prison)",
    "8": "Other (voluntary sector, children's centres)",
    "9": "Anonymous",
    "10": "Unknown",
}

# CIN census: primary need.
PRIMARY_NEEDS: Mapping[str, str] = {
    "N0": "Not stated",
    "N1": "Abuse or neglect",
    "N2": "Child's disability",
    "N3": "Parental illness or disability",
    "N4": "Family in acute stress",
    "N5": "Family dysfunction",
    "N6": "Socially unacceptable behaviour",
    "N7": "Low income",
    "N8": "Absent parenting",
    "N9": "Cases other than children in need",
}

_FACTOR_NAMES = {
    "1": "alcohol misuse",
    "2": "drug misuse",
    "3": "domestic abuse",
    "4": "mental health",
    "5": "learning disability",
    "6": "physical disability or illness",
}
_WHO = {"A": "child", "B": "parent or carer", "C": "other person in the household"}

# CIN census: factors identified at assessment (suffix A child, B parent/carer, C other).
FACTORS: Mapping[str, str] = {
    **{
        f"{number}{who}": f"{name} ({person})"
        for number, name in _FACTOR_NAMES.items()
        for who, person in _WHO.items()
    },
    "7A": "young carer",
    **{f"8{who}": "privately fostered" for who in "BCDEF"},
    "9A": "unaccompanied asylum-seeking child",
    "10A": "going or being missing",
    "11A": "child sexual exploitation",
    "12A": "trafficking",
    "13A": "gangs",
    "14A": "socially unacceptable behaviour",
    "15A": "self-harm",
    "16A": "neglect",
    "17A": "emotional abuse",
    "18B": "physical abuse: child on child",
    "18C": "physical abuse: adult on child",
    "19B": "sexual abuse: child on child",
    "19C": "sexual abuse: adult on child",
    "20": "other",
    "21": "no factors identified (only with no further action)",
    "22A": "female genital mutilation",
    "23A": "abuse linked to faith or belief",
    "24A": "child criminal exploitation",
}
NO_FACTORS = "21"

# Who a subject is in the referral. The subjects of concern carry the concerns text on their
# record; the others are the household and people around them.
SUBJECT_ROLES: Mapping[str, str] = {
    "child": "The child the referral is about",
    "adult_at_risk": "The adult at risk the referral is about",
    "parent_carer": "Parent or carer",
    "sibling": "Sibling",
    "household_member": "Other member of the household",
    "other": "Other person named in the referral",
}
SUBJECTS_OF_CONCERN = frozenset({"child", "adult_at_risk"})

# Consent of the family (or the adult) to the referral.
CONSENT_STATES: Mapping[str, str] = {
    "given": "Consent given",
    "not_given": "Consent refused; referred because of the risk of significant harm",
    "not_sought_risk": "Not sought: seeking consent would increase the risk to the child or adult",
}
CONSENT_NEEDS_REASON = frozenset({"not_given", "not_sought_risk"})

# RAG rating and how soon each agency must return its information, from when it was set
# (clock hours: red is worked to completion out of hours too).
RAG_HOURS: Mapping[str, int] = {"red": 2, "amber": 6, "green": 24}
RAGS: tuple[str, ...] = tuple(RAG_HOURS)

# The MASH decision (Working Together to Safeguard Children; Care Act 2014 s42 for adults).
DECISIONS: Mapping[str, str] = {
    "nfa": "No further action",
    "advice_signposting": "Advice and signposting",
    "early_help": "Step down to early help",
    "s17_assessment": "Child in need assessment (Children Act 1989 s17)",
    "s47_strategy_discussion": "Strategy discussion / child protection enquiry (s47)",
    "s42_enquiry": "Adult safeguarding enquiry (Care Act 2014 s42)",
}

# Why: one or more codes with every decision (free text is optional and encrypted).
DECISION_REASONS: Mapping[str, str] = {
    "threshold_not_met": "Threshold for statutory services not met",
    "needs_met_by_universal_services": "Needs can be met by universal services",
    "family_agrees_early_help": "Family agrees to early help support",
    "child_in_need": "Child is likely to be in need (s17)",
    "significant_harm": "Reasonable cause to suspect significant harm (s47)",
    "adult_care_and_support_needs": "Adult has care and support needs and is at risk (s42)",
    "already_open_to_social_care": "Already open to a social worker",
    "concerns_not_substantiated": "Information gathered does not support the concerns",
    "insufficient_information": "Not enough information; referrer advised",
    "professional_judgement": "Professional judgement (see the recorded reason)",
}

# Where a referral is. A partner sees only this and the feedback.
RECEIVED = "received"  # in the queue, not yet RAG-rated
IN_TRIAGE = "in_triage"  # RAG-rated, information being gathered
DECIDED = "decided"
STATUSES: tuple[str, ...] = (RECEIVED, IN_TRIAGE, DECIDED)

# Information requests (mash_hub.referrals.requests): the partner agencies the MASH asks (the
# staff agencies of the access policy's vocabulary), and what an agency may answer.
REQUEST_AGENCIES: Mapping[str, str] = {
    "police": "Police",
    "council": "Council",
    "social_care": "Social care",
    "health": "Health",
    "education": "Education",
}
INFORMATION = "information"
NOTHING_HELD = "nothing_held"
ANSWER_OUTCOMES: Mapping[str, str] = {
    INFORMATION: "We hold information (given below)",
    NOTHING_HELD: "Nothing held",
}
# A request's status as the MASH and the agency see it.
REQUEST_OPEN = "open"
REQUEST_OVERDUE = "overdue"
REQUEST_ANSWERED = "answered"
REQUEST_CLOSED = "closed"  # the referral was decided before the agency answered
