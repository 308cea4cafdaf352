"""schemathesis against the OpenAPI description: every operation, with generated requests, sent
with valid credentials of every role (and without any), must never answer a server error, and
every answer must match what the description says (status code, content type, body schema).

The hub behind it has the baseline policy, a synthetic household linked into persons and the
shipped linkage model, so referral intake runs real-time matching.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine

from mash_hub.authz.versions import publish
from mash_hub.authz.vocabulary import ROLES
from mash_hub.crypto.keys import LocalKeyringProvider
from mash_hub.crypto.tokens import TokenKey
from mash_hub.db.engine import Database
from mash_hub.matching.model import LinkageModel, shipped_model_path
from mash_hub.persons.store import PersonStore
from mash_hub.settings import Settings
from mash_hub.users.service import add_client
from mash_hub.web.app import create_app
from tests.authz.conftest import BASELINE, add_person
from tests.web.test_auth import Hub

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# The agency each role's test account works for.
AGENCY = {"police_officer": "police", "council_officer": "education"}


class FuzzHub(Hub):
    """A hub with data and one credential per role."""

    def __init__(self, database: Database, tmp_path: Path) -> None:
        super().__init__(database, tmp_path, rate_limit_per_minute=1_000_000)
        self.store = PersonStore.from_provider(
            LocalKeyringProvider.create(tmp_path / "keyring.json")
        )
        self.app.state.person_store = self.store
        self.app.state.linkage_model = LinkageModel.load(shipped_model_path())
        with database.transaction() as session:
            publish(session, BASELINE, actor="test:publisher")
            add_person(session, self.store)
        self.headers: dict[str, dict[str, str]] = {"anonymous": {}}
        for role in ROLES:
            agency = AGENCY.get(role, "social_care" if role != "partner_agency" else "education")
            if role == "partner_agency":
                with database.transaction() as session:
                    _, key = add_client(session, agency)
                self.headers[role] = {"X-API-Key": key}
            else:
                token = self.hub_token(self.user(f"fuzz.{role}", role, agency))
                self.headers[role] = {"Authorization": f"Bearer {token}"}


@pytest.fixture
def fuzz_hub(committing_database: Database, tmp_path: Path) -> Iterator[FuzzHub]:
    yield FuzzHub(committing_database, tmp_path)


def _described_app() -> FastAPI:
    """The app whose description is tested; it needs no database to describe itself (each
    test then calls its own hub's app, which has one)."""
    unused = Database(create_engine("postgresql+psycopg://unused@127.0.0.1:1/unused"))
    settings_ = Settings(data_dir=Path(tempfile.gettempdir()) / "mash-hub-unused")
    return create_app(unused, settings=settings_, token_key=TokenKey(secrets.token_bytes(32)))


schema = schemathesis.openapi.from_asgi("/openapi.json", _described_app())


@schema.parametrize()
@settings(
    max_examples=12,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
def test_every_operation_conforms_for_every_role(
    case: schemathesis.Case[Any], fuzz_hub: FuzzHub
) -> None:
    for credentials in fuzz_hub.headers.values():
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.call_and_validate(headers={**headers, **credentials}, checks=CHECKS, app=fuzz_hub.app)
