"""``mash-hub demo``: a working hub on synthetic people, ready to try within a minute.

Only on the embedded default (no ``MASH_DATABASE_URL``): the demo fills the database with
synthetic people, so it refuses an external server, and refuses a data directory whose
database already holds records it did not create. Running it again reuses the data it made
and issues fresh credentials.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.authz.files import PolicyTexts
from mash_hub.authz.versions import publish
from mash_hub.cli._common import ExitCode, actor, console, emit_json, fail, open_hub, settings
from mash_hub.cli.serve import serve
from mash_hub.crypto.tokens import load_token_key
from mash_hub.db.engine import Database
from mash_hub.feeds.definition import feed_folders, get_feed
from mash_hub.feeds.ingest import PreparePool, ingest_file
from mash_hub.matching.model import LinkageModel, model_path
from mash_hub.matching.service import run_linkage
from mash_hub.persons.models import SourceRecord
from mash_hub.persons.store import PersonStore
from mash_hub.synth import EXTRACT_FILES, generate
from mash_hub.users.models import ApiClient, User
from mash_hub.users.service import (
    MAX_TOKEN_MINUTES,
    PARTNER_ROLE,
    USER_ROLES,
    add_client,
    add_user,
    issue_token,
)
from mash_hub.users.sessions import issue_login_link

DEMO_DIR = "demo"
MARKER = "demo.json"
CREDENTIALS = "credentials.json"

# The agency each demo account works for; roles not listed work for the council.
ROLE_AGENCY: dict[str, str] = {
    "mash_officer": "social_care",
    "police_officer": "police",
    "social_worker": "social_care",
    "council_officer": "education",
    "auditor": "council",
    "admin": "council",
    PARTNER_ROLE: "education",  # a school's safeguarding lead, signing in to the pages
}
PARTNER_AGENCY = "education"  # a school submitting referrals

ROLE_USE: dict[str, str] = {
    "mash_officer": "search people, view linked records, triage referrals, review links",
    "police_officer": "search people; police details only; answer the MASH's information requests",
    "social_worker": "search people; social-care and council details, police warning markers; "
    "answer information requests",
    "council_officer": "search people; council details only; answer information requests",
    "auditor": "query, export and verify the audit log; no personal data",
    "admin": "users, API clients, keys and policy; no personal data",
    "information_governance": "subject-access exports (GET /persons/{id}/subject-access)",
    PARTNER_ROLE: "make referrals and read the MASH's feedback on them; nothing else",
}


@dataclass
class DemoSetUp:
    """What the demo did; the document ``--json`` prints (synthetic data only)."""

    data_dir: str
    people: int
    seed: int
    reused: bool
    records: int = 0
    persons: int = 0
    quarantined: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    accounts: list[dict[str, str]] = field(default_factory=list)
    partner: dict[str, str] = field(default_factory=dict)
    revoked_partner_clients: list[str] = field(default_factory=list)
    credentials_file: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "people": self.people,
            "seed": self.seed,
            "reused_existing_demo_data": self.reused,
            "records": self.records,
            "persons": self.persons,
            "quarantined": self.quarantined,
            "seconds": self.seconds,
            "accounts": self.accounts,
            "partner": self.partner,
            "revoked_partner_clients": self.revoked_partner_clients,
            "credentials_file": self.credentials_file,
        }


def demo(  # noqa: PLR0917 - Typer maps each parameter to an option
    people: Annotated[
        int, typer.Option("--people", min=50, max=200_000, help="Synthetic people to generate.")
    ] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same people.")] = 42,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    token_minutes: Annotated[
        int,
        typer.Option(
            "--token-minutes", min=1, max=MAX_TOKEN_MINUTES, help="How long demo tokens last."
        ),
    ] = 60,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Stop after the set-up (for scripts).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the set-up summary as JSON on stdout.")
    ] = False,
) -> None:
    """Set up a demo hub on synthetic data and serve it: keys, a synthetic population, the
    three agency extracts ingested and linked, one account per role and a partner API key.

    Runs only on the embedded default (no MASH_DATABASE_URL). Running it again reuses the
    demo data and prints fresh credentials.
    """
    cfg = settings()
    if not cfg.uses_embedded_database:
        fail(
            "the demo loads synthetic people, so it runs only on the embedded default: "
            "unset MASH_DATABASE_URL (or choose another MASH_DATA_DIR)",
            ExitCode.BAD_INPUT,
        )
    folder = cfg.data_dir / DEMO_DIR
    began = time.perf_counter()
    with open_hub() as (db, provider):
        store = PersonStore.from_provider(provider)
        marker = _read_marker(folder)
        with db.transaction() as session:
            records = _count(session, SourceRecord.id)
        if records and marker is None:
            fail(
                f"the database in {cfg.data_dir} already holds {records:,} records the demo did "
                "not create; run the demo with another MASH_DATA_DIR",
                ExitCode.BAD_INPUT,
            )
        if marker is not None:
            people, seed = int(marker["people"]), int(marker["seed"])
        result = DemoSetUp(str(cfg.data_dir), people, seed, reused=marker is not None)
        _publish_policy(db)
        if marker is None:
            _load_population(db, store, folder, result, quiet=as_json)
            _write_private(folder / MARKER, {"people": people, "seed": seed, "created_at": _now()})
        with db.transaction() as session:
            result.records = _count(session, SourceRecord.id)
            result.persons = _count(session, func.distinct(SourceRecord.person_id))
            _accounts(session, result, token_minutes, f"http://{host}:{port}")
        result.credentials_file = str(folder / CREDENTIALS)
        _write_private(folder / CREDENTIALS, result.as_dict())
        result.seconds["total"] = round(time.perf_counter() - began, 2)
        if result.revoked_partner_clients:
            _warn_revoked(result)
        if as_json:
            emit_json(result.as_dict())
        else:
            _print_guide(result, host, port, serving=not no_serve)
        if not no_serve:
            serve(host=host, port=port)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _count(session: Session, column: Any) -> int:
    return int(session.scalar(select(func.count(column))) or 0)


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data: Any = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        fail(f"cannot read {folder / MARKER} ({exc}); remove it to set the demo up again")
    if not isinstance(data, dict) or not {"people", "seed"} <= data.keys():
        fail(f"{folder / MARKER} is not a demo marker; remove it to set the demo up again")
    return data


def _write_private(path: Path, document: dict[str, Any]) -> None:
    """Write a JSON file readable by its owner only (it may hold demo credentials)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")
    temporary.replace(path)


