"""What a referral submission looks like, validated and standardised on the way in.

Each field is checked on its own here (pydantic names the field in the error, e.g.
``body.subjects.0.nhs_number``); identifiers, postcodes, phones, emails and names go through
the same standardisation as agency feeds, so a referral's subjects are indexed and matched
exactly like feed records. Checks across fields are in :func:`cross_field_faults`. Error
messages are fixed texts: they never quote the value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from mash_hub.feeds import standardise as std
from mash_hub.referrals.codes import (
    ANSWER_OUTCOMES,
    CONSENT_NEEDS_REASON,
    CONSENT_STATES,
    DECISION_REASONS,
    DECISIONS,
    FACTORS,
    NO_FACTORS,
    NOTHING_HELD,
    PRIMARY_NEEDS,
    RAG_HOURS,
    REQUEST_AGENCIES,
    SOURCES_OF_REFERRAL,
    SUBJECT_ROLES,
    SUBJECTS_OF_CONCERN,
)

MAX_SUBJECTS = 12
CONCERNS_MIN, CONCERNS_MAX = 20, 10_000
REASON_MIN, REASON_MAX = 10, 2_000
FEEDBACK_MIN, FEEDBACK_MAX = 10, 4_000
QUESTION_MIN, QUESTION_MAX = 10, 4_000
ANSWER_MIN, ANSWER_MAX = 10, 10_000
EARLIEST_BIRTH = dt.date(1900, 1, 1)


def _one_of(codes: Mapping[str, str], what: str) -> AfterValidator:
    """Only one of ``codes``; the error names the list, never the value."""

    def check(value: str) -> str:
        if value not in codes:
            raise ValueError(f"not a known {what} code (see the schema's enum)")
        return value

    return AfterValidator(check)


def _enum(codes: Mapping[str, str]) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": list(codes)})


def _standard(function: Callable[[str], str | None], message: str) -> AfterValidator:
    """Standardise as feeds do; a failure becomes ``message`` (fixed text)."""

    def check(value: str) -> str | None:
        try:
            return function(value)
        except std.StandardisationError:
            raise ValueError(message) from None

    return AfterValidator(check)


def _name(value: str) -> str:
    try:
        cleaned = std.clean_name(value)
        std.name_key(cleaned)
    except std.StandardisationError:
        raise ValueError("a name needs at least one letter (not an initial alone)") from None
    return cleaned


def _birth(value: dt.date) -> dt.date:
    if not EARLIEST_BIRTH <= value <= dt.datetime.now(dt.UTC).date():
        raise ValueError("a date of birth must be between 1900-01-01 and today")
    return value


def _length(low: int, high: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=low, max_length=high)


Line = Annotated[str, _length(1, 100)]
Long = Annotated[str, _length(1, 200)]
Name = Annotated[str, _length(1, 100), AfterValidator(_name)]
NhsNumber = Annotated[
    str,
    _length(1, 20),
    _standard(std.validate_nhs_number, "not a valid NHS number (10 digits, modulus 11)"),
]
Upn = Annotated[str, _length(1, 20), _standard(std.validate_upn, "not a valid pupil number")]
PncId = Annotated[
    str, _length(1, 20), _standard(std.validate_pnc_id, "not a valid PNC id (YYYY/NNNNNNNC)")
]
Postcode = Annotated[
    str, _length(1, 10), _standard(std.normalise_postcode, "not a valid UK postcode")
]
Phone = Annotated[
    str, _length(1, 30), _standard(std.normalise_phone, "not a possible phone number")
]
Email = Annotated[str, _length(3, 254), _standard(std.normalise_email, "not a valid email address")]
BirthDate = Annotated[dt.date, AfterValidator(_birth)]
ConsentReason = Annotated[str, _length(1, REASON_MAX)]
Concerns = Annotated[str, _length(CONCERNS_MIN, CONCERNS_MAX)]
ReasonText = Annotated[str, _length(REASON_MIN, REASON_MAX)]
FeedbackText = Annotated[str, _length(FEEDBACK_MIN, FEEDBACK_MAX)]
QuestionText = Annotated[str, _length(QUESTION_MIN, QUESTION_MAX)]
AnswerText = Annotated[str, _length(ANSWER_MIN, ANSWER_MAX)]

SubjectRole = Annotated[str, _one_of(SUBJECT_ROLES, "subject role"), _enum(SUBJECT_ROLES)]
SourceOfReferral = Annotated[
    str, _one_of(SOURCES_OF_REFERRAL, "source of referral"), _enum(SOURCES_OF_REFERRAL)
]
PrimaryNeed = Annotated[str, _one_of(PRIMARY_NEEDS, "primary need"), _enum(PRIMARY_NEEDS)]
Factor = Annotated[str, _one_of(FACTORS, "factor"), _enum(FACTORS)]
ConsentState = Annotated[str, _one_of(CONSENT_STATES, "consent state"), _enum(CONSENT_STATES)]
Rag = Annotated[str, _one_of(RAG_HOURS, "RAG rating"), _enum(RAG_HOURS)]
Decision = Annotated[str, _one_of(DECISIONS, "decision"), _enum(DECISIONS)]
Agency = Annotated[str, _one_of(REQUEST_AGENCIES, "agency"), _enum(REQUEST_AGENCIES)]
AnswerOutcome = Annotated[str, _one_of(ANSWER_OUTCOMES, "outcome"), _enum(ANSWER_OUTCOMES)]
DecisionReason = Annotated[
    str, _one_of(DECISION_REASONS, "decision reason"), _enum(DECISION_REASONS)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AddressIn(_Strict):
    line1: Line | None = None
    line2: Line | None = None
    town: Line | None = None
    postcode: Postcode | None = None
    current: bool = True


class SubjectIn(_Strict):
    """A person the referral names: the child (or adult at risk), household, others."""

    role: SubjectRole
    given_names: list[Name] = Field(default_factory=list, max_length=5)
    family_name: Name | None = None
    other_names: list[Name] = Field(
        default_factory=list, max_length=5, description="Previous or alternative family names."
    )
    date_of_birth: BirthDate | None = None
    sex: Literal["M", "F", "U", "X"] | None = Field(
        default=None, description="M, F, U (not known) or X (indeterminate)."
    )
    nhs_number: NhsNumber | None = None
    upn: Upn | None = None
    pnc_id: PncId | None = None
    addresses: list[AddressIn] = Field(default_factory=list, max_length=5)
    phone: Phone | None = None
    email: Email | None = None


class ReferrerIn(_Strict):
    """Who made the referral, so the MASH can call back (stored encrypted)."""

    name: Long
    job_title: Line | None = None
    organisation: Long | None = None
    phone: Phone | None = None
    email: Email | None = None


class ConsentIn(_Strict):
    state: ConsentState
    reason: ConsentReason | None = Field(
        default=None,
        description="Why consent was not given or not sought (required then; stored encrypted).",
    )


_EXAMPLE: dict[str, Any] = {
    "subjects": [
        {
            "role": "child",
            "given_names": ["Amara"],
            "family_name": "Example",
            "date_of_birth": "2015-06-14",
            "sex": "F",
            "nhs_number": "9434765919",
            "addresses": [{"line1": "1 Sample Street", "town": "Leeds", "postcode": "LS6 2QT"}],
        },
        {"role": "parent_carer", "given_names": ["Beverley"], "family_name": "Example"},
    ],
    "concerns": "The child arrived at school with bruising and said she is scared to go home.",
    "source": "2A",
    "primary_need": "N1",
    "factors": ["3C"],
    "referrer": {"name": "A. Teacher", "job_title": "Designated safeguarding lead"},
    "consent": {
        "state": "not_sought_risk",
        "reason": "Telling the family could put the child at further risk.",
    },
}


class ReferralIn(_Strict):
    """A referral: its subjects, the concerns, CIN codes, the referrer and consent."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    subjects: list[SubjectIn] = Field(min_length=1, max_length=MAX_SUBJECTS)
    concerns: Concerns = Field(
        description="What worries the referrer (stored encrypted on the subjects' records)."
    )
    source: SourceOfReferral = Field(description="CIN census source of referral.")
    primary_need: PrimaryNeed = Field(description="CIN census primary need.")
    factors: list[Factor] = Field(
        default_factory=list, max_length=20, description="CIN census factors."
    )
    referrer: ReferrerIn
    consent: ConsentIn


