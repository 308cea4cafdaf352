"""Reading the purpose-of-access fields of a page form into the services' ``Purpose`` and
``BreakGlass`` (the same rules the API's headers follow), with GOV.UK error messages.

Every message is fixed text: a form value is never echoed in an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mash_hub.casework.view import (
    JUSTIFICATION_MAX,
    JUSTIFICATION_MIN,
    JUSTIFICATION_MIN_LETTERS,
    JUSTIFICATION_MIN_WORDS,
    PURPOSE_TEXT_MAX,
    PURPOSE_TEXT_MIN,
    PURPOSE_TEXT_MIN_WORDS,
    REASON_CODES,
    BreakGlass,
    InvalidPurposeError,
    Purpose,
    check_purpose_text,
)
from mash_hub.referrals.service import REFERENCE

REFERRAL_CHOICE = "referral"
# The purpose page's radios name a referral about the person: ``referral:<reference>``.
REFERRAL_PREFIX = "referral:"
# The break-glass rule as people read it, from the constants check_justification applies.
JUSTIFICATION_RULE = (
    f"{JUSTIFICATION_MIN:,} to {JUSTIFICATION_MAX:,} characters, with at least "
    f"{JUSTIFICATION_MIN_WORDS} words ({JUSTIFICATION_MIN_LETTERS} letters in all)"
)


@dataclass
class FormErrors:
    """Errors by field id, in the order the form shows them."""

    by_field: dict[str, str] = field(default_factory=dict)

    def add(self, field_id: str, message: str) -> None:
        self.by_field.setdefault(field_id, message)

    def summary(self) -> list[dict[str, str]]:
        """The GOV.UK error summary's list."""
        return [{"text": text, "href": f"#{fid}"} for fid, text in self.by_field.items()]

    def __bool__(self) -> bool:
        return bool(self.by_field)


def read_purpose(form: dict[str, str], errors: FormErrors) -> Purpose | None:
    """The purpose the form gives (radios ``purpose``: a reason code or ``referral``;
    ``referral_reference``; ``purpose_text``), or None with its faults in ``errors``."""
    choice = form.get("purpose", "")
    text = form.get("purpose_text", "").strip() or None
    reference = form.get("referral_reference", "").strip() or None
    if choice.startswith(REFERRAL_PREFIX):  # a referral picked from the purpose page's list
        choice, reference = REFERRAL_CHOICE, choice.removeprefix(REFERRAL_PREFIX) or None
    if choice != REFERRAL_CHOICE and choice not in REASON_CODES:
        errors.add("purpose", "Select why you need to see this information")
        return None
    if choice == REFERRAL_CHOICE and reference is None:
        errors.add("referral_reference", "Enter the referral reference")
    elif choice == REFERRAL_CHOICE and reference is not None:
        try:
            Purpose(referral=reference)
        except InvalidPurposeError:
            errors.add(
                "referral_reference",
                "Enter a referral reference of 3 to 40 letters, digits, slashes, underscores "
                "or hyphens, with at least one digit",
            )
    if choice in REASON_CODES and text is None:
        errors.add("purpose_text", "Explain briefly why you need to see this information")
    elif text is not None:
        try:
            check_purpose_text(text)
        except InvalidPurposeError:
            errors.add(
                "purpose_text",
                f"The explanation must be {PURPOSE_TEXT_MIN} to {PURPOSE_TEXT_MAX} characters "
                f"and say why in at least {PURPOSE_TEXT_MIN_WORDS} words",
            )
    if errors:
        return None
    if choice == REFERRAL_CHOICE:
        return Purpose(referral=reference, text=text)
    return Purpose(code=choice, text=text)


def read_break_glass(form: dict[str, str], errors: FormErrors) -> BreakGlass | None:
    """Break-glass when its box is ticked: the justification is then required."""
    if form.get("break_glass") != "yes":
        return None
    try:
        return BreakGlass(form.get("justification", "").strip())
    except InvalidPurposeError:
        errors.add(
            "justification", f"Explain the emergency for break-glass access in {JUSTIFICATION_RULE}"
        )
        return None


def purpose_for(reference: str | None) -> dict[str, str]:
    """The purpose form's values for "this referral" (only a well-formed reference): its radio
    on the purpose page's list of the person's referrals."""
    if reference is None or not REFERENCE.match(reference):
        return {}
    return {"purpose": REFERRAL_PREFIX + reference}
