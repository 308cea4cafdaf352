"""The auditor's report and download pages, and the information-governance subject-access
download, through real HTTP calls: each writes exactly the audit entry its API writes, shows
errors with the GOV.UK error summary, and refuses (with an audited refusal) every other role."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mash_hub.db.engine import Database
from mash_hub.users.service import change_user
from tests.web.test_audit_pages import AuditPagesHub
from tests.web.test_pages import csrf

NOVEMBER = {"since": "2026-11-01", "until": "2026-11-30"}
NOVEMBER_API = {"since": "2026-11-01T00:00:00+00:00", "until": "2026-12-01T00:00:00+00:00"}
SAR_REFERENCE = "SAR-2026-0117"


class ReportPagesHub(AuditPagesHub):
    def api(self, path: str, role: str = "auditor", agency: str = "council", **kw: Any) -> Any:
        self.client.cookies.clear()
        headers = {"Authorization": f"Bearer {self.token(role, agency)}", **kw.pop("headers", {})}
        return self.client.get(f"/api/v1{path}", headers=headers, **kw)


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[ReportPagesHub]:
    hub = ReportPagesHub(committing_database, tmp_path)
    hub.officer_views_a_person()
    hub.sign_in("aud", "auditor", "council")
    hub.settle()
    yield hub


def without(details: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in details.items() if k not in keys}


def test_the_unusual_access_report_is_the_apis_report_and_audit_entry(
    hub: ReportPagesHub,
) -> None:
    response = hub.client.get("/audit/unusual", params=NOVEMBER)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "Unusual access" in response.text and "Break-glass views" in response.text
    (page_entry,) = hub.entries("audit.unusual")
    assert page_entry.actor == hub.actor_id("aud")
    api = hub.api("/audit/unusual", params=NOVEMBER_API)
    assert api.status_code == 200, api.text
    page_entry, api_entry = hub.entries("audit.unusual")
    assert page_entry.details == api_entry.details
    assert page_entry.details["since"] == "2026-11-01T00:00:00+00:00"
    assert page_entry.details["working_hours"] == [8, 18]
    assert f'href="/audit/entries/{page_entry.seq}"' in response.text


def test_the_report_names_actors_as_they_were_when_they_acted(hub: ReportPagesHub) -> None:
    """The officer's view (its purpose a reason code, so a view with no related referral) is
    shown under the name, role and agency they had then, as the audit log shows it."""
    officer = hub.actor_id("police1")
    with hub.database.transaction() as session:
        change_user(
            session, "police1", new_name="pc.renamed", role="mash_officer", agency="council"
        )
    response = hub.client.get("/audit/unusual")
    assert response.status_code == 200, response.text
    unreferred = response.text.split('id="unreferred"')[1].split('id="denials"')[0]
    assert "<strong>police1</strong>" in unreferred
    assert "Police officer, Police" in unreferred and officer in unreferred
    assert "pc.renamed" not in response.text and "mash officer" not in unreferred.lower()
    assert len(hub.entries("audit.unusual")) == 1  # naming actors is not another entry


def test_the_api_names_actors_as_the_page_does(hub: ReportPagesHub) -> None:
    """``GET /api/v1/audit/unusual`` names each finding's actor as they were then, like the
    page, and writes the same ``audit.unusual`` entry."""
    officer = hub.actor_id("police1")
    with hub.database.transaction() as session:
        change_user(
            session, "police1", new_name="pc.renamed", role="mash_officer", agency="council"
        )
    page = hub.client.get("/audit/unusual")
    assert page.status_code == 200, page.text
    api = hub.api("/audit/unusual")
    assert api.status_code == 200, api.text
    (finding,) = [f for f in api.json()["findings"]["unreferred"] if f["actor"] == officer]
    assert (
        finding["actor_kind"],
        finding["actor_name"],
        finding["actor_role"],
        finding["actor_agency"],
    ) == ("hub_user", "police1", "police_officer", "police")
    assert "pc.renamed" not in api.text
    page_entry, api_entry = hub.entries("audit.unusual")
    assert without(page_entry.details, "since", "until") == without(
        api_entry.details, "since", "until"
    )


def test_the_report_runs_for_the_last_30_days_by_default(hub: ReportPagesHub) -> None:
    response = hub.client.get("/audit/unusual")
    assert response.status_code == 200, response.text
    (entry,) = hub.entries("audit.unusual")
    assert entry.details["counts"]["out_of_hours"] + entry.details["counts"]["denials"] >= 0
    assert entry.details["timezone"] == "Europe/London"


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "2026-11-30", "until": "2026-11-01"}, "since", "must be before"),
        ({"since": "2024-01-01", "until": "2026-11-01"}, "since", "at most 366 days"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Enter a time zone the hub knows"),
        ({"working_start": "18", "working_end": "8"}, "working_start", "must start before"),
        ({"volume_threshold": "0"}, "volume_threshold", "Enter a number of views"),
        ({"since": "yesterday"}, "since", "must be a real date"),
    ],
)
def test_report_settings_are_checked_with_govuk_errors(
    hub: ReportPagesHub, params: dict[str, str], field: str, message: str
) -> None:
    response = hub.client.get("/audit/unusual", params=params)
    assert response.status_code == 400
    assert "There is a problem" in response.text and message in response.text
    assert f'href="#{field}"' in response.text
    assert "Mars" not in response.text.replace('value="Mars/Olympus_Mons"', "")
    assert hub.entries("audit.unusual") == []


def test_the_csv_download_is_the_apis_export_of_the_filtered_log(hub: ReportPagesHub) -> None:
    response = hub.client.get("/audit/export", params={"action": "person.view"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["cache-control"] == "no-store"
    (entry,) = hub.entries("audit.export")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="audit-export-{entry.seq}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    views = hub.entries("person.view")
    assert [int(r["seq"]) for r in rows] == [e.seq for e in views]
    assert rows[0]["entry_hash"] and json.loads(rows[0]["details"])["role"] == "police_officer"
    assert entry.details["filters"] == {"action": "person.view"}
    log = hub.client.get("/audit", params={"action": "person.view"})
    assert 'href="/audit/export?action=person.view"' in log.text
    api = hub.api("/audit/export", params={"action": "person.view"})
    assert api.status_code == 200
    assert api.text == response.text
    _, api_entry = hub.entries("audit.export")
    assert without(entry.details, "through_chain_seq") == without(
        api_entry.details, "through_chain_seq"
    )


def test_a_bad_filter_on_the_download_is_shown_on_the_log_page(hub: ReportPagesHub) -> None:
    response = hub.client.get("/audit/export", params={"person_id": "not-an-id"})
    assert response.status_code == 400
    assert "Enter a person id" in response.text
    assert hub.entries("audit.export") == []


def test_other_roles_are_refused_the_report_and_the_download_and_audited(
    hub: ReportPagesHub,
) -> None:
    hub.client.cookies.clear()
    hub.sign_in("police2", "police_officer", "police")
    for path in ("/audit/unusual", "/audit/export"):
        response = hub.client.get(path)
        assert response.status_code == 403
        assert "You do not have access to the audit log" in response.text
    denied = [e for e in hub.entries("authz.denied") if e.actor == hub.actor_id("police2")]
    assert sorted(d.details["requested"] for d in denied) == ["audit.export", "audit.unusual"]
    assert hub.entries("audit.unusual") == [] and hub.entries("audit.export") == []


# -- subject access ---------------------------------------------------------------------------


def sar_sign_in(hub: ReportPagesHub, role: str = "information_governance") -> str:
    hub.client.cookies.clear()
    return hub.sign_in(f"{role}-user", role, "council")


def test_information_governance_downloads_the_apis_subject_access_export(
    hub: ReportPagesHub,
) -> None:
    token = sar_sign_in(hub)
    assert 'href="/subject-access"' in hub.client.get("/").text
    form = hub.client.get("/subject-access")
    assert form.status_code == 200 and csrf(form.text) == token
    response = hub.client.post(
        "/subject-access",
        data={"csrf_token": token, "person_id": str(hub.person_id), "reference": SAR_REFERENCE},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    document = response.json()
    (entry,) = hub.entries("person.subject_access")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="subject-access-{entry.seq}.json"'
    )
    assert document["audit_seq"] == entry.seq and document["reference"] == SAR_REFERENCE
    api = hub.api(
        f"/persons/{hub.person_id}/subject-access",
        role="information_governance",
        headers={"X-SAR-Reference": SAR_REFERENCE},
    )
    assert api.status_code == 200, api.text
    page_entry, api_entry = hub.entries("person.subject_access")
    assert page_entry.details == api_entry.details
    assert page_entry.subject_id == api_entry.subject_id == str(hub.person_id)
    from_api = api.json()
    assert set(document) == set(from_api)
    assert document["sources"] == from_api["sources"]
    assert document["withheld"] == from_api["withheld"]


def test_the_subject_access_form_checks_its_fields_as_the_api_does(hub: ReportPagesHub) -> None:
    token = sar_sign_in(hub)
    response = hub.client.post(
        "/subject-access",
        data={"csrf_token": token, "person_id": str(hub.person_id), "reference": "bad ref!"},
    )
    assert response.status_code == 400
    assert "There is a problem" in response.text and 'href="#reference"' in response.text
    denied = max(hub.entries("authz.denied"), key=lambda entry: entry.seq)
    assert denied.details["reason"] == "reference_missing"  # as the API records it
    no_id = hub.client.post(
        "/subject-access", data={"csrf_token": token, "person_id": "x", "reference": SAR_REFERENCE}
    )
    assert no_id.status_code == 400 and "Enter a person id" in no_id.text
    assert hub.entries("person.subject_access") == []


def test_other_roles_and_forms_without_csrf_are_refused_the_subject_access_export(
    hub: ReportPagesHub,
) -> None:
    token = sar_sign_in(hub, "social_worker")
    assert 'href="/subject-access"' not in hub.client.get("/").text
    assert hub.client.get("/subject-access").status_code == 403
    response = hub.client.post(
        "/subject-access",
        data={"csrf_token": token, "person_id": str(hub.person_id), "reference": SAR_REFERENCE},
    )
    assert response.status_code == 403
    assert "You cannot export this person" in response.text
    (denied,) = [e for e in hub.entries("authz.denied") if e.details.get("role") == "social_worker"]
    assert denied.details["reason"] == "role_not_permitted"
    assert denied.details["requested"] == "person.subject_access"
    sar_sign_in(hub)
    forged = hub.client.post(
        "/subject-access", data={"person_id": str(hub.person_id), "reference": SAR_REFERENCE}
    )
    assert forged.status_code == 403 and "This form could not be accepted" in forged.text
    assert hub.entries("person.subject_access") == []
