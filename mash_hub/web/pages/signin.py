"""Signing in with a one-time link or through the organisation's OIDC provider, and out.

``GET /sign-in?token=…`` only shows a button: a link preview or a mail scanner that fetches
the link does not use it up. ``POST /sign-in`` uses the link once and starts the session.
The link's secret is in the query string (the hub's access log drops query strings) and in
the form body, never in a path. Failed sign-ins are audited (``auth.failed``, reason code and
client address only) within the per-address failure limit the API uses.

With OIDC configured (``MASH_OIDC_CLIENT_ID``), ``GET /sign-in`` offers "Sign in with
<provider>": ``GET /sign-in/oidc`` starts an attempt (:mod:`mash_hub.web.oidc_signin`; the
``mash_oidc`` cookie, ``SameSite=Lax`` so the provider's redirect back carries it, limited to
``/sign-in/oidc`` and 10 minutes) and ``GET /sign-in/oidc/callback`` finishes it: the
provider's person gets their ``users`` row (:mod:`mash_hub.users.oidc`) and a session from
``start_session``, as a link does. Each refusal is audited (``auth.failed``, credential
``oidc_sign_in``, reason code). The callback answers with a page that moves on to the start
page itself, so the ``SameSite=Strict`` session cookie is sent by a same-site navigation.

Signing out ends the hub's session (``end_session``). A session that came from OIDC is also
ended at the provider when its discovery document names an ``end_session_endpoint``
(RP-Initiated Logout): the answer is a page whose form posts the session's ID token
(``id_token_hint``, kept sealed until now), our client id and ``/signed-out`` as
``post_logout_redirect_uri`` to the provider, submitted by ``autosubmit.js`` (or by its
button without JavaScript); that page's CSP allows forms to post to the provider's origin
alone. Otherwise, as for links, the browser goes to ``/signed-out``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.db.engine import Database
from mash_hub.users.oidc import OidcUserDisabledError, sign_in_oidc_user
from mash_hub.users.sessions import SignInRefused, end_session, redeem_login_link
from mash_hub.web.auth import AuthFailure
from mash_hub.web.deps import client_ip
from mash_hub.web.oidc_signin import ATTEMPT_LIFETIME_SECONDS, Attempt, LogoutForm, OidcSignIn
from mash_hub.web.pages.session import (
    FormData,
    SignedIn,
    check_csrf,
    clear_session_cookie,
    oidc_provider_name,
    refuse_cross_site,
    set_session_cookie,
)
from mash_hub.web.pages.templating import PAGE_CSP, render

router = APIRouter(include_in_schema=False)

_REFUSED_LINES = [
    "The link has expired (links last 10 minutes), has already been used, or is not a "
    "sign-in link.",
    "Ask an administrator for a new sign-in link (mash-hub users login-link YOUR-NAME).",
]


OIDC_COOKIE = "mash_oidc"
_OIDC_COOKIE_PATH = "/sign-in/oidc"
_OIDC_REFUSED: dict[str, str] = {
    "unmapped_role": "Your account does not give you a role in MASH Hub. Ask your "
    "administrator to give you one.",
    "user_disabled": "Your account has been disabled.",
    "provider_unavailable": "The sign-in service could not be reached. Try again later.",
}


@router.get("/sign-in")
def sign_in_page(request: Request, token: str | None = None) -> Response:
    if not token:
        provider = oidc_provider_name(request)
        return render(
            request,
            "sign_in_start.html",
            {"lines": [], "oidc_provider": provider},
            status_code=400 if provider is None else 200,
        )
    return render(request, "sign_in.html", {"token": token})


def _oidc_refused(request: Request, reason: str) -> Response:
    _audit_failure(request, reason, credential="oidc_sign_in")
    line = _OIDC_REFUSED.get(reason, "The sign-in could not be completed. Try again.")
    response = render(
        request,
        "sign_in_start.html",
        {"lines": [line], "oidc_provider": oidc_provider_name(request)},
        status_code=503 if reason == "provider_unavailable" else 401,
    )
    _clear_oidc_cookie(request, response)
    return response


def _clear_oidc_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        OIDC_COOKIE, path=_OIDC_COOKIE_PATH, httponly=True, samesite="lax",
        secure=request.url.scheme == "https",
    )  # fmt: skip


@router.get("/sign-in/oidc")
def oidc_begin(request: Request) -> Response:
    oidc: OidcSignIn | None = request.app.state.oidc_sign_in
    if oidc is None:
        return render(request, "sign_in_start.html", {"lines": []}, status_code=404)
    try:
        attempt, url = oidc.begin()
    except AuthFailure as failure:
        return _oidc_refused(request, failure.reason)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        OIDC_COOKIE, attempt.cookie, max_age=ATTEMPT_LIFETIME_SECONDS, path=_OIDC_COOKIE_PATH,
        httponly=True, samesite="lax", secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


@router.get("/sign-in/oidc/callback")
def oidc_callback(
    request: Request,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    oidc: OidcSignIn | None = request.app.state.oidc_sign_in
    if oidc is None:
        return render(request, "sign_in_start.html", {"lines": []}, status_code=404)
    attempt = Attempt.from_cookie(request.cookies.get(OIDC_COOKIE))
    try:
        vouched = oidc.finish(attempt, state=state, code=code, error=error)
    except AuthFailure as failure:
        return _oidc_refused(request, failure.reason)
    database: Database = request.app.state.database
    try:
        with database.transaction() as session:
            active = sign_in_oidc_user(
                session, issuer=oidc.verifier.issuer, subject=vouched.staff.subject,
                role=vouched.staff.role, agency=vouched.staff.agency, id_token=vouched.id_token,
            )  # fmt: skip
    except OidcUserDisabledError:
        return _oidc_refused(request, "user_disabled")
    response = render(request, "signed_in.html", {})
    set_session_cookie(request, response, active.secret)
    _clear_oidc_cookie(request, response)
    return response


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


def _audit_failure(request: Request, reason: str, credential: str = "login_link") -> None:
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
                    "credential": credential,
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
        id_token = end_session(session, page.active.secret)
    oidc: OidcSignIn | None = request.app.state.oidc_sign_in
    logout = None
    if page.active.method == "oidc" and oidc is not None:
        logout = oidc.logout_form(id_token)
    response: Response
    if logout is None:
        response = RedirectResponse("/signed-out", status_code=303)
    else:
        response = _provider_sign_out(request, logout, oidc_provider_name(request))
    clear_session_cookie(request, response)
    return response


def _provider_sign_out(request: Request, form: LogoutForm, provider: str | None) -> Response:
    """The page that posts the sign-out to the provider. A redirect would not do: browsers
    apply the signed-in page's ``form-action 'self'`` to where the sign-out form's answer
    redirects, and a GET would put the ID token in a URL."""
    csp = PAGE_CSP.replace("form-action 'self'", f"form-action {form.origin}")
    return render(
        request,
        "signing_out.html",
        {"form": form, "provider": provider},
        headers={"Content-Security-Policy": csp},
    )


@router.get("/signed-out")
def signed_out(request: Request) -> Response:
    provider = oidc_provider_name(request)
    return render(
        request,
        "sign_in_start.html",
        {
            "heading": "You have signed out",
            "lines": [] if provider else ["To sign in again, use a new sign-in link."],
            "oidc_provider": provider,
        },
    )
