"""Streaming readers: one raw record at a time, with where it came from.

Memory stays bounded however large the file: CSV and NDJSON are read line by line, JSON with
an incremental parser. A malformed file raises :class:`MalformedFileError` naming the line (or
record) so the whole file can be rejected; the message never quotes the file's content.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson

from mash_hub.feeds.definition import FeedDefinition


class MalformedFileError(ValueError):
    """The file cannot be read as its feed definition says; nothing from it is ingested."""


# A field may be long (free text, a run-together address) without the file being malformed.
FIELD_SIZE_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class RawRecord:
    location: str  # "line 12" or "record 7"
    data: dict[str, Any]
    # Set when this one row could not be read although the file can: the row is quarantined
    # with this reason code and the ingest goes on.
    error: str | None = None


def read_records(definition: FeedDefinition, path: Path) -> Iterator[RawRecord]:
    kind = definition.format.type
    if kind == "csv":
        return _read_csv(definition, path)
    if kind == "ndjson":
        return _read_ndjson(definition, path)
    return _read_json(definition, path)


def _read_csv(definition: FeedDefinition, path: Path) -> Iterator[RawRecord]:
    fmt = definition.format
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    try:
        with path.open(encoding=fmt.encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=fmt.delimiter, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                raise MalformedFileError(
                    f"{path.name}: the file is empty (no header line)"
                ) from None
            header = [name.strip().lstrip("\ufeff") for name in header]
            missing = sorted(definition.columns() - set(header))
            if missing:
                raise MalformedFileError(
                    f"{path.name} line 1: the header lacks column(s) {', '.join(missing)} "
                    f"named in feed {definition.name!r}"
                )
            if len(set(header)) != len(header):
                raise MalformedFileError(f"{path.name} line 1: the header repeats a column name")
            width = len(header)
            start = reader.line_num + 1
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    start = reader.line_num + 1
                    continue
                if len(row) != width:
                    raise MalformedFileError(
                        f"{path.name} line {start}: {len(row)} fields where the header has {width}"
                    )
                yield RawRecord(f"line {start}", dict(zip(header, row, strict=True)))
                start = reader.line_num + 1
    except csv.Error as exc:
        raise MalformedFileError(
            f"{path.name} line {reader.line_num}: malformed CSV ({exc})"
        ) from None
    except UnicodeDecodeError as exc:
        raise MalformedFileError(
            f"{path.name}: not valid {fmt.encoding} at byte {exc.start} (check the feed's encoding)"
        ) from None


def _read_ndjson(definition: FeedDefinition, path: Path) -> Iterator[RawRecord]:
    try:
        with path.open(encoding=definition.format.encoding) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MalformedFileError(
                        f"{path.name} line {number}: malformed JSON at column {exc.colno}"
                    ) from None
                except RecursionError:
                    # Valid JSON nested too deeply to read: that row only.
                    yield RawRecord(f"line {number}", {"line": line}, "row_unreadable")
                    continue
                if not isinstance(value, dict):
                    raise MalformedFileError(f"{path.name} line {number}: not a JSON object")
                yield RawRecord(f"line {number}", value)
    except UnicodeDecodeError as exc:
        raise MalformedFileError(
            f"{path.name}: not valid {definition.format.encoding} at byte {exc.start}"
        ) from None


def _read_json(definition: FeedDefinition, path: Path) -> Iterator[RawRecord]:
    prefix = f"{definition.format.records_path}.item" if definition.format.records_path else "item"
    number = 0
    try:
        with path.open("rb") as handle:
            for value in ijson.items(handle, prefix, use_float=True):
                number += 1
                if not isinstance(value, dict):
                    raise MalformedFileError(f"{path.name} record {number}: not a JSON object")
                yield RawRecord(f"record {number}", value)
    except ijson.JSONError as exc:
        raise MalformedFileError(
            f"{path.name}: malformed JSON after record {number} ({exc.__class__.__name__})"
        ) from None
    if number == 0 and not _has_records_array(path, definition):
        where = definition.format.records_path or "the top level"
        raise MalformedFileError(f"{path.name}: no array of records at {where}")


def _has_records_array(path: Path, definition: FeedDefinition) -> bool:
    """Distinguish "an empty array" from "no array where the definition says"."""
    target = definition.format.records_path or ""
    with path.open("rb") as handle:
        for prefix, event, _ in ijson.parse(handle):
            if prefix == target and event == "start_array":
                return True
    return False
