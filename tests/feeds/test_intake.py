"""Intake that loses nothing (issue 14): no row can stop an ingest, addresses keep numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mash_hub.db.engine import Database
from mash_hub.feeds.definition import FeedDefinition
from mash_hub.feeds.ingest import ingest_file
from mash_hub.feeds.models import QuarantinedRow
from mash_hub.feeds.quarantine import raw_values
from mash_hub.feeds.standardise import clean_address
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import CONTACT, IDENTITY, PersonStore

HOUSING = {
    "name": "housing",
    "agency": "council",
    "format": {"type": "csv"},
    "record_id": {"path": "TenantNo"},
    "person": {
        "given_names": {"path": "First", "split": " "},
        "family_name": {"path": "Surname"},
        "addresses": {
            "fields": {
                "line1": {"path": ["HouseNo", "Street"]},
                "town": {"path": "Town"},
                "postcode": {"path": "PostCode"},
            }
        },
    },
}

NDJSON = {
    "name": "events",
    "agency": "council",
    "format": {"type": "ndjson"},
    "record_id": {"path": "id"},
    "person": {"given_names": {"path": "first"}, "family_name": {"path": "last"}},
}


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _current(db: Database, store: PersonStore, groups: set[str]) -> list[dict[str, Any]]:
    with db.transaction() as session:
        ids = session.scalars(select(SourceRecord.id).where(SourceRecord.is_current)).all()
        return [r.groups for r in store.read(session, ids, groups).values()]


def test_clean_address_keeps_numbers_and_never_raises() -> None:
    assert clean_address("109") == "109"
    assert clean_address("FLAT 3B, 12 HIGH STREET") == "Flat 3B, 12 High Street"
    assert clean_address("  1\x00 Mill\tLane ") == "1 Mill Lane"
    assert clean_address(" , ") is None
    assert clean_address(None) is None


def test_an_address_line_holding_only_a_house_number_is_ingested(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
) -> None:
    """The crash of issue 14: ``109`` alone stopped the whole ingest with name_empty."""
    header = ["NOMINAL_ID", "SURNAME", "FORENAMES", "DOB", "SEX", "PNC_ID", "ADDRESS", "POSTCODE"]
    header += ["WARNING_MARKERS", "INCIDENT_REF", "INCIDENT_DATE", "INCIDENT_TYPE"]
    header += ["INCIDENT_NARRATIVE"]
    row = ["N1", "SMITH", "JO", "04/03/2012", "F", "", "109", "LS6 2QT", "", "", "", "", ""]
    path = _csv(tmp_path / "police.csv", header, [row, ["N2", *row[1:]]])
    report = ingest_file(committing_database, store, feeds["police"], path, actor="test")
    assert (report.accepted, report.quarantined) == (2, 0)
    contacts = _current(committing_database, store, {CONTACT})
    assert {c[CONTACT]["addresses"][0]["line1"] for c in contacts} == {"109"}


def test_an_address_field_from_several_paths_joins_them(
    committing_database: Database, store: PersonStore, tmp_path: Path
) -> None:
    definition = FeedDefinition.model_validate(HOUSING)
    header = ["TenantNo", "First", "Surname", "HouseNo", "Street", "Town", "PostCode"]
    path = _csv(
        tmp_path / "housing.csv",
        header,
        [["T1", "Amy", "Lee", "109", "Mill Lane", "Leeds", "LS6 2QT"]],
    )
    report = ingest_file(committing_database, store, definition, path, actor="test")
    assert report.accepted == 1
    (groups,) = _current(committing_database, store, {CONTACT})
    address = groups[CONTACT]["addresses"][0]
    assert address["line1"] == "109 Mill Lane" and address["town"] == "Leeds"


def test_a_name_without_letters_is_a_reason_not_a_crash(
    committing_database: Database,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
) -> None:
    definition = FeedDefinition.model_validate(HOUSING)
    header = ["TenantNo", "First", "Surname", "HouseNo", "Street", "Town", "PostCode"]
    path = _csv(
        tmp_path / "housing.csv",
        header,
        [["T1", "123", "456", "", "", "", ""], ["T2", "Amy", "Lee", "", "", "", ""]],
    )
    report = ingest_file(committing_database, store, definition, path, actor="test")
    assert (report.rows, report.accepted, report.quarantined) == (2, 1, 1)
    assert report.quarantine_reasons == {"name_empty": 2}


def test_rows_that_cannot_be_read_or_stored_are_quarantined_and_the_ingest_goes_on(
    committing_database: Database, store: PersonStore, tmp_path: Path
) -> None:
    """Deep nesting (RecursionError), NaN, and half a character (a lone surrogate) each
    raised out of the ingest before; now each is a reason on its row."""
    definition = FeedDefinition.model_validate(NDJSON)
    lines = [
        json.dumps({"id": "1", "first": "Amy", "last": "Lee"}),
        '{"id": "2", "first": "Bo", "last": "Lee", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"id": "3", "first": "Cy", "last": "Lee", "score": NaN}',
        '{"id": "4", "first": "D\\ud800", "last": "Lee"}',
        '{"id": "5", "first": "Ed", "last": "\\u0000"}',
    ]
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest_file(committing_database, store, definition, path, actor="test")
    assert report.rows == 5
    assert report.rows == report.accepted + report.quarantined
    assert report.quarantine_reasons.get("row_unreadable", 0) >= 2
    with committing_database.transaction() as session:
        for row in session.scalars(select(QuarantinedRow)):
            assert isinstance(raw_values(session, store.keys, row), dict)
    names = _current(committing_database, store, {IDENTITY})
    assert ["Amy"] in [n[IDENTITY]["given_names"] for n in names]


@pytest.mark.parametrize("bom", ["\ufeff", ""])
def test_a_byte_order_mark_does_not_hide_the_first_column(
    committing_database: Database, store: PersonStore, tmp_path: Path, bom: str
) -> None:
    definition = FeedDefinition.model_validate(HOUSING)
    path = tmp_path / "housing.csv"
    path.write_text(
        bom + "TenantNo,First,Surname,HouseNo,Street,Town,PostCode\nT1,Amy,Lee,1,A St,Leeds,\n",
        encoding="utf-8",
    )
    assert ingest_file(committing_database, store, definition, path, actor="test").accepted == 1
