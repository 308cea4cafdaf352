"""``mash-hub synth``: write synthetic agency extracts with ground truth for linkage testing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mash_hub.cli._common import ExitCode, console, emit_json, fail, progress_bar
from mash_hub.synth import EXTRACT_FILES, TRUTH_FILE, ErrorRates, generate

_EXTRACTS = (*EXTRACT_FILES.values(), TRUTH_FILE)


def _load_rates(path: Path | None, scale: float) -> ErrorRates:
    """Defaults scaled by ``scale``; values in the ``--rates`` file then win as given."""
    try:
        base = ErrorRates().scaled(scale)
    except ValueError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    if path is None:
        return base
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"rates file {path} does not exist", ExitCode.BAD_INPUT)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read rates file {path}: {exc}", ExitCode.BAD_INPUT)
    except json.JSONDecodeError as exc:
        fail(f"rates file {path} is not valid JSON: {exc}", ExitCode.BAD_INPUT)
    if not isinstance(data, dict):
        fail(
            f"rates file {path} must hold a JSON object of rate name -> probability",
            ExitCode.BAD_INPUT,
        )
    try:
        ErrorRates.from_mapping(data)
        return ErrorRates(**{**base.to_dict(), **{k: float(v) for k, v in data.items()}})
    except ValueError as exc:
        fail(f"rates file {path}: {exc}", ExitCode.BAD_INPUT)


def synth(  # noqa: PLR0917 - Typer maps each parameter to an option
    people: Annotated[int, typer.Option("--people", help="Number of distinct people.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same files.")] = 42,
    out: Annotated[Path, typer.Option("--out", help="Directory for the extracts.")] = Path(
        "synth-out"
    ),
    rates: Annotated[
        Path | None,
        typer.Option("--rates", help="JSON object overriding individual error rates."),
    ] = None,
    error_scale: Annotated[
        float, typer.Option("--error-scale", help="Multiply every default error rate.")
    ] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing extract files.")
    ] = False,
) -> None:
    """Generate synthetic police, council and social-care extracts plus truth.csv."""
    if people < 1:
        fail(f"--people must be at least 1, got {people}", ExitCode.BAD_INPUT)
    error_rates = _load_rates(rates, error_scale)
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory", ExitCode.BAD_INPUT)
    existing = [
        name for name in _EXTRACTS if (out / name).is_file() and (out / name).stat().st_size > 0
    ]
    if existing and not force:
        fail(
            f"{out} already holds {', '.join(existing)}; use --force to overwrite",
            ExitCode.BAD_INPUT,
        )
    try:
        if as_json:
            summary = generate(people=people, seed=seed, out_dir=out, rates=error_rates)
        else:
            with progress_bar() as bar:
                task = bar.add_task("Generating people", total=people)
                summary = generate(
                    people=people,
                    seed=seed,
                    out_dir=out,
                    rates=error_rates,
                    progress=lambda n: bar.update(task, completed=n),
                )
    except OSError as exc:
        fail(f"cannot write extracts to {out}: {exc}", ExitCode.FAILED)
    if as_json:
        emit_json(summary.to_dict())
        return
    counts = ", ".join(f"{feed} {n:,}" for feed, n in summary.records.items())
    console.print(
        f"wrote {summary.people:,} people in {summary.households:,} households to {out} "
        f"({counts}; {summary.coverage:.0%} appear in at least one extract)",
        highlight=False,
    )
