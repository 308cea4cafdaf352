"""The person view and link explanations through real HTTP calls with hub-issued tokens."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.models import BreakGlassView
from mash_hub.authz.versions import publish
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.db.engine import Database
from mash_hub.matching.models import LinkRun, PersonLink
from mash_hub.persons.store import PersonStore
from mash_hub.users.service import add_client
from tests.authz.conftest import BASELINE, Household, add_person, add_referral
from tests.web.test_auth import Hub

PURPOSE_TEXT = "Triage of contact C-1024 received today"
JUSTIFICATION = "Child reported missing overnight; police need the full picture now."
PURPOSE = {"X-Purpose-Code": "mash_triage", "X-Purpose-Text": PURPOSE_TEXT}
GLASS = {**PURPOSE, "X-Break-Glass-Justification": JUSTIFICATION}
EXPLANATION = "same date of birth +13.0; same family name +8.5"


class PersonsHub(Hub):
    """A hub with a person store, optionally the baseline policy, and a synthetic person."""

    def __init__(
        self, database: Database, tmp_path: Path, *, published: bool = True, **overrides: Any
    ) -> None:
        super().__init__(database, tmp_path, **overrides)
        self.store = PersonStore.from_provider(
            LocalKeyringProvider.create(tmp_path / "keyring.json")
        )
        self.app.state.person_store = self.store
        with database.transaction() as session:
            if published:
                publish(session, BASELINE, actor="test:publisher")
            self.household: Household = add_person(session, self.store)
        self.tokens: dict[tuple[str, str], str] = {}

    @property
    def person_id(self) -> uuid.UUID:
        return self.household.person_id

    def token(self, role: str, agency: str) -> str:
        """A bearer credential for role x agency (an API key for the partner role)."""
        if (role, agency) not in self.tokens:
            if role == "partner_agency":
                with self.database.transaction() as session:
                    _, key = add_client(session, agency)
                self.tokens[(role, agency)] = key
            else:
                user = self.user(f"{role}.{agency}", role, agency)
                self.tokens[(role, agency)] = self.hub_token(user)
        return self.tokens[(role, agency)]

    def referral(
        self,
        reference: str,
        person: Household | None = None,
        source: str = "referral",
        **kwargs: Any,
    ) -> None:
        """A referral naming ``person`` (default: the hub's person) through its record from
        ``source`` (one referral per record; ``add_referral``'s keywords: status, decided_at)."""
        record = (person or self.household).records[source]
        with self.database.transaction() as session:
            add_referral(session, [record], reference, **kwargs)

    def another_person(self) -> Household:
        with self.database.transaction() as session:
            return add_person(session, self.store)

    def view(
        self,
        role: str = "social_worker",
        agency: str = "social_care",
        headers: dict[str, str] | None = None,
        person_id: uuid.UUID | str | None = None,
        path: str = "",
    ) -> Any:
        target = self.person_id if person_id is None else person_id
        return self.client.get(
            f"/api/v1/persons/{target}{path}",
            headers={"Authorization": f"Bearer {self.token(role, agency)}", **(headers or {})},
        )

    def audit(self, action: str) -> list[AuditEntry]:
        with self.database.transaction() as session:
            rows = session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            ).all()
            session.expunge_all()
            return list(rows)


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[PersonsHub]:
    yield PersonsHub(committing_database, tmp_path)


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_a_view_shows_the_masked_groups_and_writes_one_audit_entry(hub: PersonsHub) -> None:
    response = hub.view(headers=PURPOSE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["person_id"] == str(hub.person_id)
    assert body["purpose"] == {"code": "mash_triage"}
    assert body["break_glass"] is False
    police = body["sources"]["police"]
    assert len(police) == 1
    assert police[0]["record_id"] == str(hub.household.records["police"])
    # social_worker sees police warning markers but not incidents (policies/README.md).
    assert "details.warning_markers" in police[0]["groups"]
    assert "details.incidents" not in police[0]["groups"]
    assert police[0]["groups"]["identity"] == {
        "value": hub.household.values[("police", "identity")]
    }

    hub.referral("REF-2024-0042")
    second = hub.view(headers={"X-Purpose-Referral": "REF-2024-0042"})
    assert second.status_code == 200, second.text
    assert second.json()["purpose"] == {"referral": "REF-2024-0042"}

    views = hub.audit("person.view")
    assert [v.seq for v in views] == [body["audit_seq"], second.json()["audit_seq"]]
    assert all(v.subject_id == str(hub.person_id) for v in views)
    assert views[0].details["shown"]["police"] == sorted(police[0]["groups"])
    logged = json.dumps([v.details for v in views])
    assert PURPOSE_TEXT not in logged  # free text is sealed, never in the log in clear
    for value in hub.household.values.values():
        assert value not in logged


def test_purpose_is_required_with_field_level_detail(hub: PersonsHub) -> None:
    body = assert_problem(hub.view(), 400)
    assert body["code"] == "purpose_invalid"
    assert body["errors"][0]["loc"] == ["header", "X-Purpose-Code"]
    denied = hub.audit("authz.denied")
    assert [d.details["reason"] for d in denied] == ["purpose_missing"]  # committed

    cases: list[tuple[dict[str, str], set[str]]] = [
        ({"X-Purpose-Code": "nosy-about-Jane-Doe", "X-Purpose-Text": PURPOSE_TEXT},
         {"X-Purpose-Code"}),
        ({"X-Purpose-Code": "mash_triage"}, {"X-Purpose-Text"}),
        ({"X-Purpose-Code": "mash_triage", "X-Purpose-Text": "short"}, {"X-Purpose-Text"}),
        ({"X-Purpose-Referral": "Jane Doe"}, {"X-Purpose-Referral"}),
        ({**PURPOSE, "X-Purpose-Referral": "REF-1"}, {"X-Purpose-Referral"}),
        ({**PURPOSE, "X-Break-Glass-Justification": "urgent"}, {"X-Break-Glass-Justification"}),
    ]  # fmt: skip
    for headers, fields in cases:
        body = assert_problem(hub.view("police_officer", "police", headers), 400)
        assert {e["loc"][1] for e in body["errors"]} == fields, headers
        text = json.dumps(body)
        for value in headers.values():
            assert value not in text or value in {"mash_triage"}, value
    assert hub.audit("person.view") == []
    assert hub.view(path="/links").status_code == 400


def test_a_referral_purpose_must_name_an_open_referral_about_this_person(
    hub: PersonsHub,
) -> None:
    """Issue #12 item 2: made-up, closed and other people's referrals are refused (403,
    audited as authz.denied with the reason); a made-up reference never enters the log."""
    now = dt.datetime.now(dt.UTC)
    other = hub.another_person()
    hub.referral("R-2026-AAAA0001")
    hub.referral("R-2026-OTHER001", other)
    hub.referral(
        "R-2026-OLD00001",
        source="council",
        status="decided",
        decided_at=now - dt.timedelta(days=31),
    )
    # Someone named in the referral alongside the child: the referral concerns them too.
    with hub.database.transaction() as session:
        add_referral(
            session,
            [other.records["police"], hub.household.records["police"]],
            "R-2026-HOUSE001",
            status="decided",
            decided_at=now - dt.timedelta(days=29),
        )
    refused = {
        "R-2026-ZZZZZZZZ": "unknown_referral",
        "whatever-1": "unknown_referral",
        "R-2026-OTHER001": "other_person",
        "R-2026-OLD00001": "referral_closed",
    }
    for path in ("", "/links"):
        for reference, problem in refused.items():
            body = assert_problem(
                hub.view("police_officer", "police", {"X-Purpose-Referral": reference}, path=path),
                403,
            )
            assert body["code"] == "purpose_referral_invalid", (reference, path)
            assert reference not in json.dumps(body)
            entry = hub.audit("authz.denied")[-1]
            assert entry.details["reason"] == "purpose_referral_invalid"
            assert entry.details["purpose_problem"] == problem
            assert entry.details["requested"] == "person" + (".view" if not path else ".links.view")
            if problem == "unknown_referral":
                assert reference not in json.dumps(entry.details)
            else:
                assert entry.details["purpose"] == {"referral": reference}
    assert hub.audit("person.view") == [] and hub.audit("person.links.view") == []
    for reference in ("R-2026-AAAA0001", "R-2026-HOUSE001"):
        for path in ("", "/links"):
            response = hub.view(
                "police_officer", "police", {"X-Purpose-Referral": reference}, path=path
            )
            assert response.status_code == 200, (reference, path, response.text)
    assert [e.details["purpose"] for e in hub.audit("person.view")] == [
        {"referral": "R-2026-AAAA0001"},
        {"referral": "R-2026-HOUSE001"},
    ]
    # The other person may be viewed for their own referral.
    assert (
        hub.view(
            headers={"X-Purpose-Referral": "R-2026-OTHER001"}, person_id=other.person_id
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    "justification",
    [
        "x" + " " * 38 + "y",
        "help" + " " * 30 + "now please",
        "1234567890 1234567890 1234567890 123",
        "urgent " + "." * 40,
        "a b c d e f g h i j k l m n o p q r s t u v w",
    ],
)
def test_a_break_glass_justification_must_be_written_in_words(
    hub: PersonsHub, justification: str
) -> None:
    body = assert_problem(
        hub.view(
            "police_officer", "police", {**PURPOSE, "X-Break-Glass-Justification": justification}
        ),
        400,
    )
    (fault,) = body["errors"]
    assert fault["loc"] == ["header", "X-Break-Glass-Justification"]
    assert "words" in fault["msg"] or "characters" in fault["msg"]
    assert hub.audit("person.view") == []
    with hub.database.transaction() as session:
        assert session.scalars(select(BreakGlassView)).all() == []


@pytest.mark.parametrize("text", ["x" + " " * 12 + "y", "1234567890 12", ".........."])
def test_a_purpose_text_must_be_written_in_words(hub: PersonsHub, text: str) -> None:
    """Padding or digits are not a reason for reading a record (length was the only check)."""
    body = assert_problem(
        hub.view(headers={"X-Purpose-Code": "mash_triage", "X-Purpose-Text": text}), 400
    )
    (fault,) = body["errors"]
    assert fault["loc"] == ["header", "X-Purpose-Text"]
    assert "words" in fault["msg"] or "characters" in fault["msg"]
    assert text not in json.dumps(body)
    assert hub.audit("person.view") == []


@pytest.mark.parametrize("justification", ["", "   ", "urgent", "x" + " " * 38 + "y"])
def test_a_refused_break_glass_request_is_audited(hub: PersonsHub, justification: str) -> None:
    """Issue #12 item 3: a bad or empty justification gets 400 AND an authz.denied entry
    (committed although the request fails), holding nothing of the text."""
    headers = {**PURPOSE, "X-Break-Glass-Justification": justification}
    for role, agency in (("police_officer", "police"), ("council_officer", "council")):
        body = assert_problem(hub.view(role, agency, headers), 400)
        assert [e["loc"] for e in body["errors"]] == [["header", "X-Break-Glass-Justification"]]
    denied = hub.audit("authz.denied")
    assert [(d.details["reason"], d.details["role"]) for d in denied] == [
        ("break_glass_justification_invalid", "police_officer"),
        ("break_glass_justification_invalid", "council_officer"),
    ]
    assert all(d.subject_id == str(hub.person_id) and d.details["break_glass"] for d in denied)
    if justification.strip():
        assert justification.strip() not in json.dumps([d.details for d in denied])
    assert hub.audit("person.view") == []


def test_forbidden_and_unknown_get_the_same_answer(hub: PersonsHub) -> None:
    unknown = uuid.uuid4()
    answers = [
        hub.view("social_worker", "social_care", PURPOSE, person_id=unknown),
        hub.view("admin", "council", PURPOSE),
        hub.view("admin", "council", PURPOSE, person_id=unknown),
        hub.view("auditor", "council", PURPOSE),
        hub.view("partner_agency", "police", PURPOSE),
        hub.view("council_officer", "council", GLASS),  # may not break glass
        hub.view("social_worker", "social_care", PURPOSE, person_id=unknown, path="/links"),
        hub.view("admin", "council", PURPOSE, path="/links"),
    ]
    bodies = [without_request_id(assert_problem(a, 403)) for a in answers]
    assert all(b == bodies[0] for b in bodies), bodies
    assert set(bodies[0]) == {"type", "title", "status", "detail", "code"}
    reasons = [d.details["reason"] for d in hub.audit("authz.denied")]
    assert reasons == [
        "unknown_person",
        "role_not_permitted",
        "role_not_permitted",
        "role_not_permitted",
        "role_not_permitted",
        "break_glass_not_permitted",
        "unknown_person",
        "role_not_permitted",
    ]
    assert hub.audit("person.view") == []


def test_partner_and_auditor_are_refused_even_without_a_purpose(hub: PersonsHub) -> None:
    for role, agency in (("partner_agency", "police"), ("auditor", "council")):
        for headers in (PURPOSE, {}):
            body = assert_problem(hub.view(role, agency, headers), 403)
            assert body["code"] == "person_not_available"
    denied = hub.audit("authz.denied")
    assert len(denied) == 4
    assert denied[0].actor.startswith("client:")
    assert {d.details["role"] for d in denied} == {"partner_agency", "auditor"}


def test_break_glass_is_flagged_and_recorded_for_review(hub: PersonsHub) -> None:
    normal = hub.view("police_officer", "police", PURPOSE).json()
    assert "details.education" not in normal["sources"]["council"][0]["groups"]
    response = hub.view("police_officer", "police", GLASS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["break_glass"] is True
    assert "details.education" in body["sources"]["council"][0]["groups"]
    entry = hub.audit("person.view")[-1]
    assert entry.seq == body["audit_seq"]
    assert entry.details["break_glass"] is True
    assert entry.details["review_required"] is True
    assert "details.education" in entry.details["beyond_normal_mask"]["council"]
    assert JUSTIFICATION not in json.dumps(entry.details)
    with hub.database.transaction() as session:
        glass = session.scalars(select(BreakGlassView)).all()
        assert [(g.audit_seq, g.person_id) for g in glass] == [(body["audit_seq"], hub.person_id)]


def test_no_personal_value_appears_in_any_error_body(hub: PersonsHub) -> None:
    leaks = [*hub.household.values.values(), PURPOSE_TEXT, JUSTIFICATION, "Jane"]
    responses = [
        hub.view(),
        hub.view(headers={"X-Purpose-Code": "Jane", "X-Purpose-Text": PURPOSE_TEXT}),
        hub.view(headers={"X-Purpose-Referral": "Jane/Doe"}),
        hub.view(headers={**PURPOSE, "X-Break-Glass-Justification": "Jane"}),
        hub.view("admin", "council", GLASS),
        hub.view("council_officer", "council", GLASS),
        hub.view(headers=PURPOSE, person_id="Jane-Doe"),
        hub.view("auditor", "council", PURPOSE, path="/links"),
    ]
    for response in responses:
        assert response.status_code >= 400, response.text
        for leak in leaks:
            assert leak not in response.text
    # Nor did a refused request write anything personal to the audit log.
    logged = json.dumps([d.details for d in hub.audit("authz.denied")])
    for leak in leaks:
        assert leak not in logged


def test_no_published_policy_is_503(committing_database: Database, tmp_path: Path) -> None:
    hub = PersonsHub(committing_database, tmp_path, published=False)
    for path in ("", "/links"):
        body = assert_problem(hub.view(headers=PURPOSE, path=path), 503)
        assert body["code"] == "policy_not_published"


def test_links_explain_why_records_are_together(hub: PersonsHub) -> None:
    records = hub.household.records
    with hub.database.transaction() as session:
        run = LinkRun(actor="test", model_version=3, model_definition="m" * 64, counts={})
        session.add(run)
        session.flush()
        session.add(
            PersonLink(
                run_id=run.id,
                record_id_l=records["police"],
                record_id_r=records["council"],
                status="auto",
                match_weight=21.5,
                weights={"dob": 13.0, "family_name": 8.5},
                explanation=EXPLANATION,
            )
        )
    hub.referral("REF-9")
    response = hub.view(
        "council_officer", "council", {"X-Purpose-Referral": "REF-9"}, path="/links"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    (link,) = body["links"]
    assert link["explanation"] == EXPLANATION
    assert {link["source_l"], link["source_r"]} == {"police", "council"}
    assert link["model_version"] == 3
    entry = hub.audit("person.links.view")[-1]
    assert entry.seq == body["audit_seq"]
    assert entry.details["links"] == [[str(records["police"]), str(records["council"])]]
    assert entry.details["purpose"] == {"referral": "REF-9"}
    assert EXPLANATION not in json.dumps(entry.details)  # ids only


def test_openapi_documents_the_problems(hub: PersonsHub) -> None:
    document = hub.client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/persons/{person_id}"]["get"]
    for status in ("400", "401", "403", "503"):
        assert "application/problem+json" in operation["responses"][status]["content"]
    example = operation["responses"]["403"]["content"]["application/problem+json"]["example"]
    assert example["code"] == "person_not_available"
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert {"X-Purpose-Code", "X-Purpose-Referral", "X-Purpose-Text"} <= headers
    assert "X-Break-Glass-Justification" in headers
    assert "/api/v1/persons/{person_id}/links" in document["paths"]
