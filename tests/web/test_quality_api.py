"""Data-quality issues through real HTTP calls: list, show, correct, the feed report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from mash_hub.db.engine import Database
from mash_hub.feeds.definition import feed_folders, load_feeds
from mash_hub.persons.models import SourceRecord
from mash_hub.quality.models import QualityIssue
from tests.quality.conftest import BAD_PNC, ROW, ingest_rows
from tests.web.test_persons_api import PURPOSE, PersonsHub, assert_problem


class QualityHub(PersonsHub):
    """The baseline policy and a police record with a mistyped PNC id and postcode."""

    def __init__(self, database: Database, tmp_path: Path) -> None:
        super().__init__(database, tmp_path)
        with database.transaction() as session:
            ingest_rows(session, self.store, load_feeds(feed_folders())["police"], [ROW])
            record = session.scalars(
                select(SourceRecord.id).where(SourceRecord.feed == "police")
            ).one()
            session.execute(
                update(SourceRecord)
                .where(SourceRecord.id == record)
                .values(person_id=self.person_id)
            )
            self.issues = {i.field: str(i.id) for i in session.scalars(select(QualityIssue))}

    def call(self, method: str, path: str, role: str, agency: str, **kwargs: Any) -> Any:
        auth = {"Authorization": f"Bearer {self.token(role, agency)}"}
        return self.client.request(method, f"/api/v1{path}", headers=auth, **kwargs)


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> QualityHub:
    return QualityHub(committing_database, tmp_path)


def test_list_show_and_correct_over_http(hub: QualityHub) -> None:
    listed = hub.call("GET", "/quality-issues", "police_officer", "police")
    assert listed.status_code == 200, listed.text
    assert listed.json()["count"] == 2 and BAD_PNC not in listed.text
    # Council staff own no police feed: nothing of police quality for them.
    refused = hub.call("GET", "/quality-issues", "partner_agency", "education")
    assert_problem(refused, 403)
    issue = hub.issues["pnc_id"]
    assert_problem(hub.call("GET", f"/quality-issues/{issue}", "council_officer", "council"), 403)
    shown = hub.call("GET", f"/quality-issues/{issue}", "police_officer", "police")
    assert shown.status_code == 200 and shown.json()["raw"] == BAD_PNC
    still_bad = hub.call(
        "POST",
        f"/quality-issues/{issue}/correction",
        "police_officer",
        "police",
        json={"value": "12/1234567Y"},
    )
    body = assert_problem(still_bad, 422)
    assert body["code"] == "correction_invalid" and "12/1234567Y" not in still_bad.text
    fixed = hub.call(
        "POST",
        f"/quality-issues/{issue}/correction",
        "police_officer",
        "police",
        json={"value": "12/1234567C"},
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["open_issues_left"] == 1
    again = hub.call(
        "POST",
        f"/quality-issues/{issue}/correction",
        "police_officer",
        "police",
        json={"value": "12/1234567C"},
    )
    assert_problem(again, 409)
    missing = hub.call("GET", f"/quality-issues/{hub.person_id}", "mash_officer", "council")
    assert_problem(missing, 404)
    assert [e.details["via"] for e in hub.audit("quality.correct")] == ["api"]
    assert len(hub.audit("authz.denied")) == 2
    view = hub.view("mash_officer", "council", headers=PURPOSE)
    assert view.status_code == 200, view.text
    police = {r["feed"]: r for r in view.json()["sources"]["police"]}["police"]
    assert police["failed_values"] == 1
    assert police["quality_notice"] == "1 value of this record failed validation"


def test_the_feed_report_is_for_its_owner_and_holds_no_value(hub: QualityHub) -> None:
    report = hub.call("GET", "/feeds/police/quality-report", "police_officer", "police")
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["rows"] == 1 and body["flagged"] == 1
    assert set(body["by_reason"]) == {"pnc_id_check_letter", "postcode_invalid"}
    assert BAD_PNC not in json.dumps(body)
    assert_problem(
        hub.call("GET", "/feeds/police/quality-report", "council_officer", "council"), 403
    )
    assert_problem(hub.call("GET", "/feeds/nope/quality-report", "mash_officer", "council"), 404)
    assert len(hub.audit("quality.report")) == 1
