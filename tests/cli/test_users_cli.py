"""``mash-hub users``, ``clients`` and ``token`` as an operator runs them, then used over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from mash_hub.audit.models import AuditEntry
from mash_hub.authz.versions import publish
from mash_hub.db import migrate
from mash_hub.db.engine import Database
from mash_hub.settings import Settings
from mash_hub.web.app import create_app
from tests.authz.conftest import BASELINE
from tests.cli.test_keys_and_erase_cli import json_output, refused, run_hub


@pytest.fixture
def hub_db(hub_env: dict[str, str]) -> Iterator[Database]:
    engine = create_engine(hub_env["MASH_DATABASE_URL"], pool_size=2, max_overflow=0)
    migrate.upgrade(engine)
    try:
        yield Database(engine)
    finally:
        engine.dispose()


def api_client(db: Database, env: dict[str, str]) -> TestClient:
    """An app bound to the CLI's database, reading the token secret the CLI created."""
    return TestClient(create_app(db, settings=Settings(data_dir=Path(env["MASH_DATA_DIR"]))))


def audit_entries(db: Database) -> list[AuditEntry]:
    with db.transaction() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def test_users_add_and_token_then_me_over_http(hub_env: dict[str, str], hub_db: Database) -> None:
    added = json_output(
        run_hub("users", "add", "j.smith", "--role", "social_worker", "--agency", "social_care",
                "--json", env=hub_env)
    )  # fmt: skip
    issued = run_hub("token", "j.smith", "--minutes", "5", env=hub_env)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    key_file = Path(hub_env["MASH_DATA_DIR"]) / "token-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600

    client = api_client(hub_db, hub_env)
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": f"user:{added['id']}", "kind": "staff", "role": "social_worker",
        "agency": "social_care", "method": "hub_token",
    }  # fmt: skip

    listed = json_output(run_hub("users", "list", "--json", env=hub_env))
    assert [(u["name"], u["disabled"]) for u in listed] == [("j.smith", False)]

    json_output(run_hub("users", "disable", "j.smith", "--json", env=hub_env))
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "disabled" in refused(run_hub("token", "j.smith", env=hub_env))

    entries = audit_entries(hub_db)
    actions = [e.action for e in entries]
    assert actions[:4] == ["users.add", "auth.token_issued", "users.disable", "auth.failed"]
    issued_entry = entries[1]
    assert issued_entry.subject_id == added["id"]
    assert set(issued_entry.details) == {"jti", "minutes", "expires_at"}
    everything = json.dumps([[e.actor, e.subject_id, e.details] for e in entries])
    assert "j.smith" not in everything  # names stay out of the audit log
    assert token.split(".")[2] not in everything


def test_users_add_refuses_bad_input(hub_env: dict[str, str], hub_db: Database) -> None:
    assert "unknown role" in refused(
        run_hub("users", "add", "a", "--role", "wizard", "--agency", "police", env=hub_env)
    )
    assert "unknown agency" in refused(
        run_hub("users", "add", "a", "--role", "police_officer", "--agency", "mi5", env=hub_env)
    )
    json_output(run_hub("users", "add", "a", "--role", "auditor", "--agency", "council",
                        "--json", env=hub_env))  # fmt: skip
    assert "already exists" in refused(
        run_hub("users", "add", "a", "--role", "auditor", "--agency", "council", env=hub_env)
    )
    assert "no user" in refused(run_hub("token", "nobody", env=hub_env))