def _publish_policy(db: Database) -> None:
    with db.transaction() as session:
        publish(session, PolicyTexts.read(), actor=actor())


def _step(result: DemoSetUp, name: str, started: float, quiet: bool, message: str) -> float:
    now = time.perf_counter()
    result.seconds[name] = round(now - started, 2)
    if not quiet:
        console.print(f"[green]✓[/] {message} ({now - started:.1f} s)", highlight=False)
    return now


def _load_population(
    db: Database, store: PersonStore, folder: Path, result: DemoSetUp, *, quiet: bool
) -> None:
    """Generate the extracts, ingest each feed, and run a full linkage with the shipped
    model (the demo does not train: too few people to train well, and it saves time)."""
    extracts = folder / "extracts"
    extracts.mkdir(mode=0o700, parents=True, exist_ok=True)
    for private in (folder, extracts):
        private.chmod(0o700)
    mark = time.perf_counter()
    summary = generate(people=result.people, seed=result.seed, out_dir=extracts)
    mark = _step(
        result,
        "synth",
        mark,
        quiet,
        f"generated {summary.people:,} synthetic people ({sum(summary.records.values()):,} "
        f"agency records) in {extracts}",
    )
    folders = feed_folders([settings().feeds_dir])
    workers = max(1, min(os.cpu_count() or 1, 4))
    for feed, file_name in EXTRACT_FILES.items():
        definition = get_feed(feed, folders)
        with PreparePool(store, definition, workers) as pool:
            report = ingest_file(
                db, store, definition, extracts / file_name, actor=actor(), pool=pool
            )
        result.quarantined += report.quarantined
        mark = _step(
            result,
            f"ingest_{feed}",
            mark,
            quiet,
            f"ingested {report.accepted:,} {feed} records ({report.quarantined:,} quarantined)",
        )
    model = LinkageModel.load(model_path(settings().data_dir, settings().linkage_model))
    run = run_linkage(db, store, model, actor=actor())
    _step(
        result,
        "link",
        mark,
        quiet,
        f"linked {run.records:,} records into {run.clusters:,} persons "
        f"({run.review_pairs:,} pairs for review)",
    )


