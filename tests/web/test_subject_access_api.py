"""Subject-access export through real HTTP calls, and ``mash-hub sar export`` as an operator
runs it (a real process, real keys, a real database)."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from mash_hub.authz.policy import AccessPolicy
from mash_hub.authz.versions import publish
from mash_hub.authz.vocabulary import AGENCIES, PERSON_FIELDS, ROLES, SOURCES, source_fields
from mash_hub.db.engine import Database
from mash_hub.persons.models import SourceRecord
from mash_hub.referrals import requests, service, triage
from mash_hub.referrals.models import ReferralSubject
from mash_hub.users.models import User
from tests.authz.conftest import BASELINE, Household, add_person
from tests.cli.test_keys_and_erase_cli import (
    audit_entries,
    fresh_store,
    hub_database,
    json_output,
    prepare_hub,
    refused,
    run_hub,
)
from tests.referrals.conftest import OFFICER, PARTNER, referral
from tests.referrals.test_requests import ANSWER, NOW, POLICE, QUESTION, ask
from tests.web.test_persons_api import PURPOSE, PersonsHub, assert_problem, without_request_id

REF = "SAR-2026-0117"
IG = ("information_governance", "council")


class SarHub(PersonsHub):
    def export(
        self,
        role: str = IG[0],
        agency: str = IG[1],
        reference: str | None = REF,
        person_id: uuid.UUID | str | None = None,
    ) -> Any:
        headers = {} if reference is None else {"X-SAR-Reference": reference}
        return self.view(role, agency, headers, person_id=person_id, path="/subject-access")


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[SarHub]:
    yield SarHub(committing_database, tmp_path)


def test_information_governance_gets_every_group_and_the_export_is_audited(hub: SarHub) -> None:
    hub.view("social_worker", "social_care", PURPOSE)  # one access to show in the history
    response = hub.export()
    assert response.status_code == 200, response.text
    assert "attachment" in response.headers["content-disposition"]
    body = response.json()
    assert body["person_id"] == str(hub.person_id) and body["reference"] == REF
    for source in SOURCES:
        (record,) = body["sources"][source]
        assert record["record_id"] == str(hub.household.records[source])
        assert set(record["groups"]) == set(source_fields(source))
        for group in source_fields(source):
            assert record["groups"][group] == {"value": hub.household.values[(source, group)]}
        assert set(body["withheld"][source]) == set(PERSON_FIELDS) - set(source_fields(source))
    (event,) = body["access_history"]
    assert event["action"] == "person.view"
    assert event["accessed_by"] == {
        "kind": "staff",
        "role": "social_worker",
        "agency": "social_care",
    }
    assert event["purpose"] == {"code": "mash_triage"}

    (entry,) = hub.audit("person.subject_access")
    assert entry.seq == body["audit_seq"]
    assert entry.details["reference"] == REF and entry.details["channel"] == "api"
    assert entry.subject_id == str(hub.person_id)
    logged = json.dumps(entry.details)
    for value in hub.household.values.values():
        assert value not in logged
    # Staff identities are not in the export.
    assert "user:" not in response.text


def test_a_sar_reference_is_required(hub: SarHub) -> None:
    for reference in (None, "Jane Doe", "no-digits"):
        body = assert_problem(hub.export(reference=reference), 400)
        assert body["code"] == "sar_reference_invalid"
        assert body["errors"][0]["loc"] == ["header", "X-SAR-Reference"]
        if reference:
            assert reference not in json.dumps(body)
    denied = hub.audit("authz.denied")
    assert [d.details["reason"] for d in denied] == ["reference_missing"] * 3
    assert hub.audit("person.subject_access") == []


def test_every_other_role_is_refused_like_an_unknown_person(hub: SarHub) -> None:
    answers = [hub.export(IG[0], IG[1], person_id=uuid.uuid4())]
    others = [(role, agency) for role in ROLES for agency in AGENCIES if role != IG[0]]
    answers += [hub.export(role, agency) for role, agency in others]
    answers.append(hub.export("auditor", "police", reference=None))  # no 400 for a refusal
    bodies = [without_request_id(assert_problem(a, 403)) for a in answers]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["code"] == "person_not_available"
    for answer in answers:
        for value in hub.household.values.values():
            assert value not in answer.text
    denied = hub.audit("authz.denied")
    assert len(denied) == len(answers)
    assert {d.details["requested"] for d in denied} == {"person.subject_access"}
    reasons = [d.details["reason"] for d in denied]
    assert reasons[0] == "unknown_person"
    assert set(reasons[1:-1]) == {"role_not_permitted"}
    assert hub.audit("person.subject_access") == []
    # Information governance may not use the ordinary person view.
    assert hub.view(*IG, PURPOSE).status_code == 403


def test_no_published_policy_is_503(committing_database: Database, tmp_path: Path) -> None:
    hub = SarHub(committing_database, tmp_path, published=False)
    assert assert_problem(hub.export(), 503)["code"] == "policy_not_published"


def test_the_route_is_in_the_openapi_document(hub: SarHub) -> None:
    spec = hub.client.get("/openapi.json").json()
    operation = spec["paths"]["/api/v1/persons/{person_id}/subject-access"]["get"]
    assert {"200", "400", "401", "403", "503"} <= set(operation["responses"])
    assert any(p["name"] == "X-SAR-Reference" for p in operation["parameters"])


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli_hub(hub_env: dict[str, str]) -> tuple[dict[str, str], Household]:
    """A migrated hub with keys, the baseline policy, staff users and one synthetic person."""
    prepare_hub(hub_env)
    store = fresh_store(hub_env)
    with hub_database(hub_env) as db, db.transaction() as session:
        publish(session, BASELINE, actor="test:publisher")
        household = add_person(session, store)
    for name, role, agency in (
        ("ig.lead", *IG),
        ("sw.one", "social_worker", "social_care"),
        ("ig.gone", *IG),
    ):
        json_output(
            run_hub("users", "add", name, "--role", role, "--agency", agency, "--json", env=hub_env)
        )
    with hub_database(hub_env) as db, db.transaction() as session:
        session.execute(update(User).where(User.name == "ig.gone").values(disabled=True))
    return hub_env, household


def sar(env: dict[str, str], person: uuid.UUID | str, user: str, *extra: str) -> Any:
    return run_hub(
        "sar", "export", "--person", str(person), "--as", user, "--reference", REF, *extra, env=env
    )


def test_sar_export_writes_a_private_file_once(
    cli_hub: tuple[dict[str, str], Household], tmp_path: Path
) -> None:
    env, household = cli_hub
    out = tmp_path / "sar.json"
    summary = json_output(sar(env, household.person_id, "ig.lead", "--out", str(out), "--json"))
    assert summary["file"] == str(out) and summary["reference"] == REF
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    document = json.loads(out.read_text())
    assert document["audit_seq"] == summary["audit_seq"]
    for source in SOURCES:
        (record,) = document["sources"][source]
        assert set(record["groups"]) == set(source_fields(source))
    before = out.read_bytes()
    message = refused(sar(env, household.person_id, "ig.lead", "--out", str(out)))
    assert "already exists" in message
    assert out.read_bytes() == before

    (entry,) = audit_entries(env, "person.subject_access")
    assert entry.seq == summary["audit_seq"]
    assert entry.actor.startswith("user:") and entry.details["channel"] == "cli"
    assert entry.details["operator"].startswith("cli:")
    logged = json.dumps(entry.details)
    for value in household.values.values():
        assert value not in logged

    printed = json_output(sar(env, household.person_id, "ig.lead", "--json"))
    assert printed["sources"] == document["sources"]
    assert [e["action"] for e in printed["access_history"]] == ["person.subject_access"]
    human = sar({**env, "COLUMNS": "300"}, household.person_id, "ig.lead")
    assert human.returncode == 0, human.stderr
    assert household.values[("police", "details.incidents")] in human.stdout
    assert "Access history (2)" in human.stdout and "withheld:" in human.stderr


def test_sar_export_refuses_other_roles_and_unknown_users(
    cli_hub: tuple[dict[str, str], Household], tmp_path: Path
) -> None:
    env, household = cli_hub
    out = tmp_path / "refused.json"
    result = sar(env, household.person_id, "sw.one", "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert "refused (role_not_permitted)" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    unknown = sar(env, uuid.uuid4(), "ig.lead")
    assert unknown.returncode == 1 and "unknown_person" in unknown.stderr
    denied = audit_entries(env, "authz.denied")
    assert [d.details["reason"] for d in denied] == ["role_not_permitted", "unknown_person"]
    assert "no user named" in refused(sar(env, household.person_id, "nobody"))
    assert "disabled" in refused(sar(env, household.person_id, "ig.gone"))
    assert "UUID" in refused(sar(env, "not-a-person", "ig.lead"))
    bad = run_hub(
        "sar", "export", "--person", str(household.person_id), "--as", "ig.lead",
        "--reference", "Jane Doe", env=env,
    )  # fmt: skip
    assert "Jane Doe" not in refused(bad)
    assert audit_entries(env, "person.subject_access") == []
    for value in household.values.values():
        assert value not in result.stderr + unknown.stderr


def test_information_requests_about_the_persons_referral_are_in_the_http_export(
    hub: SarHub,
) -> None:
    """Through the API's response model too: a request asked and answered about a referral
    whose subject is the person comes with its question and answer."""
    with hub.database.transaction() as session:
        decisions = AccessPolicy().for_session(session)
        receipt = service.submit(
            session, hub.store, decisions, PARTNER, referral(), idempotency_key=None, model=None,
            now=NOW,
        )  # fmt: skip
        triage.set_rag(session, decisions, OFFICER, receipt.reference, "red", now=NOW)
        made = ask(session, hub.store, decisions, receipt.reference)
        requests.answer(
            session, hub.store, decisions, POLICE, made.id, outcome="information", text=ANSWER,
            now=NOW,
        )  # fmt: skip
        child = session.scalar(
            select(SourceRecord.person_id)
            .join(ReferralSubject, ReferralSubject.record_id == SourceRecord.id)
            .where(ReferralSubject.subject_role == "child")
        )
    response = hub.export(person_id=child)
    assert response.status_code == 200, response.text
    body = response.json()
    (item,) = body["information_requests"]
    assert (item["id"], item["referral"], item["text"]) == (
        str(made.id),
        receipt.reference,
        "included",
    )
    assert (item["question"], item["answer"]) == (QUESTION, ANSWER)
    assert body["counts"]["information_requests"] == 1
