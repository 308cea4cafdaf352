"""Reading generated extracts back from disk for the synth tests."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mash_hub.synth import SynthSummary


@dataclass
class Extracts:
    summary: SynthSummary
    police: list[dict[str, str]]
    council: list[dict[str, str]]
    social: list[dict[str, Any]]
    social_doc: dict[str, Any]
    truth: list[dict[str, str]]

    def key_of(self, feed: str) -> dict[str, str]:
        return {t["source_record_id"]: t["person_key"] for t in self.truth if t["feed"] == feed}


def read_extracts(summary: SynthSummary) -> Extracts:
    files = summary.files

    def rows(name: str) -> list[dict[str, str]]:
        with Path(files[name]).open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    with Path(files["social_care"]).open(encoding="utf-8") as f:
        doc = json.load(f)
    return Extracts(
        summary, rows("police"), rows("council"), doc["export"]["records"], doc, rows("truth")
    )
