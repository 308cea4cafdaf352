"""``mash-hub users``, ``mash-hub clients`` and ``mash-hub token``: who may call the API.

None of these commands need the encryption keys, so they open the database without them
(migrating the embedded one, as every command does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.table import Table

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.cli._common import (
    ExitCode,
    actor,
    console,
    emit_json,
    fail,
    open_db,
    settings,
)
from mash_hub.crypto.tokens import load_token_key
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.users.service import (
    MAX_TOKEN_MINUTES,
    UserError,
    add_client,
    add_user,
    change_user,
    disable_user,
    find_user,
    issue_token,
    list_clients,
    list_users,
    revoke_client,
    sign_out_everywhere,
)
from mash_hub.users.sessions import issue_login_link

users_app = typer.Typer(
    help="Staff users who sign in with hub-issued tokens.", no_args_is_help=True
)
clients_app = typer.Typer(help="Partner agencies' API clients (API keys).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]


@contextlib.contextmanager
def _open() -> Iterator[Database]:
    with open_db() as db:
        db.ping()
        if settings().uses_embedded_database:
            migrate.upgrade(db.engine)
        yield db


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ @ -).")],
    role: Annotated[
        str,
        typer.Option("--role", help="A staff role, or partner_agency (health or education)."),
    ],
    agency: Annotated[str, typer.Option("--agency", help="The agency the user works for.")],
    as_json: JsonOption = False,
) -> None:
    """Add a member of staff with one role in one agency (audited as users.add)."""
    with _open() as db, db.transaction() as session:
        try:
            user = add_user(session, name, role, agency)
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        audit(
            session,
            AuditEvent(
                actor(), "users.add", "user", str(user.id), {"role": role, "agency": agency}
            ),
        )
    if as_json:
        emit_json({"id": str(user.id), "name": name, "role": role, "agency": agency})
    else:
        console.print(f"Added user {name} ({role}, {agency}) with id {user.id}.", highlight=False)


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """Every user, with role, agency and whether disabled."""
    with _open() as db, db.transaction() as session:
        rows = [
            {
                "id": str(u.id),
                "name": u.name,
                "role": u.role,
                "agency": u.agency,
                "disabled": u.disabled,
                "created_at": u.created_at.isoformat(),
            }
            for u in list_users(session)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title="Users")
    for column in ("name", "role", "agency", "disabled", "id"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["role"]),
            str(row["agency"]),
            "yes" if row["disabled"] else "",
            str(row["id"]),
        )
    console.print(table)


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="The user to disable.")],
    as_json: JsonOption = False,
) -> None:
    """Disable a user: their tokens stop working at their next request (audited)."""
    with _open() as db, db.transaction() as session:
        try:
            user = disable_user(session, name)
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        audit(session, AuditEvent(actor(), "users.disable", "user", str(user.id)))
    if as_json:
        emit_json({"id": str(user.id), "name": name, "disabled": True})
    else:
        console.print(f"Disabled user {name}.", highlight=False)


@users_app.command("change")
def users_change(
    name: Annotated[str, typer.Argument(help="The user to change.")],
    role: Annotated[str | None, typer.Option("--role", help="A new role.")] = None,
    agency: Annotated[str | None, typer.Option("--agency", help="A new agency.")] = None,
    rename: Annotated[str | None, typer.Option("--rename", help="A new login name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a user's role, agency or login name (audited as users.change).

    Their current tokens carry the old role and agency and stop working at their next
    request. The audit log keeps naming their past actions as they were then.
    """
    with _open() as db, db.transaction() as session:
        try:
            user = change_user(session, name, role=role, agency=agency, new_name=rename)
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        audit(
            session,
            AuditEvent(
                actor(),
                "users.change",
                "user",
                str(user.id),
                {"role": user.role, "agency": user.agency, "renamed": rename is not None},
            ),
        )
        result = {"id": str(user.id), "name": user.name, "role": user.role, "agency": user.agency}
    if as_json:
        emit_json(result)
    else:
        console.print(
            f"Changed user {result['name']}: {result['role']}, {result['agency']}.",
            highlight=False,
        )


@users_app.command("sign-out")
def users_sign_out(
    name: Annotated[str, typer.Argument(help="The user to sign out everywhere.")],
    as_json: JsonOption = False,
) -> None:
    """Refuse every token the user holds now (a lost laptop, a leaked token); tokens issued
    afterwards work. Audited as auth.signed_out_everywhere."""
    with _open() as db, db.transaction() as session:
        try:
            user = sign_out_everywhere(session, name)
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        audit(session, AuditEvent(actor(), "auth.signed_out_everywhere", "user", str(user.id)))
        not_before = user.tokens_not_before
    stamp = not_before.isoformat() if not_before is not None else None
    if as_json:
        emit_json({"id": str(user.id), "name": name, "tokens_not_before": stamp})
    else:
        console.print(f"Signed out {name}: tokens issued before {stamp} are refused.")


