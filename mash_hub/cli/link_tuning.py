"""``mash-hub link thresholds`` and ``mash-hub link report``: what the hub's data lead uses to
choose the linkage thresholds and to see what the model does (figures only, no values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mash_hub.cli._common import (
    ExitCode,
    actor,
    console,
    emit_json,
    fail,
    open_hub,
    progress_bar,
    settings,
    stdout,
)
from mash_hub.matching.model import LinkageModel, ModelMismatchError, model_path
from mash_hub.matching.report import ReportError, render_html, report_figures
from mash_hub.matching.service import TruthFileError
from mash_hub.matching.thresholds import NoLabelsError, grid, recommend, threshold_sweep
from mash_hub.persons.store import PersonStore

MODEL_OPTION = typer.Option(
    None,
    "--model",
    help="Trained model JSON (default: MASH_LINKAGE_MODEL, else <data dir>/linkage-model.json "
    "when trained here, else the model shipped in linkage/).",
)

SWEEP_TRUTH_OPTION = typer.Option(
    None,
    "--truth",
    exists=True,
    dir_okay=False,
    help="truth.csv (feed,source_record_id,person_key) of synthetic data: measure against "
    "it, as `link evaluate --truth` does. Without it, the reviewers' decisions in force "
    "are the labels.",
)
REPORT_TRUTH_OPTION = typer.Option(
    None,
    "--truth",
    exists=True,
    dir_okay=False,
    help="truth.csv of synthetic data: the bias report is `link evaluate`'s against it "
    "(else it shows the reviewers' decisions).",
)
OUT_OPTION = typer.Option(
    ..., "--out", dir_okay=False, help="Where to write the HTML page (e.g. report.html)."
)


def load_model(configured: Path | None) -> LinkageModel:
    cfg = settings()
    path = model_path(cfg.data_dir, configured or cfg.linkage_model)
    if not path.is_file():
        fail(f"no linkage model at {path}: run `mash-hub link train` first", ExitCode.BAD_INPUT)
    try:
        return LinkageModel.load(path)
    except ModelMismatchError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)


def _range(text: str, option: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        fail(
            f"{option} takes two match weights, LOW,HIGH (e.g. 4,14); got {text!r}",
            ExitCode.BAD_INPUT,
        )
    if high < low:
        fail(f"{option}: {high:g} is below {low:g}", ExitCode.BAD_INPUT)
    return low, high


def thresholds(  # noqa: PLR0917 - one parameter per CLI option
    review_budget: int = typer.Option(
        ...,
        "--review-budget",
        min=0,
        help="How many review tasks (record pairs) the reviewers can take on: the recommended "
        "pair opens at most this many.",
    ),
    truth: Path | None = SWEEP_TRUTH_OPTION,
    auto_range: str = typer.Option(
        "4,14", "--auto-range", help="Auto-link thresholds to try, LOW,HIGH (match weights)."
    ),
    review_range: str = typer.Option(
        "-2,12",
        "--review-range",
        help="Review lower bounds to try, LOW,HIGH (only those at or below the auto threshold).",
    ),
    step: float = typer.Option(1.0, "--step", min=0.1, help="Step of both ranges."),
    model: Path | None = MODEL_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print every candidate as JSON."),
) -> None:
    """Precision, recall and review-queue size for candidate (auto-link threshold, review
    lower bound) pairs, and the best pair whose queue fits --review-budget.

    Scores every current record once, as `link run` does (identity, identifiers and contact
    decrypted in memory; audited as linkage.thresholds), then clusters under each auto
    threshold with the reviewers' decisions in force. With --truth, precision and recall are
    what `link evaluate` would report after `link run` with that pair, and "after review"
    assumes the queue is decided correctly; without it they are measured on the pairs
    reviewers decided. Nothing is changed: put the chosen pair in the model's "thresholds".
    Exits 1 when no pair fits the budget (the figures are still printed).
    """
    try:
        autos = grid(*_range(auto_range, "--auto-range"), step)
        reviews = grid(*_range(review_range, "--review-range"), step)
    except ValueError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)
    if min(reviews) > max(autos):
        fail("every review lower bound is above every auto threshold", ExitCode.BAD_INPUT)
    trained = load_model(model)
    with open_hub() as (db, provider), progress_bar(disable=json_output) as bar:
        task = bar.add_task("scoring and clustering", total=len(autos))
        try:
            with db.transaction() as session:
                document = threshold_sweep(
                    session,
                    PersonStore.from_provider(provider),
                    trained,
                    autos=autos,
                    reviews=reviews,
                    budget=review_budget,
                    actor=actor(),
                    truth_csv=truth,
                    step_done=lambda: bar.advance(task),
                )
        except NoLabelsError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
    chosen = document["recommended"]
    if json_output:
        emit_json(document)
    else:
        _print_sweep(document)
    if chosen is None:
        fail(f"no threshold pair tried opens {review_budget} review tasks or fewer")


def _per_auto(document: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """For each auto threshold, the pair the recommendation would take among that auto's
    pairs within budget (``True``), else its smallest queue (``False``: over budget)."""
    by_auto: dict[float, list[dict[str, Any]]] = {}
    for c in document["candidates"]:
        by_auto.setdefault(c["auto"], []).append(c)
    rows = []
    for candidates in by_auto.values():
        best = recommend(candidates, document["budget"], document["mode"])
        if best is None:
            rows.append((min(candidates, key=lambda c: (c["review_pairs"], -c["review"])), False))
        else:
            rows.append((best, True))
    return rows


def _print_sweep(document: dict[str, Any]) -> None:
    """One row per auto threshold (the JSON has every pair tried)."""
    truth = document["mode"] == "truth"
    measured = (
        "against the truth file"
        if truth
        else "on the {same} same-person and {different} different-people pairs reviewers "
        "decided".format(**document["labelled_pairs"])
    )
    header = ["auto", "review", "precision", "recall", "F1", "tasks", "records"]
    if truth:
        header += ["P reviewed", "R reviewed"]
    lines = [header]
    chosen = document["recommended"]
    for c, fits in _per_auto(document):
        cells = [
            f"{c['auto']:g}",
            f"{c['review']:g}",
            f"{c['precision']:.4f}",
            f"{c['recall']:.4f}",
            f"{c['f1']:.4f}",
            f"{c['review_pairs']:,}",
            f"{c['review_records']:,}",
        ]
        if truth:
            cells += [f"{c['precision_after_review']:.4f}", f"{c['recall_after_review']:.4f}"]
        cells.append("<- recommended" if c == chosen else ("" if fits else "over budget"))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(header))]
    console.print(
        f"Best review bound per auto-link threshold, measured {measured}; budget "
        f"{document['budget']:,} review tasks"
        + ("; P/R reviewed: once the queue is decided correctly" if truth else ""),
        highlight=False,
    )
    for line in lines:
        cells = [cell.rjust(width) for cell, width in zip(line, widths, strict=False)]
        stdout.print("  ".join([*cells, *line[len(widths) :]]).rstrip(), highlight=False)
    current = document["current"]
    console.print(
        f"current thresholds: auto {current['auto']:g}, review {current['review']:g}",
        highlight=False,
    )
    if chosen is not None:
        console.print(
            f"recommended: auto {chosen['auto']:g}, review {chosen['review']:g}: precision "
            f"{chosen['precision']:.4f}, recall {chosen['recall']:.4f}, "
            f'{chosen["review_pairs"]:,} review tasks (set them in the model\'s "thresholds")',
            highlight=False,
        )


def report(  # noqa: PLR0917 - one parameter per CLI option
    out: Path = OUT_OPTION,
    truth: Path | None = REPORT_TRUTH_OPTION,
    by: str = typer.Option(
        "",
        "--by",
        help="With --truth: truth-file columns to split the bias report by (comma-separated), "
        "e.g. age_band,sex,name_origin.",
    ),
    task: str | None = typer.Option(
        None,
        "--task",
        help="Review task id whose pair the waterfall shows (default: the strongest pair in "
        "the review queue).",
    ),
    model: Path | None = MODEL_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Also print the figures as JSON."),
) -> None:
    """Write the data lead's linkage report: one offline HTML page (inline SVG, no script,
    nothing fetched) with m and u per comparison level, the match-weight histogram, one pair's
    waterfall (levels only), the review queue against the review threshold and the bias
    report. Figures only: no name, date, postcode or identifier is written.

    Scores every current record as `link run` does (decrypted in memory; audited as
    linkage.report).
    """
    attributes = [a.strip() for a in by.split(",") if a.strip()]
    if attributes and truth is None:
        fail("--by needs --truth", ExitCode.BAD_INPUT)
    trained = load_model(model)
    with open_hub() as (db, provider), progress_bar(disable=json_output) as bar:
        bar.add_task("scoring and drawing", total=None)
        try:
            with db.transaction() as session:
                figures = report_figures(
                    session,
                    PersonStore.from_provider(provider),
                    trained,
                    actor=actor(),
                    truth_csv=truth,
                    by=attributes,
                    task=task,
                )
        except (ReportError, TruthFileError) as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(figures), encoding="utf-8")
    if json_output:
        emit_json(figures)
    else:
        console.print(f"report written to {out}", highlight=False)
