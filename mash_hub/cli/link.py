"""``mash-hub link``: train the linkage model, link records into persons, evaluate; link a new
batch incrementally; and the review queue (``link review list / show / decide``).

Commands that show personal data act for a named member of staff (``--as``, an active user of
the ``users`` table): that user's role and agency go through the access policy exactly as an
API call would, only the allowed field groups are decrypted, and the audit entry names the
user as actor (:func:`staff_caller`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from mash_hub.authz.policy import AccessPolicy, Caller, Decisions, PolicyNotPublishedError
from mash_hub.authz.refusals import record_refusal
from mash_hub.authz.vocabulary import SOURCES
from mash_hub.cli._common import (
    ExitCode,
    actor,
    console,
    emit_json,
    fail,
    open_hub,
    settings,
    stdout,
)
from mash_hub.cli.link_settings import settings as settings_command
from mash_hub.cli.link_tuning import report as report_command
from mash_hub.cli.link_tuning import thresholds as thresholds_command
from mash_hub.matching import review as reviewing
from mash_hub.matching.incremental import batch_records, has_index, link_records
from mash_hub.matching.model import (
    MIN_LABELS,
    LinkageModel,
    ModelMismatchError,
    model_path,
    trained_model_path,
)
from mash_hub.matching.service import (
    TruthFileError,
    evaluate_current,
    run_linkage,
    train_model,
)
from mash_hub.persons.store import PersonStore
from mash_hub.users.service import UserError, find_user

app = typer.Typer(help="Record linkage: which agency records are the same person.")
review_app = typer.Typer(
    help="The review queue: pairs a person decides (same person or different people).",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")

MODEL_OPTION = typer.Option(
    None,
    "--model",
    help="Trained model JSON (default: MASH_LINKAGE_MODEL, else <data dir>/linkage-model.json "
    "when trained here, else the model shipped in linkage/).",
)
AS_OPTION = typer.Option(
    ...,
    "--as",
    help="The member of staff (a user name from `mash-hub users list`) the command acts for: "
    "the access policy decides by that user's role and agency, and the audit log names them.",
)
REVIEW_ACTION = "linkage_review"
TRUTH_OPTION = typer.Option(
    ..., "--truth", exists=True, dir_okay=False, help="truth.csv: feed,source_record_id,person_key"
)


def _model(configured: Path | None) -> Path:
    cfg = settings()
    return model_path(cfg.data_dir, configured or cfg.linkage_model)


def _load(configured: Path | None) -> LinkageModel:
    path = _model(configured)
    if not path.is_file():
        fail(f"no linkage model at {path}: run `mash-hub link train` first", ExitCode.BAD_INPUT)
    try:
        return LinkageModel.load(path)
    except ModelMismatchError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)


@app.command()
def train(
    model: Path | None = MODEL_OPTION,
    seed: int = typer.Option(2026, help="Seed for u sampling: same data + seed, same model."),
    json_output: bool = typer.Option(False, "--json", help="Print the model as JSON."),
) -> None:
    """Train m/u parameters on the current records (decrypted in memory) and save them.

    Saved to --model, else MASH_LINKAGE_MODEL, else <data dir>/linkage-model.json: the model
    shipped in linkage/ is only replaced by a reviewed commit.
    """
    cfg = settings()
    model = trained_model_path(cfg.data_dir, model or cfg.linkage_model)
    version = LinkageModel.load(model).version + 1 if model.is_file() else 1
    with open_hub() as (db, provider):
        trained = train_model(db, PersonStore.from_provider(provider), seed=seed, version=version)
    trained.save(model)
    if json_output:
        emit_json({"model": str(model), "version": trained.version, **trained.training})
    else:
        console.print(f"model version {trained.version} saved to {model}", highlight=False)
        labels = trained.training["same_person_labels"]
        used = (
            "used as labels for m"
            if trained.training["labels_used_for_m"]
            else (f"not used: at least {MIN_LABELS} are needed")
        )
        console.print(f"reviewed same-person pairs: {labels} ({used})", highlight=False)


@app.command()
def run(
    model: Path | None = MODEL_OPTION,
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
    by: str = typer.Option(
        "",
        "--by",
        help="Also report precision, recall and review share per group of true persons, "
        "for each of these truth-file columns (comma-separated), e.g. "
        "age_band,sex,name_origin: the linkage-bias report.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Score the current persons against ground truth (feed, source_record_id, person_key)."""
    attributes = [a.strip() for a in by.split(",") if a.strip()]
    with open_hub() as (db, provider):
        try:
            result = evaluate_current(db, PersonStore.from_provider(provider), truth, attributes)
        except TruthFileError as exc:
            fail(f"--by: {exc}", ExitCode.BAD_INPUT)
    if json_output:
        emit_json(result)
        return
    by_group = result.pop("by_group", None)
    for key, value in result.items():
        console.print(f"{key:>22}: {value}", highlight=False)
    if by_group is not None:
        _print_bias_report(by_group)