def _accounts(session: Session, result: DemoSetUp, token_minutes: int, base_url: str) -> None:
    """One enabled account per role (created once; the partner role as a school's staff) with
    a fresh token and a one-time sign-in link each, and a new partner API key (earlier demo
    keys are revoked, audited and reported, so only the printed one works)."""
    key = load_token_key(settings(), create=True)
    cfg = settings()
    for role in USER_ROLES:
        name = f"demo-{role.replace('_', '-')}"
        agency = ROLE_AGENCY.get(role, "council")
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            user = add_user(session, name, role, agency)
        elif user.disabled or user.role != role:
            user.disabled, user.role, user.agency = False, role, agency
        issued = issue_token(
            user, key, issuer=cfg.token_issuer, audience=cfg.token_audience, minutes=token_minutes
        )
        link = issue_login_link(session, user, actor=actor())
        audit(
            session,
            AuditEvent(
                actor(),
                "auth.token_issued",
                "user",
                str(user.id),
                {"jti": issued.jti, "minutes": token_minutes, "demo": True},
            ),
        )
        result.accounts.append(
            {
                "user": name,
                "role": role,
                "agency": user.agency,
                "use": ROLE_USE.get(role, ""),
                "token": issued.token,
                "expires_at": issued.expires_at.isoformat(),
                "sign_in_link": link.url(base_url),
                "sign_in_link_expires_at": link.expires_at.isoformat(),
            }
        )
    for old in _earlier_partner_clients(session):
        old.revoked_at = dt.datetime.now(dt.UTC)
        audit(
            session,
            AuditEvent(actor(), "clients.revoke", "client", str(old.id), {"demo_rerun": True}),
        )
        result.revoked_partner_clients.append(str(old.id))
    client, api_key = add_client(session, PARTNER_AGENCY)
    audit(
        session,
        AuditEvent(actor(), "clients.add", "client", str(client.id), {"agency": PARTNER_AGENCY}),
    )
    result.partner = {"client_id": str(client.id), "agency": PARTNER_AGENCY, "api_key": api_key}


def _earlier_partner_clients(session: Session) -> list[ApiClient]:
    """Live clients of the demo partner's agency: in a demo database, earlier demo runs'."""
    live = select(ApiClient).where(
        ApiClient.agency == PARTNER_AGENCY, ApiClient.revoked_at.is_(None)
    )
    return list(session.scalars(live))


def _warn_revoked(result: DemoSetUp) -> None:
    """Said even with --json (on stderr): a script or partner still holding an earlier demo
    key gets 401 from now on, and should not have to find out by failing."""
    count = len(result.revoked_partner_clients)
    console.print(
        f"[bold yellow]note:[/] revoked {count} earlier demo partner API key(s) "
        f"({', '.join(result.revoked_partner_clients)}): they answer 401 from now on; use the "
        "new key printed with this set-up (also in the credentials file)",
        highlight=False,
    )


def _print_guide(result: DemoSetUp, host: str, port: int, *, serving: bool) -> None:
    base = f"http://{host}:{port}"
    console.print()
    console.print(
        f"[bold]MASH Hub demo[/]: {result.records:,} synthetic records linked into "
        f"{result.persons:,} persons, set up in {result.seconds['total']:.1f} s"
        + (" (reused existing demo data)" if result.reused else ""),
        highlight=False,
    )
    console.print(
        "\nAccounts (tokens last as long as --token-minutes; renew with `mash-hub token USER`):",
        highlight=False,
    )
    for account in result.accounts:
        console.print(
            f"  [cyan]{account['user']:<28}[/] {account['role']:<22} {account['use']}",
            highlight=False,
        )
    console.print(
        "\nSign in to the pages in a browser with one of these links (each works once, for "
        "10 minutes; `mash-hub users login-link USER` makes another):",
        highlight=False,
    )
    for account in result.accounts:
        console.print(f"  {account['user']:<28} {account['sign_in_link']}", highlight=False)
    console.print(
        f"\nPartner API key ({result.partner['agency']}), shown once and saved with the tokens "
        f"in {result.credentials_file} (mode 0600):\n  {result.partner['api_key']}",
        highlight=False,
    )
    console.print(
        "\nTry it (see README.md, 'Try the demo'):\n"
        "  export TOKEN=$(mash-hub token demo-mash-officer)\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/v1/me\n'
        f"  API documentation: {base}/docs",
        highlight=False,
    )
    if serving:
        console.print(f"\nServing at [bold]{base}[/] (Ctrl+C to stop)", highlight=False)
