"""Data-quality issues: the person view's count, showing and correcting, the feed report."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.policy import AccessPolicy, Caller
from mash_hub.casework.view import Purpose, view_person
from mash_hub.feeds.definition import FeedDefinition
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import CONTACT, IDENTIFIERS, QUALITY, PersonStore
from mash_hub.quality.models import QualityIssue
from mash_hub.quality.report import feed_report
from mash_hub.quality.service import (
    CorrectionInvalidError,
    QualityDeniedError,
    correct_issue,
    list_issues,
    show_issue,
)
from tests.quality.conftest import BAD_PNC, BAD_POSTCODE, ROW, Flagged, ingest_rows

OFFICER = Caller("user:officer-1", "mash_officer", "council")
POLICE = Caller("user:pc-1", "police_officer", "police")
COUNCIL = Caller("user:co-1", "council_officer", "council")
PURPOSE = Purpose(code="mash_triage", text="Triage of a contact about this child")


def actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_the_person_view_counts_failed_values_for_those_allowed_and_never_shows_them(
    session: Session, store: PersonStore, policy: AccessPolicy, flagged: Flagged
) -> None:
    assert flagged.report.flagged == 1 and flagged.report.quarantined == 0
    seen = view_person(session, store, policy, OFFICER, flagged.person_id, PURPOSE).to_dict()
    (record,) = seen["sources"]["police"]
    assert record["failed_values"] == 2
    assert record["quality_notice"] == "2 values of this record failed validation"
    assert QUALITY not in record["groups"]
    assert record["groups"][IDENTIFIERS]["pnc_id"] is None
    assert BAD_PNC not in json.dumps(seen) and BAD_POSTCODE not in json.dumps(seen)
    # A council officer sees police identity fields but not their quality group.
    other = view_person(session, store, policy, COUNCIL, flagged.person_id, PURPOSE).to_dict()
    (record,) = other["sources"]["police"]
    assert "failed_values" not in record and "quality_notice" not in record


def test_list_holds_no_values_and_show_is_policy_checked_and_audited(
    session: Session, store: PersonStore, policy: AccessPolicy, flagged: Flagged
) -> None:
    listed = [i.as_dict() for i in list_issues(session)]
    assert {(i["field"], i["code"]) for i in listed} == {
        ("pnc_id", "pnc_id_check_letter"),
        ("addresses[0].postcode", "postcode_invalid"),
    }
    assert BAD_PNC not in json.dumps(listed)
    decisions = policy.for_session(session)
    with pytest.raises(QualityDeniedError, match="quality"):
        show_issue(session, store, decisions, COUNCIL, flagged.issues["pnc_id"], via="test")
    shown = show_issue(session, store, decisions, POLICE, flagged.issues["pnc_id"], via="test")
    assert shown["raw"] == BAD_PNC
    assert actions(session)[-2:] == ["authz.denied", "quality.view"]
    assert BAD_PNC not in json.dumps([e.details for e in session.scalars(select(AuditEntry))])


def test_a_correction_is_standardised_indexed_and_keeps_the_person(
    session: Session, store: PersonStore, policy: AccessPolicy, flagged: Flagged
) -> None:
    decisions = policy.for_session(session)
    issue_id = flagged.issues["pnc_id"]
    with pytest.raises(CorrectionInvalidError, match="pnc_id_check_letter"):
        correct_issue(session, store, decisions, OFFICER, issue_id, "12/1234567Y", via="test")
    assert session.get(QualityIssue, issue_id).status == "open"  # type: ignore[union-attr]
    with pytest.raises(QualityDeniedError):
        correct_issue(session, store, decisions, COUNCIL, issue_id, "12/1234567c", via="test")
    done = correct_issue(session, store, decisions, OFFICER, issue_id, "12/1234567c", via="test")
    assert done.open_issues_left == 1 and done.person_id == flagged.person_id
    old = session.get(SourceRecord, flagged.record_id)
    new = session.get(SourceRecord, done.new_record_id)
    assert old is not None and new is not None
    assert (old.is_current, new.is_current, new.version) == (False, True, 2)
    assert new.person_id == flagged.person_id and new.source_key == old.source_key
    groups = store.read(session, [new.id], [IDENTIFIERS, QUALITY])[new.id].groups
    assert groups[IDENTIFIERS]["pnc_id"] == "12/1234567C"
    assert [i["field"] for i in groups[QUALITY]["issues"]] == ["addresses[0].postcode"]
    # Indexed again: the corrected PNC id finds the new version.
    terms = store.indexer.query_terms({"pnc_id": "12/1234567C"})
    assert new.id in store.candidates(session, terms)
    # The postcode issue moved to the new version; correcting it removes the quality group.
    postcode = flagged.issues["addresses[0].postcode"]
    last = correct_issue(session, store, decisions, OFFICER, postcode, "ls6 2qt", via="test")
    assert last.open_issues_left == 0
    final = store.read(session, [last.new_record_id], [CONTACT, QUALITY])[last.new_record_id]
    assert QUALITY not in final.groups
    assert final.groups[CONTACT]["addresses"][0] == {
        "line1": "109",
        "postcode": "LS6 2QT",
        "current": True,
    }
    seen = view_person(session, store, policy, OFFICER, flagged.person_id, PURPOSE).to_dict()
    (record,) = seen["sources"]["police"]
    assert record["failed_values"] == 0 and "quality_notice" not in record
    assert actions(session).count("quality.correct") == 2


def test_a_resent_record_supersedes_its_old_issues(
    session: Session, store: PersonStore, feeds: dict[str, FeedDefinition], flagged: Flagged
) -> None:
    report = ingest_rows(session, store, feeds["police"], [ROW | {"PNC_ID": ""}])
    assert report.updated == 1 and report.flagged == 1
    statuses = sorted((i.field, i.status) for i in session.scalars(select(QualityIssue)).all())
    assert statuses == [
        ("addresses[0].postcode", "open"),
        ("addresses[0].postcode", "superseded"),
        ("pnc_id", "superseded"),
    ]


def test_the_feed_report_gives_rates_and_holds_no_value(
    session: Session, store: PersonStore, feeds: dict[str, FeedDefinition], flagged: Flagged
) -> None:
    ingest_rows(
        session,
        store,
        feeds["police"],
        [ROW | {"NOMINAL_ID": "NOM8", "PNC_ID": ""}, ROW | {"NOMINAL_ID": ""}],
    )
    report = feed_report(session, "police")
    assert (report["rows"], report["quarantined"], report["flagged"]) == (3, 1, 2)
    assert report["by_reason"]["postcode_invalid"] == {"issues": 2, "rate": round(2 / 3, 6)}
    assert report["by_field"]["addresses[].postcode"]["issues"] == 2
    assert report["by_field"]["pnc_id"]["issues"] == 1
    assert report["quarantine_reasons"]["record_id_missing"] == 1
    assert len(report["over_time"]) == 1 and report["over_time"][0]["issues"] == 3
    text = json.dumps(report)
    assert BAD_PNC not in text and BAD_POSTCODE not in text and "NEILL" not in text.upper()
