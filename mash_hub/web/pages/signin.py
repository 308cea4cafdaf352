"""Signing in with a one-time link, and signing out.

``GET /sign-in?token=…`` only shows a button: a link preview or a mail scanner that fetches
the link does not use it up. ``POST /sign-in`` uses the link once and starts the session.
The link's secret is in the query string (the hub's access log drops query strings) and in
the form body, never in a path. Failed sign-ins are audited (``auth.failed``, reason code and
client address only) within the per-address failure limit the API uses.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.db.engine import Database
from mash_hub.users.sessions import SignInRefused, end_session, redeem_login_link
from mash_hub.web.deps import client_ip
from mash_hub.web.pages.session import (
    FormData,
    SignedIn,
    check_csrf,
    clear_session_cookie,
    refuse_cross_site,
    set_session_cookie,
)
from mash_hub.web.pages.templating import render

router = APIRouter(include_in_schema=False)

_REFUSED_LINES = [
    "The link has expired (links last 10 minutes), has already been used, or is not a "
    "sign-in link.",
    "Ask an administrator for a new sign-in link (mash-hub users login-link YOUR-NAME).",
]


@router.get("/sign-in")
def sign_in_page(request: Request, token: str | None = None) -> Response:
    if not token:
        return render(
            request,
            "error.html",
            {"heading": "Sign in to MASH Hub", "lines": _REFUSED_LINES[1:]},
            status_code=400,
        )
    return render(request, "sign_in.html", {"token": token})


@router.post("/sign-in")
def sign_in(request: Request, form: FormData) -> Response:
    refuse_cross_site(request)
    database: Database = request.app.state.database
    refused: str | None = None
    with database.transaction() as session:
        try:
            active = redeem_login_link(session, form.get("token", ""))
        except SignInRefused as refusal:
            refused = refusal.reason
    if refused is not None:
        _audit_failure(request, refused)
        return render(
            request,
            "error.html",
            {"heading": "This sign-in link cannot be used", "lines": _REFUSED_LINES},
            status_code=401,
        )
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, active.secret)
    return response


def _audit_failure(request: Request, reason: str) -> None:
    ip = client_ip(request)
    if request.app.state.failure_limiter.take(ip) is not None:
        return  # over the per-address limit: not audited, so a flood cannot flood the log
    database: Database = request.app.state.database
    with database.transaction() as session:
        audit(
            session,
            AuditEvent(
                "anonymous",
                "auth.failed",
                details={
                    "reason": reason,
                    "credential": "login_link",
                    "ip": ip,
                    "request_id": getattr(request.state, "request_id", None),
                },
            ),
        )


@router.post("/sign-out")
def sign_out(request: Request, page: SignedIn, form: FormData) -> Response:
    check_csrf(request, page, form)
    database: Database = request.app.state.database
    with database.transaction() as session:
        end_session(session, page.active.secret)
    response = RedirectResponse("/signed-out", status_code=303)
    clear_session_cookie(request, response)
    return response


@router.get("/signed-out")
def signed_out(request: Request) -> Response:
    return render(
        request,
        "error.html",
        {
            "heading": "You have signed out",
            "lines": ["To sign in again, use a new sign-in link."],
        },
    )