@users_app.command("login-link")
def users_login_link(
    name: Annotated[str, typer.Argument(help="The user who will sign in.")],
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="Where the pages are served (default MASH_PUBLIC_URL)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a one-time sign-in link for the pages, valid for 10 minutes (audited as
    auth.login_link_issued). Only its hash is stored; the link alone goes to stdout."""
    with _open() as db, db.transaction() as session:
        try:
            link = issue_login_link(session, find_user(session, name), actor=actor())
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
    url = link.url(base_url or settings().public_url)
    if as_json:
        emit_json({"url": url, "expires_at": link.expires_at.isoformat()})
    else:
        typer.echo(url)
        console.print(f"Works once, until {link.expires_at.isoformat()}.", highlight=False)


def token(
    name: Annotated[str, typer.Argument(help="The user the token is for.")],
    minutes: Annotated[
        int, typer.Option(min=1, max=MAX_TOKEN_MINUTES, help="How long the token lasts.")
    ] = 15,
    as_json: JsonOption = False,
) -> None:
    """Print a short-lived signed API token for a user (audited as auth.token_issued).

    The token alone goes to stdout, so `$(mash-hub token NAME)` can be used in scripts.
    """
    cfg = settings()
    key = load_token_key(cfg, create=True)
    with _open() as db, db.transaction() as session:
        try:
            user = find_user(session, name)
            issued = issue_token(
                user,
                key,
                issuer=cfg.token_issuer,
                audience=cfg.token_audience,
                minutes=minutes,
            )
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        audit(
            session,
            AuditEvent(
                actor(),
                "auth.token_issued",
                "user",
                str(user.id),
                {
                    "jti": issued.jti,
                    "minutes": minutes,
                    "expires_at": issued.expires_at.isoformat(),
                },
            ),
        )
    if as_json:
        emit_json(
            {
                "token": issued.token,
                "jti": issued.jti,
                "expires_at": issued.expires_at.isoformat(),
            }
        )
    else:
        typer.echo(issued.token)
        console.print(f"Expires {issued.expires_at.isoformat()}.", highlight=False)


@clients_app.command("add")
def clients_add(
    agency: Annotated[str, typer.Option("--agency", help="The partner agency.")],
    as_json: JsonOption = False,
) -> None:
    """Create an API client for a partner agency and print its key ONCE (audited)."""
    with _open() as db, db.transaction() as session:
        try:
            client, key = add_client(session, agency)
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        audit(
            session,
            AuditEvent(actor(), "clients.add", "client", str(client.id), {"agency": agency}),
        )
    if as_json:
        emit_json({"id": str(client.id), "agency": agency, "api_key": key})
    else:
        typer.echo(key)
        console.print(
            f"Created client {client.id} for {agency}. The key above is shown only now; "
            "store it in the partner's secret store.",
            highlight=False,
        )


@clients_app.command("list")
def clients_list(as_json: JsonOption = False) -> None:
    """Every API client: agency, created, last used, revoked (never the key)."""
    with _open() as db, db.transaction() as session:
        rows = [
            {
                "id": str(c.id),
                "agency": c.agency,
                "created_at": c.created_at.isoformat(),
                "last_used_at": c.last_used_at.isoformat() if c.last_used_at else None,
                "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
            }
            for c in list_clients(session)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title="API clients")
    for column in ("id", "agency", "created", "last used", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                str(row[k] or "")
                for k in ("id", "agency", "created_at", "last_used_at", "revoked_at")
            )
        )
    console.print(table)


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[str, typer.Argument(metavar="ID", help="The client to revoke.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a client's key: refused from its next request (audited)."""
    with _open() as db, db.transaction() as session:
        try:
            client = revoke_client(session, client_id)
        except UserError as exc:
            fail(str(exc), ExitCode.BAD_INPUT)
        audit(session, AuditEvent(actor(), "clients.revoke", "client", str(client.id)))
    assert client.revoked_at is not None
    if as_json:
        emit_json({"id": str(client.id), "revoked_at": client.revoked_at.isoformat()})
    else:
        console.print(f"Revoked client {client.id}.", highlight=False)
