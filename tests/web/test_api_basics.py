"""What every API response shares: problem documents, request ids, security headers, limits."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import event, text

from mash_hub.crypto.tokens import TokenKey
from mash_hub.db.engine import Database
from mash_hub.settings import Settings
from mash_hub.users.service import add_user, issue_token
from mash_hub.web.app import create_app
from mash_hub.web.deps import CurrentPrincipal

SECRET_VALUE = "Jane Example 1990-01-01"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class Item(BaseModel):
    name: str
    age: int


def make_app(database: Database, tmp_path: Path, **overrides: Any) -> tuple[FastAPI, TokenKey]:
    key = TokenKey(secrets.token_bytes(32))
    cfg = Settings(data_dir=tmp_path / "hub", **overrides)
    app = create_app(database, settings=cfg, token_key=key)

    @app.post("/api/v1/test-echo")
    def echo(item: Item) -> Item:
        return item

    @app.get("/api/v1/test-crash")
    def crash() -> None:
        raise ValueError(SECRET_VALUE)

    return app, key


def bearer_for(database: Database, key: TokenKey, name: str = "officer1") -> dict[str, str]:
    with database.transaction() as session:
        user = add_user(session, name, "mash_officer", "council")
    issued = issue_token(user, key, issuer="mash-hub", audience="mash-hub-api", minutes=5)
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def app_and_key(committing_database: Database, tmp_path: Path) -> tuple[FastAPI, TokenKey]:
    return make_app(committing_database, tmp_path, max_body_bytes=1000)


@pytest.fixture
def client(app_and_key: tuple[FastAPI, TokenKey]) -> Iterator[TestClient]:
    with TestClient(app_and_key[0]) as test_client:
        yield test_client


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    assert SECRET_VALUE not in response.text
    assert_security_headers(response)
    return body


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert response.headers["x-request-id"]
    if response.headers.get("content-type", "").startswith("application/"):
        assert "default-src 'none'" in response.headers["content-security-policy"]


def test_health_keeps_working_with_security_headers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.json() == {"status": "alive"}
    assert_security_headers(response)


def test_unknown_path_is_a_404_problem(client: TestClient) -> None:
    body = assert_problem(client.get("/api/v1/no-such-thing"), 404)
    assert body["title"] == "Not Found"


def test_wrong_method_is_a_405_problem_with_allow(client: TestClient) -> None:
    response = client.delete("/api/v1/me")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


def test_missing_credentials_is_a_401_problem(client: TestClient) -> None:
    response = client.get("/api/v1/me")
    body = assert_problem(response, 401)
    assert body["code"] == "unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_validation_errors_list_fields_without_values(client: TestClient) -> None:
    response = client.post("/api/v1/test-echo", json={"name": SECRET_VALUE, "age": SECRET_VALUE})
    body = assert_problem(response, 422)
    assert body["errors"] == [
        {"loc": ["body", "age"], "msg": body["errors"][0]["msg"], "type": "int_parsing"}
    ]
    assert set(body["errors"][0]) == {"loc", "msg", "type"}


def test_malformed_json_is_a_422_problem(client: TestClient) -> None:
    response = client.post(
        "/api/v1/test-echo",
        content=b'{"name": "' + SECRET_VALUE.encode() + b'", ',
        headers={"content-type": "application/json"},
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["type"] == "json_invalid"


def test_unhandled_error_is_a_500_problem_without_details(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/api/v1/test-crash", headers={"X-Request-ID": "crash-1"})
    body = assert_problem(response, 500)
    assert body["request_id"] == "crash-1"
    assert "ValueError" not in response.text
    assert any("crash-1" in record.getMessage() for record in caplog.records)
    assert not any(SECRET_VALUE in record.getMessage() for record in caplog.records)


def test_body_over_the_limit_is_a_413_problem(client: TestClient) -> None:
    big = {"name": "x" * 2000, "age": 1}
    assert_problem(client.post("/api/v1/test-echo", json=big), 413)


def test_streamed_body_over_the_limit_is_a_413_problem(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'", "age": 1}'

    response = client.post(
        "/api/v1/test-echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_body_under_the_limit_is_accepted(client: TestClient) -> None:
    response = client.post("/api/v1/test-echo", json={"name": "x", "age": 3})
    assert response.status_code == 200
    assert response.json() == {"name": "x", "age": 3}
    assert_security_headers(response)


def test_request_id_is_honoured_when_sane_and_replaced_otherwise(client: TestClient) -> None:
    kept = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = client.get("/healthz", headers={"X-Request-ID": "<script>" + "a" * 100})
    assert replaced.headers["x-request-id"] != "<script>"
    assert len(replaced.headers["x-request-id"]) == 32
    first, second = client.get("/healthz"), client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_rate_limit_per_principal_answers_429_with_retry_after(
    committing_database: Database, tmp_path: Path
) -> None:
    app, key = make_app(committing_database, tmp_path, rate_limit_per_minute=3)
    client = TestClient(app)
    alice = bearer_for(committing_database, key, "alice")
    bob = bearer_for(committing_database, key, "bob")
    for _ in range(3):
        assert client.get("/api/v1/me", headers=alice).status_code == 200
    response = client.get("/api/v1/me", headers=alice)
    body = assert_problem(response, 429)
    assert body["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    # Keyed by principal, not by address: another user from the same IP is unaffected.
    assert client.get("/api/v1/me", headers=bob).status_code == 200


def test_a_request_whose_work_rolls_back_has_still_spent_its_token(
    committing_database: Database, tmp_path: Path
) -> None:
    """The take commits with authentication, before the endpoint's own unit of work: work
    that fails and rolls back does not give the token back (else failing requests would get
    through the limit), and the refusal that follows is kept too."""
    app, key = make_app(committing_database, tmp_path, rate_limit_per_minute=2)

    @app.get("/api/v1/test-rollback")
    def failing_work(principal: CurrentPrincipal) -> None:
        with committing_database.transaction() as session:
            session.execute(text("SELECT 1"))
            raise ValueError(SECRET_VALUE)

    client = TestClient(app, raise_server_exceptions=False)
    alice = bearer_for(committing_database, key, "alice")
    for _ in range(2):
        assert_problem(client.get("/api/v1/test-rollback", headers=alice), 500)
    assert_problem(client.get("/api/v1/test-rollback", headers=alice), 429)
    assert_problem(client.get("/api/v1/me", headers=alice), 429)


def test_authentication_and_the_rate_limit_take_share_one_transaction(
    committing_database: Database, tmp_path: Path
) -> None:
    """One connection, one transaction for the user look-up (with its revocation check) and
    the take: they were three transactions on two connections (five more round trips)."""
    app, key = make_app(committing_database, tmp_path, rate_limit_per_minute=100)
    client = TestClient(app)
    alice = bearer_for(committing_database, key, "alice")
    assert client.get("/api/v1/me", headers=alice).status_code == 200  # connections warm
    seen: dict[str, int] = {"transactions": 0, "statements": 0, "checkouts": 0}

    def began(_connection: Any) -> None:
        seen["transactions"] += 1

    def executed(*_args: Any) -> None:
        seen["statements"] += 1

    def checked_out(*_args: Any) -> None:
        seen["checkouts"] += 1

    engine = committing_database.engine
    event.listen(engine, "begin", began)
    event.listen(engine, "before_cursor_execute", executed)
    event.listen(engine, "checkout", checked_out)
    try:
        assert client.get("/api/v1/me", headers=alice).status_code == 200
    finally:
        event.remove(engine, "begin", began)
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "checkout", checked_out)
    # The look-up (user and revocation in one), the take (which sets asynchronous commit).
    assert seen == {"transactions": 1, "statements": 2, "checkouts": 1}


def test_every_server_process_shares_one_limit(
    committing_database: Database, tmp_path: Path
) -> None:
    """Two apps on one database stand for `serve --workers 2`: a limit of 3 a minute is 3
    in all, not 3 per worker; failed sign-ins from one address are counted together too."""
    first, key = make_app(committing_database, tmp_path, rate_limit_per_minute=3,
                          auth_failures_per_minute=2)  # fmt: skip
    second = create_app(
        committing_database,
        settings=Settings(data_dir=tmp_path / "hub", rate_limit_per_minute=3,
                          auth_failures_per_minute=2),
        token_key=key,
    )  # fmt: skip
    one, two = TestClient(first), TestClient(second)
    alice = bearer_for(committing_database, key, "alice")
    assert one.get("/api/v1/me", headers=alice).status_code == 200
    assert two.get("/api/v1/me", headers=alice).status_code == 200
    assert one.get("/api/v1/me", headers=alice).status_code == 200
    assert_problem(two.get("/api/v1/me", headers=alice), 429)

    wrong = {"Authorization": "Bearer not-a-token"}
    assert one.get("/api/v1/me", headers=wrong).status_code == 401
    assert two.get("/api/v1/me", headers=wrong).status_code == 401
    assert_problem(one.get("/api/v1/me", headers=wrong), 429)
    # The buckets hold digests, not user ids or addresses.
    with committing_database.transaction() as session:
        stored = session.execute(text("SELECT limiter, key_hash FROM rate_limit_buckets")).all()
    assert sorted(limiter for limiter, _ in stored) == ["api", "auth_failures"]
    assert all(len(digest) == 32 for _, digest in stored)


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/me" in spec["paths"]
    assert "/healthz" in spec["paths"]
