"""No input stops an ingest (issue 14): property tests on every feed format, and a fuzz run.

For any file, ingestion either rejects it whole (``MalformedFileError``, nothing written) or
ends with rows in = indexed (accepted + updated + unchanged) + quarantined, and the database
holds exactly that. Standardisers either return or raise ``StandardisationError``.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mash_hub.feeds import standardise as std
from mash_hub.feeds.definition import FeedDefinition
from mash_hub.feeds.ingest import ingest_records
from mash_hub.feeds.models import FeedBatch, QuarantinedRow
from mash_hub.feeds.reader import MalformedFileError, read_records
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.synth.writers import POLICE_COLUMNS

HERE = Path(__file__).resolve().parent
NDJSON = FeedDefinition.model_validate(
    {
        "name": "events",
        "agency": "council",
        "format": {"type": "ndjson"},
        "record_id": {"path": "id"},
        "person": {
            "full_name": {"path": "name"},
            "date_of_birth": {"path": "born", "date": True},
            "nhs_number": {"path": "nhs"},
            "addresses": {
                "path": "homes",
                "fields": {"line1": {"path": ["no", "street"]}, "postcode": {"path": "pc"}},
            },
        },
    }
)

# Text as extracts really break: control characters, NULs, BOMs, lone surrogates excluded
# (a file cannot hold them in UTF-8), combining marks, very long runs.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["109", "\x00", "\ufeff", " ", "31/02/2012", "LS6 2QT", "9434765919"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["A", "9", "\x00", "é"]), st.integers(0, 70_000)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _ingest(session: Session, store: PersonStore, definition: FeedDefinition, path: Path) -> None:
    """Ingest one file in a savepoint and check the invariant (module docstring)."""
    sha = uuid.uuid4().hex * 2
    nested = session.begin_nested()
    try:
        report = ingest_records(
            session,
            store,
            definition,
            read_records(definition, path),
            file_name=path.name,
            sha256=sha,
            size_bytes=path.stat().st_size,
            actor="test",
        )
    except MalformedFileError:
        nested.rollback()  # the owner of the transaction rolls a rejected file back whole
        assert session.scalar(select(FeedBatch.id).where(FeedBatch.sha256 == sha)) is None
        return
    nested.commit()
    assert report.rows == report.accepted + report.updated + report.unchanged + report.quarantined
    batch = uuid.UUID(str(report.batch_id))
    written = session.scalar(
        select(func.count()).select_from(SourceRecord).where(SourceRecord.batch_id == batch)
    )
    held = session.scalar(
        select(func.count()).select_from(QuarantinedRow).where(QuarantinedRow.batch_id == batch)
    )
    assert (written, held) == (report.accepted + report.updated, report.quarantined)


@PROPERTY
@given(
    rows=st.lists(st.lists(nasty_text, min_size=13, max_size=13), max_size=6),
    bom=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]),
)
def test_any_police_csv_is_ingested_or_rejected_whole(
    session: Session,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
    rows: list[list[str]],
    bom: bool,
    encoding: str,
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(POLICE_COLUMNS)
    writer.writerows(rows)
    text = ("\ufeff" if bom else "") + buffer.getvalue()
    path = tmp_path / "police.csv"
    path.write_bytes(text.encode(encoding, errors="replace"))
    _ingest(session, store, feeds["police"], path)


@PROPERTY
@given(data=st.binary(max_size=400), header=st.booleans())
def test_any_bytes_as_a_csv_are_ingested_or_rejected_whole(
    session: Session,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
    data: bytes,
    header: bool,
) -> None:
    path = tmp_path / "police.csv"
    path.write_bytes((",".join(POLICE_COLUMNS).encode() + b"\n" if header else b"") + data)
    _ingest(session, store, feeds["police"], path)


def _social_care_record() -> st.SearchStrategy[dict[str, Any]]:
    name = st.fixed_dictionaries(
        {"given": st.lists(json_values, max_size=3) | json_values, "family": json_values}
    )
    address = st.dictionaries(
        st.sampled_from(["line1", "line2", "town", "postcode", "from", "to", "current"]),
        json_values,
    )
    return st.fixed_dictionaries(
        {
            "person_id": json_values,
            "name": name | json_values,
            "birth_date": json_values,
            "nhs_number": json_values,
            "addresses": st.lists(address, max_size=3) | json_values,
        },
        optional={"case": json_values, "contact": json_values, "gender": json_values},
    )


@PROPERTY
@given(records=st.lists(_social_care_record() | json_values, max_size=5))
def test_any_social_care_json_is_ingested_or_rejected_whole(
    session: Session,
    store: PersonStore,
    feeds: dict[str, FeedDefinition],
    tmp_path: Path,
    records: list[Any],
) -> None:
    path = tmp_path / "social_care.json"
    path.write_text(json.dumps({"export": {"records": records}}), encoding="utf-8")
    _ingest(session, store, feeds["social_care"], path)


@PROPERTY
@given(
    lines=st.lists(
        st.dictionaries(
            st.sampled_from(["id", "name", "born", "nhs", "homes", "other"]), json_values
        ).map(json.dumps)
        | st.just('{"id": "1", "name": "A\\ud800 B"}')
        | st.just('{"id": "2", "name": "Amy Lee", "x": ' + "[" * 5000 + "]" * 5000 + "}")
        | st.just('{"id": "3", "name": "Amy Lee", "born": NaN}')
        | st.text(max_size=20),
        max_size=6,
    ),
    bom=st.booleans(),
)
def test_any_ndjson_is_ingested_or_rejected_whole(
    session: Session, store: PersonStore, tmp_path: Path, lines: list[str], bom: bool
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines), encoding="utf-8")
    _ingest(session, store, NDJSON, path)


STANDARDISERS: list[Callable[[str], Any]] = [
    std.clean_name,
    std.name_key,
    std.split_full_name,
    std.parse_date,
    std.normalise_postcode,
    std.validate_nhs_number,
    std.validate_upn,
    std.validate_pnc_id,
    std.normalise_email,
    std.normalise_phone,
    std.normalise_sex,
]


@settings(max_examples=300, deadline=None)
@given(function=st.sampled_from(STANDARDISERS), value=nasty_text)
def test_standardisers_return_or_give_a_reason(function: Callable[[str], Any], value: str) -> None:
    try:
        function(value)
    except std.StandardisationError as exc:
        assert exc.code in std.REASON_CODES
        # The message is the code's fixed text, so no value can be in it (a substring test
        # failed on " n", which the fixed text happens to hold).
        assert str(exc) == f"{exc.code}: {std.REASON_CODES[exc.code]}"


@settings(max_examples=300, deadline=None)
@given(value=nasty_text)
def test_clean_address_never_raises_and_keeps_digits(value: str) -> None:
    cleaned = std.clean_address(value)
    digits = [c for c in value if c.isdigit() and c.isascii()]
    assert cleaned is None or [c for c in cleaned if c.isdigit() and c.isascii()] == digits


def test_a_bounded_fuzz_run_finds_no_input_that_stops_intake(
    tmp_path: Path, clean_extracts: Path, feeds: dict[str, FeedDefinition]
) -> None:
    """atheris (libFuzzer) on the readers, mapping and standardisers of every format, seeded
    with real extracts; about 20 seconds. Any exception other than a rejected file fails."""
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # The target picks the feed from the first byte (sorted shipped feeds, then NDJSON).
    names = sorted(feeds)
    for index, (feed, file) in enumerate(
        [(n, {"council": "council.csv", "police": "police.csv"}.get(n)) for n in names]
    ):
        source = clean_extracts / (file or "social_care.json")
        head = source.read_bytes()[:3000]
        (corpus / feed).write_bytes(bytes([index]) + head)
    (corpus / "ndjson").write_bytes(
        bytes([len(names)]) + b'{"id": "1", "name": "Amy Lee", "homes": [{"no": "109"}]}\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_intake.py"),
            "-max_total_time=20",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
