"""Authentication through real HTTP calls: hub tokens, OIDC tokens, partner API keys."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from mash_hub.audit.models import AuditEntry
from mash_hub.crypto.tokens import TokenKey
from mash_hub.db.engine import Database
from mash_hub.settings import Settings
from mash_hub.users.models import User
from mash_hub.users.service import (
    UserError,
    add_client,
    add_user,
    disable_user,
    issue_token,
    revoke_client,
    sign_out_everywhere,
)
from mash_hub.web.app import create_app

ISSUER = "https://idp.example.test/realms/mash"
AUDIENCE = "mash-hub"


class Hub:
    """An app on a fresh database, with the means to mint credentials for it."""

    def __init__(self, database: Database, tmp_path: Path, **overrides: Any) -> None:
        self.database = database
        self.key = TokenKey(secrets.token_bytes(32))
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        jwks = {
            "keys": [
                {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())),
                 "kid": "rsa-1", "use": "sig", "alg": "RS256"},
                {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())),
                 "kid": "ec-1", "use": "sig"},
            ]
        }  # fmt: skip
        jwks_file = tmp_path / "jwks.json"
        jwks_file.write_text(json.dumps(jwks))
        settings = {
            "data_dir": tmp_path / "hub",
            "oidc_issuer": ISSUER,
            "oidc_audience": AUDIENCE,
            "oidc_jwks_file": jwks_file,
            **overrides,
        }
        self.app: FastAPI = create_app(database, settings=Settings(**settings), token_key=self.key)
        self.client = TestClient(self.app)

    def user(
        self, name: str = "sw1", role: str = "social_worker", agency: str = "social_care"
    ) -> User:
        with self.database.transaction() as session:
            return add_user(session, name, role, agency)

    def hub_token(self, user: User, **kwargs: Any) -> str:
        return issue_token(
            user, self.key, issuer="mash-hub", audience="mash-hub-api", minutes=5, **kwargs
        ).token

    def hub_claims(self, user: User, **changes: Any) -> dict[str, Any]:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims = {
            "sub": str(user.id), "role": user.role, "agency": user.agency, "iat": now,
            "exp": now + 300, "iss": "mash-hub", "aud": "mash-hub-api", "jti": uuid.uuid4().hex,
        }  # fmt: skip
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def oidc_token(
        self, *, key: Any = None, alg: str = "RS256", kid: str = "rsa-1", **changes: Any
    ) -> str:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims = {
            "sub": "f3c1-staff-77", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
            "mash_role": "police_officer", "mash_agency": "police",
        }  # fmt: skip
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(
            claims, key if key is not None else self.rsa, algorithm=alg, headers={"kid": kid}
        )

    def me(self, token: str | None = None, **headers: str) -> Any:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.get("/api/v1/me", headers=headers)

    def failures(self) -> list[dict[str, Any]]:
        with self.database.transaction() as session:
            rows = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "auth.failed")
                .order_by(AuditEntry.seq)
            )
            return [dict(row.details) for row in rows]

    def refused(self, token: str | None, reason: str, **headers: str) -> None:
        response = self.me(token, **headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"] == "missing or invalid credentials"
        last = self.failures()[-1]
        assert last["reason"] == reason
        assert last["ip"] == "testclient"
        dumped = json.dumps(self.failures())
        for secret in (token, *headers.values()):
            if secret:
                assert secret not in dumped
                tail = secret.split(".")[-1][:20]
                assert len(tail) < 8 or tail not in dumped


@pytest.fixture
def hub(committing_database: Database, tmp_path: Path) -> Iterator[Hub]:
    yield Hub(committing_database, tmp_path)


def test_hub_token_authenticates_staff(hub: Hub) -> None:
    user = hub.user()
    response = hub.me(hub.hub_token(user))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": f"user:{user.id}", "kind": "staff", "role": "social_worker",
        "agency": "social_care", "method": "hub_token",
    }  # fmt: skip
    assert hub.failures() == []  # success is not audited per request


def test_missing_and_unsupported_credentials_are_refused(hub: Hub) -> None:
    hub.refused(None, "missing_credentials")
    hub.refused(None, "unsupported_scheme", Authorization="Basic dXNlcjpwYXNz")
    hub.refused("not-a-jwt", "malformed")


def test_expired_token_is_refused(hub: Hub) -> None:
    user = hub.user()
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    hub.refused(hub.hub_token(user, now=old), "expired")


def test_tampered_token_is_refused(hub: Hub) -> None:
    user = hub.user()
    header, payload, signature = hub.hub_token(user).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    hub.refused(f"{header}.{forged}.{signature}", "invalid_signature")
    other_key = TokenKey(secrets.token_bytes(32))
    hub.refused(other_key.sign(hub.hub_claims(user)), "invalid_signature")


def test_wrong_audience_and_missing_claims_are_refused(hub: Hub) -> None:
    user = hub.user()
    hub.refused(hub.key.sign(hub.hub_claims(user, aud="someone-else")), "wrong_audience")
    hub.refused(hub.key.sign(hub.hub_claims(user, jti=None)), "missing_claim")
    hub.refused(hub.key.sign(hub.hub_claims(user, iss="elsewhere")), "unknown_issuer")


def test_alg_none_token_is_refused(hub: Hub) -> None:
    user = hub.user()
    unsigned = jwt.encode(hub.hub_claims(user), "", algorithm="none")
    hub.refused(unsigned, "unsupported_algorithm")
    unsigned_oidc = jwt.encode({"iss": ISSUER, "sub": "x"}, "", algorithm="none")
    hub.refused(unsigned_oidc, "unsupported_algorithm")


def test_disabled_user_is_refused_at_once(hub: Hub) -> None:
    user = hub.user()
    token = hub.hub_token(user)
    assert hub.me(token).status_code == 200
    with hub.database.transaction() as session:
        disable_user(session, user.name)
    hub.refused(token, "user_disabled")


def test_changed_role_invalidates_tokens(hub: Hub) -> None:
    user = hub.user()
    token = hub.hub_token(user)
    with hub.database.transaction() as session:
        row = session.get(User, user.id)
        assert row is not None
        row.role = "auditor"
    hub.refused(token, "claims_stale")


def test_a_signed_out_token_is_refused_and_the_sign_out_audited(hub: Hub) -> None:
    user = hub.user()
    token, other = hub.hub_token(user), hub.hub_token(user)
    bearer = {"Authorization": f"Bearer {token}"}
    assert hub.client.post("/api/v1/auth/sign-out", headers=bearer).status_code == 204
    hub.refused(token, "revoked")
    assert hub.me(other).status_code == 200  # only the presented token is signed out
    with hub.database.transaction() as session:
        (entry,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.signed_out"))
        assert entry.actor == f"user:{user.id}"
        assert entry.details["jti"] == jwt.decode(token, options={"verify_signature": False})["jti"]
    # Signing the same token out again is refused like any revoked credential.
    assert hub.client.post("/api/v1/auth/sign-out", headers=bearer).status_code == 401


def test_signing_out_an_api_key_says_how_to_revoke_it(hub: Hub) -> None:
    with hub.database.transaction() as session:
        _, key = add_client(session, "education")
    response = hub.client.post("/api/v1/auth/sign-out", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "not_a_hub_token"
    assert hub.me(key).status_code == 200


def test_sign_out_everywhere_refuses_every_earlier_token(hub: Hub) -> None:
    user = hub.user()
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    old = hub.hub_token(user, now=earlier)
    with hub.database.transaction() as session:
        sign_out_everywhere(session, user.name)
    hub.refused(old, "signed_out")
    assert hub.me(hub.hub_token(user)).status_code == 200  # signing straight back in works


def test_unknown_user_is_refused(hub: Hub) -> None:
    user = hub.user()
    hub.refused(hub.key.sign(hub.hub_claims(user, sub=str(uuid.uuid4()))), "unknown_user")


def test_oidc_token_maps_claims_to_a_staff_principal(hub: Hub) -> None:
    response = hub.me(hub.oidc_token())
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": "oidc:f3c1-staff-77", "kind": "staff", "role": "police_officer",
        "agency": "police", "method": "oidc",
    }  # fmt: skip
    ec_token = hub.oidc_token(key=hub.ec, alg="ES256", kid="ec-1")
    assert hub.me(ec_token).status_code == 200


def test_oidc_tokens_failing_checks_are_refused(hub: Hub) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    hub.refused(hub.oidc_token(exp=now - 3600, iat=now - 7200), "expired")
    hub.refused(hub.oidc_token(aud="another-app"), "wrong_audience")
    hub.refused(hub.oidc_token(mash_role="root"), "unmapped_role")
    hub.refused(hub.oidc_token(mash_role="partner_agency"), "unmapped_role")
    hub.refused(hub.oidc_token(mash_agency=None), "unmapped_role")
    hub.refused(hub.oidc_token(kid="unknown"), "unknown_key")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hub.refused(hub.oidc_token(key=stranger), "invalid_signature")
    # An RSA-signed token presented under the EC key's id, and an ES384 token: refused.
    hub.refused(hub.oidc_token(kid="ec-1"), "unsupported_algorithm")
    p384 = ec.generate_private_key(ec.SECP384R1())
    hub.refused(hub.oidc_token(key=p384, alg="ES384", kid="ec-1"), "unsupported_algorithm")


def test_oidc_hs256_signed_with_the_public_key_is_refused(hub: Hub) -> None:
    """The classic algorithm confusion: HMAC keyed with the provider's public key."""
    public_pem = hub.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60,
              "mash_role": "admin", "mash_agency": "police"}  # fmt: skip
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"rsa-1"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    token = (
        header + b"." + body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")
    ).decode()
    hub.refused(token, "unsupported_algorithm")


