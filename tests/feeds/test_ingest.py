"""Ingestion end to end on real PostgreSQL with real keys."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from stdnum.gb import nhs, upn

from mash_hub.audit.models import AuditEntry
from mash_hub.db.engine import Database
from mash_hub.feeds.definition import FeedDefinition
from mash_hub.feeds.ingest import ingest_file
from mash_hub.feeds.models import FeedBatch, QuarantinedRow
from mash_hub.feeds.quarantine import raw_values
from mash_hub.feeds.reader import MalformedFileError
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import CONTACT, IDENTIFIERS, IDENTITY, QUALITY, PersonStore
from mash_hub.quality.models import QualityIssue
from mash_hub.synth import EXTRACT_FILES
from mash_hub.synth.identifiers import pnc_is_valid


def _count(db: Database, model: type) -> int:
    with db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_clean_synthetic_extracts_ingest_with_no_quarantine(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    clean_extracts: Path,
) -> None:
    for feed, name in EXTRACT_FILES.items():
        report = ingest_file(
            committing_database, store, feeds[feed], clean_extracts / name, actor="test"
        )
        assert report.quarantined == 0, (feed, report.quarantine_reasons)
        assert report.rows > 0
        assert report.accepted == report.rows
    truth_rows = sum(1 for _ in (clean_extracts / "truth.csv").open()) - 1
    assert _count(committing_database, SourceRecord) == truth_rows


def test_messy_extracts_index_every_record_and_flag_only_truly_invalid_values(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    messy_extracts: Path,
) -> None:
    flagged = 0
    for feed, name in EXTRACT_FILES.items():
        report = ingest_file(
            committing_database, store, feeds[feed], messy_extracts / name, actor="test"
        )
        flagged += report.flagged
        assert report.quarantined == 0, report.quarantine_reasons
        assert (
            report.rows == report.accepted + report.updated + report.unchanged + report.quarantined
        )
    assert flagged > 0, "the default error rates mistype some identifiers"
    validators = {"nhs_number": nhs.is_valid, "upn": upn.is_valid, "pnc_id": pnc_is_valid}
    with committing_database.transaction() as session:
        ids = session.scalars(select(QualityIssue.record_id).distinct()).all()
        assert len(ids) == flagged
        for record in store.read(session, ids, {QUALITY}).values():
            for issue in record.groups[QUALITY]["issues"]:
                field = issue["field"]
                assert field in validators, f"unexpected quality issue {issue['code']} {field}"
                value = issue["raw"].replace(" ", "")
                assert not validators[field](value), f"a valid {field} was flagged"


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    header = [
        "NOMINAL_ID",
        "SURNAME",
        "FORENAMES",
        "DOB",
        "SEX",
        "PNC_ID",
        "ADDRESS",
        "POSTCODE",
        "WARNING_MARKERS",
        "INCIDENT_REF",
        "INCIDENT_DATE",
        "INCIDENT_TYPE",
        "INCIDENT_NARRATIVE",
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in header})
    return path


GOOD = {
    "NOMINAL_ID": "NOM1",
    "SURNAME": "O'NEILL",
    "FORENAMES": "MARY JANE",
    "DOB": "04/03/2012",
    "SEX": "F",
    "ADDRESS": "1 HIGH STREET, LEEDS",
    "POSTCODE": "LS6 2QT",
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"NOMINAL_ID": ""}, {("record_id", "record_id_missing")}),
        ({"SURNAME": "", "FORENAMES": ""}, {("family_name", "name_empty")}),
        (
            {"SURNAME": "", "FORENAMES": "", "DOB": "31/02/2012"},
            {("family_name", "name_empty"), ("date_of_birth", "date_impossible")},
        ),
    ],
)
def test_rows_that_cannot_be_a_person_are_quarantined_with_the_right_reasons(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
    change: dict[str, str],
    expected: set[tuple[str, str]],
) -> None:
    path = _write_csv(tmp_path / "broken.csv", [GOOD | {"NOMINAL_ID": "NOM0"}, GOOD | change])
    report = ingest_file(committing_database, store, feeds["police"], path, actor="test")
    assert (report.accepted, report.quarantined) == (1, 1)
    with committing_database.transaction() as session:
        row = session.scalars(select(QuarantinedRow)).one()
        assert {(r["field"], r["code"]) for r in row.reasons} == expected
        assert row.location == "line 3" and row.file_name == "broken.csv"
        assert raw_values(session, store.keys, row)["SURNAME"] == change.get("SURNAME", "O'NEILL")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"DOB": "31/02/2012"}, {("date_of_birth", "date_impossible", "31/02/2012")}),
        ({"DOB": "not a date"}, {("date_of_birth", "date_invalid", "not a date")}),
        ({"POSTCODE": "LS6 2Q"}, {("addresses[0].postcode", "postcode_invalid", "LS6 2Q")}),
        ({"PNC_ID": "12/1234567Z"}, {("pnc_id", "pnc_id_check_letter", "12/1234567Z")}),
        ({"SURNAME": "123"}, {("family_name", "name_empty", "123")}),
        (
            {"SEX": "Q", "DOB": "04/03/2099"},
            {("sex", "sex_invalid", "Q"), ("date_of_birth", "date_in_future", "04/03/2099")},
        ),
    ],
)
def test_a_bad_value_is_left_out_and_flagged_and_the_record_indexed(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
    change: dict[str, str],
    expected: set[tuple[str, str, str]],
) -> None:
    """Issue 14: one mistyped value no longer holds the whole record back."""
    path = _write_csv(tmp_path / "broken.csv", [GOOD | {"NOMINAL_ID": "NOM0"}, GOOD | change])
    report = ingest_file(committing_database, store, feeds["police"], path, actor="test")
    assert (report.accepted, report.quarantined, report.flagged) == (2, 0, 1)
    assert sum(report.quality_issues.values()) == len(expected)
    with committing_database.transaction() as session:
        issues = session.scalars(select(QualityIssue)).all()
        assert {(i.field, i.code) for i in issues} == {(f, c) for f, c, _ in expected}
        assert {i.status for i in issues} == {"open"}
        (record_id,) = {i.record_id for i in issues}
        groups = store.read(session, [record_id], {IDENTITY, CONTACT, QUALITY})[record_id].groups
        raw = {(i["field"], i["code"], i["raw"]) for i in groups[QUALITY]["issues"]}
        assert raw == expected
        identity, contact = groups[IDENTITY], groups[CONTACT]
        for field, _, _ in expected:
            if field in identity:
                assert identity[field] is None
        assert contact["addresses"][0]["line1"] == "1 High Street, Leeds"
        # Searchable on what is valid: the name is in the blind index.
        terms = store.indexer.query_terms({"given_names": ["Mary"]})
        assert record_id in store.candidates(session, terms)


def test_same_file_twice_adds_nothing_and_a_changed_record_becomes_a_new_version(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
) -> None:
    db = committing_database
    first = _write_csv(
        tmp_path / "day1.csv", [GOOD, GOOD | {"NOMINAL_ID": "NOM2", "FORENAMES": "PAT"}]
    )
    assert ingest_file(db, store, feeds["police"], first, actor="test").accepted == 2
    again = ingest_file(db, store, feeds["police"], first, actor="test")
    assert again.status == "already_ingested" and again.accepted == 0
    assert _count(db, SourceRecord) == 2 and _count(db, FeedBatch) == 1

    second = _write_csv(
        tmp_path / "day2.csv",
        [GOOD | {"POSTCODE": "LS7 1AB"}, GOOD | {"NOMINAL_ID": "NOM2", "FORENAMES": "PAT"}],
    )
    report = ingest_file(db, store, feeds["police"], second, actor="test")
    assert (report.accepted, report.updated, report.unchanged) == (0, 1, 1)
    with db.transaction() as session:
        versions = session.execute(
            select(SourceRecord.version, SourceRecord.is_current).order_by(SourceRecord.version)
        ).all()
        assert sorted(versions) == [(1, False), (1, True), (2, True)]
        current = session.scalars(select(SourceRecord.id).where(SourceRecord.version == 2)).one()
        contact = store.read(session, [current], {"contact"})[current].groups["contact"]
        assert contact["addresses"][0]["postcode"] == "LS7 1AB"
        actions = session.scalars(select(AuditEntry.action)).all()
        assert actions.count("feed.ingest") == 2


def test_the_same_agency_id_twice_in_one_file_keeps_the_later_row(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
) -> None:
    path = _write_csv(tmp_path / "dup.csv", [GOOD, GOOD | {"FORENAMES": "MARIA"}])
    report = ingest_file(committing_database, store, feeds["police"], path, actor="test")
    assert (report.accepted, report.updated) == (1, 1)
    with committing_database.transaction() as session:
        current = session.scalars(select(SourceRecord.id).where(SourceRecord.is_current)).one()
        identity = store.read(session, [current], {IDENTITY})[current].groups[IDENTITY]
        assert identity["given_names"] == ["Maria"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("NOMINAL_ID,SURNAME\nNOM1,SMITH\n", "lacks column"),
        (None, "line 4: 14 fields"),
    ],
)
def test_malformed_file_is_rejected_whole(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
    content: str | None,
    message: str,
) -> None:
    path = _write_csv(
        tmp_path / "bad.csv", [GOOD, GOOD | {"NOMINAL_ID": "NOM2"}, GOOD | {"NOMINAL_ID": "NOM3"}]
    )
    if content is None:
        lines = path.read_text().splitlines()
        lines[3] += ",EXTRA"
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_text(content)
    with pytest.raises(MalformedFileError, match=message):
        ingest_file(committing_database, store, feeds["police"], path, actor="test")
    assert _count(committing_database, SourceRecord) == 0
    assert _count(committing_database, FeedBatch) == 0


def test_malformed_json_is_rejected_whole(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    clean_extracts: Path,
    tmp_path: Path,
) -> None:
    text = (clean_extracts / "social_care.json").read_text()
    broken = tmp_path / "social_care.json"
    broken.write_text(text[: len(text) // 2])
    with pytest.raises(MalformedFileError, match="malformed JSON"):
        ingest_file(committing_database, store, feeds["social_care"], broken, actor="test")
    assert _count(committing_database, SourceRecord) == 0
    wrong_path = tmp_path / "other.json"
    wrong_path.write_text(json.dumps({"records": []}))
    with pytest.raises(MalformedFileError, match=r"no array of records at export\.records"):
        ingest_file(committing_database, store, feeds["social_care"], wrong_path, actor="test")


def test_identifiers_are_standardised_before_storage(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    clean_extracts: Path,
) -> None:
    ingest_file(
        committing_database,
        store,
        feeds["social_care"],
        clean_extracts / "social_care.json",
        actor="test",
    )
    with committing_database.transaction() as session:
        ids = session.scalars(select(SourceRecord.id)).all()
        records = store.read(session, ids, {IDENTIFIERS, IDENTITY})
    numbers = [
        r.groups[IDENTIFIERS]["nhs_number"]
        for r in records.values()
        if r.groups[IDENTIFIERS]["nhs_number"]
    ]
    assert numbers and all(n.isdigit() and len(n) == 10 for n in numbers)
    assert all(r.groups[IDENTITY]["date_of_birth"] for r in records.values())
