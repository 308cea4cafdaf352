"""Property: a serialised person view never contains any value of a group outside the mask."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, Caller
from mash_hub.authz.vocabulary import AGENCIES, PERSON_FIELDS, SOURCES
from mash_hub.casework.view import BreakGlass, Purpose, view_person
from mash_hub.persons.store import QUALITY, PersonStore
from tests.authz.conftest import add_person

VIEWERS = ("mash_officer", "police_officer", "social_worker", "council_officer")
SLOTS = [(source, group) for source in SOURCES for group in PERSON_FIELDS]

# Any text, tagged so no value can contain another slot's value by accident.
values = st.lists(
    st.text(st.characters(blacklist_characters="|", codec="utf-8"), min_size=1, max_size=24),
    min_size=len(SLOTS),
    max_size=len(SLOTS),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=values,
    role=st.sampled_from(VIEWERS),
    agency=st.sampled_from(AGENCIES),
    glass=st.booleans(),
)
def test_view_never_serialises_a_value_outside_the_mask(
    session: Session,
    store: PersonStore,
    policy: AccessPolicy,
    raw: list[str],
    role: str,
    agency: str,
    glass: bool,
) -> None:
    tagged = {slot: f"|V{i}|{text}|" for i, (slot, text) in enumerate(zip(SLOTS, raw, strict=True))}
    person = add_person(session, store, {slot: {"value": v} for slot, v in tagged.items()})
    caller = Caller("user:prop", role, agency)
    decisions = policy.for_session(session)
    use_glass = glass and decisions.may_break_glass(caller)
    view = view_person(
        session,
        store,
        policy,
        caller,
        person.person_id,
        Purpose(code="information_request", text="Property test of the person view"),
        BreakGlass("Property test: break-glass widens the mask as the policy says.")
        if use_glass
        else None,
    )
    serialised = json.dumps(view.to_dict())
    for (source, group), value in tagged.items():
        encoded = json.dumps(value)[1:-1]  # as it would appear inside the JSON document
        # The quality group's raw values are never decrypted for a view, only counted.
        allowed = group != QUALITY and group in decisions.mask(
            caller, source, break_glass=use_glass
        )
        assert (encoded in serialised) == allowed, (role, agency, source, group)
