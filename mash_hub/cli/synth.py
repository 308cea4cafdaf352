"""``mash-hub synth``: write synthetic agency extracts with ground truth for linkage testing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mash_hub.synth import ErrorRates, generate

_EXTRACTS = ("police.csv", "council.csv", "social_care.json", "truth.csv")

_err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int) -> NoReturn:
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=code)


def _load_rates(path: Path | None, scale: float) -> ErrorRates:
    """Defaults scaled by ``scale``; values in the ``--rates`` file then win as given."""
    try:
        base = ErrorRates().scaled(scale)
    except ValueError as exc:
        _fail(str(exc), 2)
    if path is None:
        return base
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(f"rates file {path} does not exist", 2)
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read rates file {path}: {exc}", 2)
    except json.JSONDecodeError as exc:
        _fail(f"rates file {path} is not valid JSON: {exc}", 2)
    if not isinstance(data, dict):
        _fail(f"rates file {path} must hold a JSON object of rate name -> probability", 2)
    try:
        ErrorRates.from_mapping(data)
        return ErrorRates(**{**base.to_dict(), **{k: float(v) for k, v in data.items()}})
    except ValueError as exc:
        _fail(f"rates file {path}: {exc}", 2)


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
        _fail(f"--people must be at least 1, got {people}", 2)
    error_rates = _load_rates(rates, error_scale)
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a directory", 2)
    existing = [
        name for name in _EXTRACTS if (out / name).is_file() and (out / name).stat().st_size > 0
    ]
    if existing and not force:
        _fail(f"{out} already holds {', '.join(existing)}; use --force to overwrite", 2)
    try:
        if as_json:
            summary = generate(people=people, seed=seed, out_dir=out, rates=error_rates)
        else:
            with Progress(
                TextColumn("[bold]synth[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("people"),
                TimeElapsedColumn(),
                console=_err,
                transient=True,
            ) as bar:
                task = bar.add_task("people", total=people)
                summary = generate(
                    people=people,
                    seed=seed,
                    out_dir=out,
                    rates=error_rates,
                    progress=lambda n: bar.update(task, completed=n),
                )
    except OSError as exc:
        _fail(f"cannot write extracts to {out}: {exc}", 1)
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n")
        return
    counts = ", ".join(f"{feed} {n:,}" for feed, n in summary.records.items())
    _err.print(
        f"wrote {summary.people:,} people in {summary.households:,} households to {out} "
        f"({counts}; {summary.coverage:.0%} appear in at least one extract)",
        highlight=False,
    )
