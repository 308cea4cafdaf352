"""Values sealed for one browser session: only that session's secret opens them, and a web
session's sealed ID token is gone once the session ends, whatever ended it."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from sqlalchemy.orm import Session

from mash_hub.crypto.errors import DecryptionError
from mash_hub.crypto.session_seal import open_for_session, seal_for_session
from mash_hub.users.models import WebSession
from mash_hub.users.sessions import (
    IDLE_TIMEOUT,
    SessionEnded,
    end_session,
    resume_session,
    secret_hash,
    start_session,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzdGFmZi0wMDAxIn0.c2lnbmF0dXJl"


def test_only_the_sessions_secret_and_purpose_open_the_seal() -> None:
    secret = secrets.token_urlsafe(32)
    sealed = seal_for_session(secret, TOKEN, purpose="oidc_id_token")
    assert TOKEN.encode() not in sealed
    assert open_for_session(secret, sealed, purpose="oidc_id_token") == TOKEN
    with pytest.raises(DecryptionError):
        open_for_session(secrets.token_urlsafe(32), sealed, purpose="oidc_id_token")
    with pytest.raises(DecryptionError):
        open_for_session(secret, sealed, purpose="something_else")
    with pytest.raises(ValueError, match="256 bits"):
        seal_for_session("short", TOKEN, purpose="oidc_id_token")


def _start(session: Session, now: dt.datetime) -> str:
    active = start_session(
        session, user=None, subject="oidc:staff-0001", name="oidc:staff-0001",
        role="social_worker", agency="social_care", method="oidc", id_token=TOKEN, now=now,
    )  # fmt: skip
    return active.secret


def _sealed(session: Session, secret: str) -> bytes | None:
    row = session.get(WebSession, secret_hash(secret))
    assert row is not None
    return None if row.id_token_sealed is None else bytes(row.id_token_sealed)


def test_signing_out_hands_the_token_back_once_and_keeps_none(session: Session) -> None:
    now = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    secret = _start(session, now)
    sealed = _sealed(session, secret)
    assert sealed is not None and TOKEN.encode() not in sealed
    assert end_session(session, secret, now=now) == TOKEN
    assert _sealed(session, secret) is None
    assert end_session(session, secret, now=now) is None  # already ended


def test_a_session_ended_by_idleness_keeps_no_token(session: Session) -> None:
    now = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    secret = _start(session, now)
    with pytest.raises(SessionEnded):
        resume_session(session, secret, now=now + IDLE_TIMEOUT)
    row = session.get(WebSession, secret_hash(secret))
    assert row is not None and row.end_reason == "idle" and row.id_token_sealed is None
