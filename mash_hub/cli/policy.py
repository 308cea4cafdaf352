"""``mash-hub policy``: review, validate and publish the access policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mash_hub.authz.check import check_policy
from mash_hub.authz.files import PolicyTexts, policies_dir
from mash_hub.authz.policy import Caller, Decisions, PolicyError, compile_policy
from mash_hub.authz.versions import current_version, publish
from mash_hub.authz.vocabulary import AGENCIES, PERSON_FIELDS, ROLES, SOURCES, SUBJECT_ACCESS
from mash_hub.cli._common import (
    ExitCode,
    actor,
    console,
    emit_json,
    fail,
    open_db,
    settings,
    stdout,
)
from mash_hub.db import migrate
from mash_hub.db.engine import Database

app = typer.Typer(
    help="Review (matrix), validate (check) and publish the field-level access policy.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]
DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Folder with model.conf and policy.csv (default: MASH_POLICY_DIR or the bundled one).",
        exists=True,
        file_okay=False,
        dir_okay=True,
    ),
]


def _require_migrated(db: Database) -> None:
    """Migrate the embedded database; refuse an external one that is not migrated."""
    db.ping()
    if settings().uses_embedded_database:
        migrate.upgrade(db.engine)
        return
    with db.engine.connect() as connection:
        if not migrate.is_up_to_date(connection):
            fail("the database is not migrated: run `mash-hub db upgrade`", ExitCode.DATABASE)


def _read(folder: Path | None) -> PolicyTexts:
    try:
        return PolicyTexts.read(folder)
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        fail(f"cannot read the policy files: {exc}", ExitCode.BAD_INPUT)


@app.command()
def check(folder: DirOption = None, as_json: JsonOption = False) -> None:
    """Validate the policy files: syntax (with line numbers), unknown roles, agencies, sources,
    fields and actions, and rules that both allow and deny the same thing. Exit 2 if invalid."""
    texts = _read(folder)
    problems = check_policy(texts)
    if as_json:
        emit_json(
            {
                "folder": str(policies_dir(folder)),
                "sha256": texts.sha256,
                "valid": not problems,
                "problems": [
                    {"kind": p.kind, "file": p.file, "line": p.line, "message": p.message}
                    for p in problems
                ],
            }
        )
        if problems:
            raise typer.Exit(int(ExitCode.BAD_INPUT))
        return
    for problem in problems:
        console.print(f"[red]{problem}[/]", highlight=False)
    if problems:
        fail(f"the policy has {len(problems)} problem(s)", ExitCode.BAD_INPUT)
    console.print(f"Policy is valid (sha256 {texts.sha256[:12]}…).")


@app.command("publish")
def publish_command(folder: DirOption = None, as_json: JsonOption = False) -> None:
    """Record the policy files as the new current version in the database (audited).

    Every hub process enforces the new version from its next unit of work. Publishing files
    identical to the current version changes nothing.
    """
    texts = _read(folder)
    with open_db() as db:
        _require_migrated(db)
        try:
            with db.transaction() as session:
                result = publish(session, texts, actor=actor())
        except PolicyError as exc:
            for problem in exc.problems:
                console.print(f"[red]{problem}[/]", highlight=False)
            fail("the policy is invalid; nothing was published", ExitCode.BAD_INPUT)
    report = {
        "version": result.version,
        "sha256": result.sha256,
        "previous_version": result.previous_version,
        "changed": result.changed,
    }
    if as_json:
        emit_json(report)
    elif result.changed:
        console.print(f"Published access policy version {result.version}.")
    else:
        console.print(f"Unchanged: version {result.version} already has these files.")


@app.command()
def matrix(
    folder: DirOption = None,
    published: Annotated[
        bool,
        typer.Option("--published", help="Show the version published in the database."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """What each role sees of each source agency's records (read, and with break-glass)."""
    if published:
        with open_db() as db:
            _require_migrated(db)
            with db.transaction() as session:
                row = current_version(session)
                if row is None:
                    fail("no access policy is published yet", ExitCode.BAD_INPUT)
                texts = PolicyTexts(model=row.model_text, policy=row.policy_text)
                version: int | None = row.version
    else:
        texts = _read(folder)
        version = None
    try:
        decisions = compile_policy(texts, version=version)
    except PolicyError as exc:
        fail(f"the policy does not compile: {exc}", ExitCode.BAD_INPUT)
    document = matrix_document(decisions)
    document["origin"] = "published" if published else str(policies_dir(folder))
    if as_json:
        emit_json(document)
        return
    _print_matrix(decisions)


def matrix_document(decisions: Decisions) -> dict[str, Any]:
    """The whole compiled policy as JSON: role -> agency -> source -> groups."""
    roles: dict[str, Any] = {}
    for role in ROLES:
        per_agency: dict[str, Any] = {}
        for agency in AGENCIES:
            caller = Caller("matrix", role, agency)
            per_agency[agency] = {
                "sources": {
                    source: {
                        "read": sorted(decisions.mask(caller, source)),
                        "break_glass": sorted(
                            decisions.mask(caller, source, break_glass=True)
                            - decisions.mask(caller, source)
                        ),
                        "subject_access": sorted(
                            decisions.action_mask(caller, source, SUBJECT_ACCESS)
                        ),
                    }
                    for source in SOURCES
                },
                "may_break_glass": decisions.may_break_glass(caller),
                "actions": sorted(decisions.actions.get((role, agency), frozenset())),
            }
        roles[role] = per_agency
    return {"version": decisions.version, "sha256": decisions.sha256, "roles": roles}


def _print_matrix(decisions: Decisions) -> None:
    table = Table(
        title=f"Access policy {decisions.sha256[:12]}: field groups each role sees, per source",
        caption="'+ break-glass' is shown only with a written justification, and reviewed.",
    )
    columns = ("role", "staff agency", "source", "read", "+ break-glass", "subject access")
    for column in (*columns, "other actions"):
        table.add_column(column)
    for role in ROLES:
        # Collapse agencies that see the same; list them when the policy differs by agency.
        variants: dict[str, list[str]] = {}
        for agency in AGENCIES:
            caller = Caller("matrix", role, agency)
            key = repr(
                [
                    (
                        sorted(decisions.mask(caller, s)),
                        sorted(decisions.mask(caller, s, break_glass=True)),
                        sorted(decisions.action_mask(caller, s, SUBJECT_ACCESS)),
                    )
                    for s in SOURCES
                ]
                + sorted(decisions.actions.get((role, agency), frozenset()))
            )
            variants.setdefault(key, []).append(agency)
        for agencies in variants.values():
            caller = Caller("matrix", role, agencies[0])
            label = "any" if len(agencies) == len(AGENCIES) else ", ".join(agencies)
            actions = ", ".join(sorted(decisions.actions.get((role, agencies[0]), frozenset())))
            for index, source in enumerate(SOURCES):
                read = decisions.mask(caller, source)
                extra = decisions.mask(caller, source, break_glass=True) - read
                first = index == 0
                table.add_row(
                    role if first else "",
                    label if first else "",
                    source,
                    _groups(read),
                    _groups(extra),
                    _groups(decisions.action_mask(caller, source, SUBJECT_ACCESS)),
                    actions if first else "",
                    end_section=index == len(SOURCES) - 1,
                )
    stdout.print(table)


def _groups(groups: frozenset[str]) -> str:
    ordered = [g for g in PERSON_FIELDS if g in groups]
    return ", ".join(g.removeprefix("details.") for g in ordered) or "—"
