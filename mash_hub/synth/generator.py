"""``generate``: stream a synthetic population into four files (three extracts + truth)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from mash_hub.synth.errors import ErrorRates
from mash_hub.synth.population import PopulationBuilder
from mash_hub.synth.rng import stream
from mash_hub.synth.writers import FEEDS, Recorder

PROGRESS_EVERY = 1000


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """What a run produced; ``to_dict`` is the JSON the CLI prints."""

    people: int
    households: int
    records: dict[str, int]
    files: dict[str, Path]
    seed: int
    rates: dict[str, float]
    # Share of people who appear in at least one extract (the rest are known to no agency).
    coverage: float
    as_of: str = ""
    generated_at: str = ""
    people_in_any_feed: int = 0
    truth_rows: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "people": self.people,
            "households": self.households,
            "records": dict(self.records),
            "files": {k: str(v) for k, v in self.files.items()},
            "seed": self.seed,
            "rates": dict(self.rates),
            "coverage": self.coverage,
            "people_in_any_feed": self.people_in_any_feed,
            "truth_rows": self.truth_rows,
            "as_of": self.as_of,
            "generated_at": self.generated_at,
        }


def reference_time(seed: int) -> tuple[date, str]:
    """The extract date and timestamp: derived from the seed, never from the wall clock."""
    rng = stream(seed, "clock")
    as_of = date(2024, 1, 1) + timedelta(days=rng.randrange(366))
    stamp = (
        f"{as_of.isoformat()}T{rng.randrange(6, 20):02d}:{rng.randrange(60):02d}:"
        f"{rng.randrange(60):02d}Z"
    )
    return as_of, stamp


def generate(
    people: int,
    seed: int,
    out_dir: Path,
    rates: ErrorRates | None = None,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write police.csv, council.csv, social_care.json and truth.csv for ``people`` persons.

    Same (people, seed, rates) gives byte-identical files. The population itself depends only
    on (people, seed), so changing error rates changes the recording, not who exists.
    """
    if isinstance(people, bool) or not isinstance(people, int) or people < 1:
        raise ValueError(f"people must be a positive integer, got {people!r}")
    rates = rates if rates is not None else ErrorRates()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    as_of, stamp = reference_time(seed)
    builder = PopulationBuilder(seed, as_of)
    recorder = Recorder(out_dir, seed, rates, as_of)
    recorder.generated_at = stamp
    households = 0
    done = 0
    next_report = PROGRESS_EVERY
    with recorder:
        while done < people:
            hh = builder.household(people - done)
            households += 1
            done += len(hh.people)
            recorder.household(hh)
            if progress is not None and done >= next_report:
                progress(done)
                next_report = (done // PROGRESS_EVERY + 1) * PROGRESS_EVERY
    if progress is not None:
        progress(done)
    records = {feed: recorder.counts[feed] for feed in FEEDS}
    return SynthSummary(
        people=done,
        households=households,
        records=records,
        files=dict(recorder.paths),
        seed=seed,
        rates=rates.to_dict(),
        coverage=round(recorder.people_in_any / done, 4),
        as_of=as_of.isoformat(),
        generated_at=stamp,
        people_in_any_feed=recorder.people_in_any,
        truth_rows=sum(records.values()),
    )
