"""``mash-hub link settings``: the Splink settings JSON for a job on another backend.

A Spark job cannot load the hub's DuckDB settings (Splink's JSON embeds dialect-specific SQL),
so this writes the settings of the current model, translated from the same comparison
definitions (:mod:`mash_hub.matching.dialects`). The file holds SQL and m/u only, no personal
data. Registered on ``mash-hub link`` as ``settings``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mash_hub.cli import _common
from mash_hub.cli._common import ExitCode, console, emit_json, fail
from mash_hub.matching.comparisons import splink_settings
from mash_hub.matching.dialects import (
    SUPPORTED_DIALECTS,
    UntranslatableSqlError,
    settings_for_dialect,
)
from mash_hub.matching.model import LinkageModel, ModelMismatchError, model_path

DIALECT_OPTION = typer.Option(
    ..., "--dialect", help=f"SQL dialect of the Splink backend: {', '.join(SUPPORTED_DIALECTS)}."
)
MODEL_OPTION = typer.Option(
    None,
    "--model",
    help="Trained model JSON (default: MASH_LINKAGE_MODEL, else <data dir>/linkage-model.json "
    "when trained here, else the model shipped in linkage/).",
)
OUT_OPTION = typer.Option(
    None,
    "--out",
    dir_okay=False,
    help="Write the settings JSON to this new file (an existing file is never overwritten); "
    "default: print it on stdout.",
)
JSON_OPTION = typer.Option(
    False, "--json", help="With --out, print a JSON summary of what was written."
)


def settings(
    dialect: str = DIALECT_OPTION,
    model: Path | None = MODEL_OPTION,
    out: Path | None = OUT_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the Splink settings (comparisons, trained m/u, blocking rules) for a backend."""
    if dialect not in SUPPORTED_DIALECTS:
        fail(
            f"--dialect {dialect!r} is not supported: use one of {', '.join(SUPPORTED_DIALECTS)}",
            ExitCode.BAD_INPUT,
        )
    if out is not None and out.exists():
        fail(f"{out} already exists: choose a new --out file", ExitCode.BAD_INPUT)
    path, trained = _load(model)
    try:
        document = settings_for_dialect(splink_settings(trained.parameters, trained.prior), dialect)
    except UntranslatableSqlError as exc:
        fail(f"cannot build {dialect} settings: {exc}")
    if out is None:
        emit_json(document)
        return
    _write_new(out, json.dumps(document, indent=2) + "\n")
    summary: dict[str, Any] = {
        "out": str(out),
        "dialect": dialect,
        "model": str(path),
        "model_version": trained.version,
        "definition": trained.definition,
        "comparisons": len(document["comparisons"]),
        "blocking_rules": len(document["blocking_rules_to_generate_predictions"]),
    }
    if json_output:
        emit_json(summary)
    else:
        console.print(
            f"{dialect} settings for model version {trained.version} written to {out}",
            highlight=False,
        )


def _load(configured: Path | None) -> tuple[Path, LinkageModel]:
    """The model ``mash-hub link run`` would use (exit 2 when missing or not loadable)."""
    cfg = _common.settings()
    path = model_path(cfg.data_dir, configured or cfg.linkage_model)
    if not path.is_file():
        fail(f"no linkage model at {path}: run `mash-hub link train` first", ExitCode.BAD_INPUT)
    try:
        return path, LinkageModel.load(path)
    except ModelMismatchError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"{path} is not a readable linkage model ({type(exc).__name__})", ExitCode.BAD_INPUT)


def _write_new(out: Path, text: str) -> None:
    """Create ``out``; refuse, without touching it, if something appeared there meanwhile."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        fail(f"{out} already exists: choose a new --out file", ExitCode.BAD_INPUT)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}", ExitCode.BAD_INPUT)