def test_clients_add_list_revoke(hub_env: dict[str, str], hub_db: Database) -> None:
    created = json_output(run_hub("clients", "add", "--agency", "health", "--json", env=hub_env))
    key = created["api_key"]
    assert key.startswith(f"mash_pk_{created['id'].replace('-', '')}_")

    client = api_client(hub_db, hub_env)
    response = client.get("/api/v1/me", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    assert response.json()["kind"] == "partner"
    assert response.json()["agency"] == "health"

    listed = json_output(run_hub("clients", "list", "--json", env=hub_env))
    assert [c["id"] for c in listed] == [created["id"]]
    assert listed[0]["last_used_at"] is not None
    secret = key.removeprefix("mash_pk_")[33:]  # the secret itself may contain "_"
    assert len(secret) > 20 and secret not in json.dumps(listed)

    json_output(run_hub("clients", "revoke", created["id"], "--json", env=hub_env))
    assert client.get("/api/v1/me", headers={"X-API-Key": key}).status_code == 401
    assert "not a client id" in refused(run_hub("clients", "revoke", "nope", env=hub_env))

    everything = json.dumps([e.details for e in audit_entries(hub_db)])
    assert key not in everything
    assert key.split("_", 3)[3] not in everything


def test_the_audit_log_names_actors_as_they_were_when_they_acted(
    hub_env: dict[str, str], hub_db: Database
) -> None:
    """A renamed auditor's earlier query keeps their old name; role and agency come from
    the user's history, not from today's row."""
    added = json_output(
        run_hub("users", "add", "a.first", "--role", "auditor", "--agency", "council",
                "--json", env=hub_env)
    )  # fmt: skip
    with hub_db.transaction() as session:
        publish(session, BASELINE, actor="test:publisher")
    client = api_client(hub_db, hub_env)

    def query(name: str) -> tuple[dict[str, str], list[dict[str, object]]]:
        token = run_hub("token", name, env=hub_env)
        assert token.returncode == 0, token.stderr
        bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}
        response = client.get("/api/v1/audit/entries", headers=bearer)
        assert response.status_code == 200, response.text
        return bearer, response.json()["entries"]

    old_token, _ = query("a.first")
    changed = json_output(
        run_hub("users", "change", "a.first", "--rename", "a.second", "--agency", "health",
                "--json", env=hub_env)
    )  # fmt: skip
    assert changed == {"id": added["id"], "name": "a.second", "role": "auditor", "agency": "health"}
    _, listed_entries = query("a.second")
    entries = {e["seq"]: e for e in listed_entries}

    mine = [e for e in entries.values() if e["actor"] == f"user:{added['id']}"]
    assert [(e["action"], e["actor_name"], e["actor_agency"]) for e in mine] == [
        ("audit.query", "a.first", "council")
    ]
    assert mine[0]["actor_kind"] == "hub_user" and mine[0]["actor_role"] == "auditor"
    operator = next(e for e in entries.values() if e["action"] == "users.change")
    assert operator["actor_kind"] == "command_line"
    assert operator["actor_name"] == str(operator["actor"]).removeprefix("cli:")

    # The command line names the actor too, with the name they had then.
    listed = json_output(run_hub("audit", "query", "--action", "audit.query", "--json",
                                 env=hub_env))  # fmt: skip
    assert [row["actor_name"] for row in listed] == ["a.first", "a.second"]
    # A token issued before the change carries the old agency and stops working.
    assert client.get("/api/v1/me", headers=old_token).status_code == 401
    # Names stay out of the log itself.
    assert "a.first" not in json.dumps([[e.actor, e.details] for e in audit_entries(hub_db)])


def test_users_change_refuses_bad_input(hub_env: dict[str, str], hub_db: Database) -> None:
    run_hub("users", "add", "b.one", "--role", "auditor", "--agency", "council", env=hub_env)
    run_hub("users", "add", "b.two", "--role", "auditor", "--agency", "council", env=hub_env)
    assert "nothing to change" in refused(run_hub("users", "change", "b.one", env=hub_env))
    assert "already exists" in refused(
        run_hub("users", "change", "b.one", "--rename", "b.two", env=hub_env)
    )
    assert "works for a partner agency" in refused(
        run_hub("users", "change", "b.one", "--role", "partner_agency", env=hub_env)
    )
    assert "no user named" in refused(
        run_hub("users", "change", "nobody", "--role", "auditor", env=hub_env)
    )


def test_login_link_signs_in_once_through_the_pages(
    hub_env: dict[str, str], hub_db: Database
) -> None:
    run_hub("users", "add", "k.officer", "--role", "mash_officer", "--agency", "social_care",
            env=hub_env)  # fmt: skip
    issued = run_hub("users", "login-link", "k.officer", "--base-url", "https://hub.example",
                     env=hub_env)  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    url = issued.stdout.strip()
    assert url.startswith("https://hub.example/sign-in?token=") and "\n" not in url
    secret = url.split("token=", 1)[1]

    client = api_client(hub_db, hub_env)
    signed_in = client.post("/sign-in", data={"token": secret}, follow_redirects=False)
    assert signed_in.status_code == 303
    assert "Signed in as" in client.get("/").text
    client.cookies.clear()
    assert client.post("/sign-in", data={"token": secret}).status_code == 401  # once only

    actions = [entry.action for entry in audit_entries(hub_db)]
    assert actions.count("auth.login_link_issued") == 1
    assert actions.count("auth.signed_in") == 1
    assert secret not in json.dumps([e.details for e in audit_entries(hub_db)])
    missing = run_hub("users", "login-link", "nobody", env=hub_env)
    refused(missing)
