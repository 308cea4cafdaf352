"""``mash-hub link``: train the linkage model, link records into persons, evaluate."""

from __future__ import annotations

from pathlib import Path

import typer

from mash_hub.cli._common import ExitCode, actor, console, emit_json, fail, open_hub
from mash_hub.matching.model import DEFAULT_MODEL_PATH, LinkageModel, ModelMismatchError
from mash_hub.matching.service import evaluate_current, run_linkage, train_model
from mash_hub.persons.store import PersonStore

app = typer.Typer(help="Record linkage: which agency records are the same person.")

MODEL_OPTION = typer.Option(DEFAULT_MODEL_PATH, "--model", help="Trained model JSON.")
TRUTH_OPTION = typer.Option(
    ..., "--truth", exists=True, dir_okay=False, help="truth.csv: feed,source_record_id,person_key"
)


def _load(path: Path) -> LinkageModel:
    if not path.is_file():
        fail(f"no linkage model at {path}: run `mash-hub link train` first", ExitCode.BAD_INPUT)
    try:
        return LinkageModel.load(path)
    except ModelMismatchError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)


@app.command()
def train(
    model: Path = MODEL_OPTION,
    seed: int = typer.Option(2026, help="Seed for u sampling: same data + seed, same model."),
    json_output: bool = typer.Option(False, "--json", help="Print the model as JSON."),
) -> None:
    """Train m/u parameters on the current records (decrypted in memory) and save them."""
    version = LinkageModel.load(model).version + 1 if model.is_file() else 1
    with open_hub() as (db, provider):
        trained = train_model(db, PersonStore.from_provider(provider), seed=seed, version=version)
    trained.save(model)
    if json_output:
        emit_json({"model": str(model), "version": trained.version, **trained.training})
    else:
        console.print(f"model version {trained.version} saved to {model}", highlight=False)


@app.command()
def run(
    model: Path = MODEL_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
) -> None:
    """Link every current record and assign persons (ids kept stable across runs)."""
    trained = _load(model)
    with open_hub() as (db, provider):
        report = run_linkage(db, PersonStore.from_provider(provider), trained, actor=actor())
    if json_output:
        emit_json(report.as_dict())
        return
    for key, value in report.as_dict().items():
        console.print(f"{key:>22}: {value}", highlight=False)


@app.command()
def evaluate(
    truth: Path = TRUTH_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Score the current persons against ground truth (feed, source_record_id, person_key)."""
    with open_hub() as (db, provider):
        result = evaluate_current(db, PersonStore.from_provider(provider), truth)
    if json_output:
        emit_json(result)
        return
    for key, value in result.items():
        console.print(f"{key:>22}: {value}", highlight=False)