def _print_bias_report(by_group: dict[str, Any]) -> None:
    overall = by_group.pop("overall")
    for attribute, report in by_group.items():
        table = Table(
            title=f"by {attribute} (overall recall {overall['recall']:.4f}; "
            f"worst group {report['max_recall_gap'] * 100:.2f} points below)"
        )
        columns = ("group", "records", "true pairs", "precision", "recall", "recall 95 %",
                   "points below overall", "review")  # fmt: skip
        for column in columns:
            table.add_column(column, justify="left" if column == "group" else "right")
        for group, m in report["groups"].items():
            gap = (overall["recall"] - m["recall"]) * 100
            low, high = m["recall_95"]
            table.add_row(
                group,
                f"{m['records']:,}",
                f"{m['true_pairs']:,}",
                f"{m['precision']:.4f}",
                f"{m['recall']:.4f}",
                f"{low:.3f}-{high:.3f}",
                f"{gap:+.2f}",
                f"{m['review_share'] * 100:.2f} %",
            )
        console.print(table)


def staff_caller(session: Session, name: str) -> Caller:
    """The active user ``name`` as a policy caller (``user:<id>``, as its hub tokens are)."""
    try:
        user = find_user(session, name)
    except UserError as exc:
        fail(f"--as: {exc}", ExitCode.BAD_INPUT)
    if user.disabled:
        fail(f"--as: user {name!r} is disabled", ExitCode.BAD_INPUT)
    return Caller(f"user:{user.id}", user.role, user.agency)


def policy_decisions(session: Session) -> Decisions:
    """The published policy's decisions for this unit of work (exit 2 when none is)."""
    try:
        return AccessPolicy().for_session(session)
    except PolicyNotPublishedError as exc:
        fail(str(exc), ExitCode.BAD_INPUT)


def audit_refusal(
    session: Session, caller: Caller, decisions: Decisions, requested: str, **details: Any
) -> None:
    """An ``authz.denied`` entry; the command commits it, then exits 1."""
    record_refusal(session, caller, decisions, requested, via="cli", **details)


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"the {what} must be a UUID", ExitCode.BAD_INPUT)


def _print(document: dict[str, Any]) -> None:
    for key, value in document.items():
        console.print(f"{key:>22}: {value}", highlight=False)