def test_partner_api_key_authenticates_both_ways(hub: Hub) -> None:
    with hub.database.transaction() as session:
        client, key = add_client(session, "health")
    expected = {
        "id": f"client:{client.id}", "kind": "partner", "role": "partner_agency",
        "agency": "health", "method": "api_key",
    }  # fmt: skip
    assert hub.me(key).json() == expected
    assert hub.me(**{"X-API-Key": key}).json() == expected
    with hub.database.transaction() as session:
        revoke_client(session, str(client.id))
    hub.refused(key, "client_revoked")
    hub.refused(None, "client_revoked", **{"X-API-Key": key})


def test_unknown_and_wrong_api_keys_are_refused(hub: Hub) -> None:
    with hub.database.transaction() as session:
        client, key = add_client(session, "education")
    unknown = f"mash_pk_{uuid.uuid4().hex}_{secrets.token_urlsafe(32)}"
    hub.refused(unknown, "unknown_client")
    wrong = f"mash_pk_{client.id.hex}_{secrets.token_urlsafe(32)}"
    hub.refused(wrong, "invalid_key")
    hub.refused("mash_pk_garbage", "malformed")
    hub.refused(None, "ambiguous_credentials", Authorization=f"Bearer {key}", **{"X-API-Key": key})


def test_repeated_failures_from_one_address_get_429_and_are_not_all_audited(
    committing_database: Database, tmp_path: Path
) -> None:
    hub = Hub(committing_database, tmp_path, auth_failures_per_minute=3)
    user = hub.user()
    for _ in range(3):
        assert hub.me("bad.token.here").status_code == 401
    response = hub.me("bad.token.here")
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1
    assert len(hub.failures()) == 3
    # Valid credentials from the same address still work.
    assert hub.me(hub.hub_token(user)).status_code == 200


def test_service_refuses_bad_roles_and_agencies(hub: Hub) -> None:
    with hub.database.transaction() as session:
        # A partner user is allowed for agencies that supply no records (health, education),
        # not for one whose records the hub holds.
        for role, agency in (("wizard", "police"), ("police_officer", "mi5"),
                             ("partner_agency", "police")):  # fmt: skip
            with pytest.raises(UserError):
                add_user(session, "someone", role, agency)
        with pytest.raises(UserError):
            add_client(session, "mi5")