class RagIn(_Strict):
    rag: Rag


class DecisionIn(_Strict):
    decision: Decision
    reasons: list[DecisionReason] = Field(min_length=1, max_length=5)
    reason_text: ReasonText | None = Field(
        default=None, description="Optional explanation (stored encrypted)."
    )


class FeedbackIn(_Strict):
    text: FeedbackText = Field(
        description="What the referrer may be told (stored encrypted; shown to the referrer)."
    )


class InformationRequestIn(_Strict):
    agency: Agency = Field(description="The partner agency asked.")
    question: QuestionText = Field(
        description="What the MASH needs to know, naming the subjects (stored encrypted)."
    )


class InformationAnswerIn(_Strict):
    outcome: AnswerOutcome = Field(description="information (with text) or nothing_held (no text).")
    text: AnswerText | None = Field(
        default=None, description="What the agency holds (stored encrypted)."
    )


@dataclass(frozen=True)
class Fault:
    """One field-level problem: where (within the body), a fixed message, and its kind."""

    loc: tuple[str | int, ...]
    msg: str
    type: str


def cross_field_faults(referral: ReferralIn) -> list[Fault]:
    """Problems that involve more than one field (each still names the field to fix)."""
    faults: list[Fault] = []
    for index, subject in enumerate(referral.subjects):
        if subject.family_name is None and not subject.given_names:
            faults.append(
                Fault(("subjects", index, "family_name"), "give a family or given name", "missing")
            )
    if not any(s.role in SUBJECTS_OF_CONCERN for s in referral.subjects):
        faults.append(
            Fault(("subjects",), "name at least one child or adult at risk", "value_error")
        )
    if len(set(referral.factors)) != len(referral.factors):
        faults.append(Fault(("factors",), "each factor at most once", "value_error"))
    if NO_FACTORS in referral.factors and len(referral.factors) > 1:
        faults.append(Fault(("factors",), "21 (no factors) stands alone", "value_error"))
    consent = referral.consent
    if consent.state in CONSENT_NEEDS_REASON:
        if consent.reason is None:
            faults.append(
                Fault(("consent", "reason"), "a reason is required for this state", "missing")
            )
        elif len(consent.reason) < REASON_MIN:
            faults.append(
                Fault(
                    ("consent", "reason"), f"at least {REASON_MIN} characters", "string_too_short"
                )
            )
    return faults


def decision_faults(decision: DecisionIn) -> list[Fault]:
    if len(set(decision.reasons)) != len(decision.reasons):
        return [Fault(("reasons",), "each reason at most once", "value_error")]
    return []


def answer_faults(answer: InformationAnswerIn) -> list[Fault]:
    """Information needs its text; "nothing held" has none."""
    if answer.outcome == NOTHING_HELD and answer.text is not None:
        return [Fault(("text",), "leave empty when nothing is held", "value_error")]
    if answer.outcome != NOTHING_HELD and answer.text is None:
        return [Fault(("text",), "give the information the agency holds", "missing")]
    return []