@app.command("new")
def link_new(
    batch: str = typer.Option(..., "--batch", help="Feed batch id (from `mash-hub ingest`)."),
    model: Path | None = MODEL_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Link a batch's new records into the existing persons (no full relink)."""
    batch_id = _uuid(batch, "batch id")
    trained = _load(model)
    with open_hub() as (db, provider), db.transaction() as session:
        if not has_index(session):
            fail("no full linkage run yet: run `mash-hub link run` first", ExitCode.BAD_INPUT)
        store = PersonStore.from_provider(provider)
        report = link_records(
            session, store, trained, batch_records(session, batch_id), actor=actor()
        )
    if json_output:
        emit_json(report.as_dict())
    else:
        _print(report.as_dict())


@review_app.command("list")
def review_list(
    status: str = typer.Option("open", help="open, decided, closed or all."),
    limit: int = typer.Option(100, min=1, max=10_000),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Review tasks, strongest first: ids, score, explanation (no personal data)."""
    if status not in ("open", "decided", "closed", "all"):
        fail("--status must be open, decided, closed or all", ExitCode.BAD_INPUT)
    with open_hub() as (db, _provider), db.transaction() as session:
        tasks = reviewing.list_tasks(
            session, actor=actor(), status=None if status == "all" else status, limit=limit
        )
        items = [reviewing.task_summary(t) for t in tasks]
    if json_output:
        emit_json(items)
        return
    table = Table(title=f"Review queue ({status})")
    for column in ("task", "kind", "weight", "status", "explanation"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item["id"],
            item["kind"],
            f"{item['match_weight']:+.1f}",
            item["status"],
            item["explanation"],
        )
    console.print(table)


@review_app.command("show")
def review_show(
    task: str = typer.Argument(..., help="Task id."),
    as_user: str = AS_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One task with both records side by side, for a reviewer (`linkage_review` in the
    policy): each record's identity, identifiers and contact as far as the user's mask of its
    source allows; nothing else is decrypted. Audited with the user as actor."""
    task_id = _uuid(task, "task id")
    refused = False
    with open_hub() as (db, provider), db.transaction() as session:
        caller = staff_caller(session, as_user)
        decisions = policy_decisions(session)
        if not decisions.allows(caller, REVIEW_ACTION):
            audit_refusal(session, caller, decisions, "linkage.review.show", task=str(task_id))
            refused = True
        else:
            try:
                document = reviewing.show_task(
                    session,
                    PersonStore.from_provider(provider),
                    task_id,
                    actor=caller.user_id,
                    masks={source: decisions.mask(caller, source) for source in SOURCES},
                    audit_details={
                        "role": caller.role,
                        "agency": caller.agency,
                        "policy_version": decisions.version,
                        "via": "cli",
                    },
                )
            except reviewing.ReviewError as exc:
                fail(str(exc), ExitCode.BAD_INPUT)
    if refused:
        fail(f"the user's role ({caller.role}) may not review linkage (the refusal is audited)")
    if json_output:
        emit_json(document)
        return
    records = document.pop("records")
    _print(document)
    table = Table(title="Records")
    table.add_column("field")
    for record in records:
        table.add_column(f"{record['feed']} {record['id'][:8]}")
    fields = sorted(
        {(g, f) for r in records for g, v in r.items() if isinstance(v, dict) for f in v}
    )
    for group, name in fields:
        table.add_row(f"{group}.{name}", *(str(r.get(group, {}).get(name, "")) for r in records))
    stdout.print(table)


@review_app.command("decide")
def review_decide(
    task: str = typer.Argument(..., help="Task id."),
    decision: str = typer.Option(..., "--decision", help="same or different."),
    reason_code: str = typer.Option(
        ...,
        "--reason-code",
        help="same: same_identifier, same_details, agency_confirmed, other; different: twin, "
        "sibling_or_relative, namesake, different_details, agency_confirmed, other.",
    ),
    reason: str | None = typer.Option(
        None, "--reason", help="Free text (may name people: stored encrypted)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Decide a task: a must-link or cannot-link every later run obeys."""
    task_id = _uuid(task, "task id")
    with open_hub() as (db, provider), db.transaction() as session:
        try:
            made = reviewing.decide(
                session,
                PersonStore.from_provider(provider).keys,
                task_id,
                decision=decision,
                reason_code=reason_code,
                reason=reason,
                actor=actor(),
            )
        except reviewing.ReviewError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        document = {
            "decision_id": str(made.id),
            "task_id": str(task_id),
            "decision": made.decision,
            "reason_code": made.reason_code,
            "takes_effect": "next `mash-hub link run` (and every incremental run)",
        }
    if json_output:
        emit_json(document)
    else:
        _print(document)


def link_after_ingest(
    db: Any, store: PersonStore, batch_ids: list[str], *, requested: bool | None, model: Path
) -> dict[str, Any] | None:
    """After ``mash-hub ingest``: link the new batches' records incrementally when asked to,
    or by default when a trained model and a full linkage run exist. Each batch is linked in
    its own transaction, after the ingest transaction committed."""
    if requested is False or not batch_ids:
        return None
    reason = None
    trained = None
    if not model.is_file():
        reason = f"no linkage model at {model}"
    else:
        try:
            trained = LinkageModel.load(model)
        except ModelMismatchError as exc:
            reason = str(exc)
    if trained is not None:
        with db.transaction() as session:
            if not has_index(session):
                reason = "no full linkage run yet (`mash-hub link run`)"
    if reason is not None or trained is None:
        if requested:
            console.print(f"[yellow]not linked:[/] {reason}", highlight=False)
        return {"linked": False, "reason": reason} if requested else None
    reports = []
    for batch in batch_ids:
        with db.transaction() as session:
            reports.append(
                link_records(
                    session, store, trained, batch_records(session, uuid.UUID(batch)), actor=actor()
                ).as_dict()
            )
    return {"linked": True, "batches": reports}


# Settings for another Splink backend (a Spark job) from the same definitions.
app.command("settings")(settings_command)

# Choosing thresholds and the data lead's report (figures only).
app.command("thresholds")(thresholds_command)
app.command("report")(report_command)
