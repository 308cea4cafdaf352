"""Who is signed in to the pages, and the checks every page request makes.

* The cookie ``mash_session`` holds the session's secret id (``HttpOnly``,
  ``SameSite=Strict``, ``Path=/``, and ``Secure`` when the request came over TLS); the
  session itself lives in PostgreSQL (:mod:`mash_hub.users.sessions`).
* ``SignedIn`` is the dependency of every page that needs a member of staff: it resumes the
  session (idle 15 minutes, absolute 8 hours, disabled users, each ending it and audited),
  takes a token from the principal's rate-limit bucket, and answers with the sign-in page
  (HTML, not a JSON problem) when there is no live session.
* ``FormData`` reads a posted form; ``check_csrf`` refuses a POST whose ``csrf_token`` is
  not the session's, or whose ``Origin`` is another site.

Other pages (auditor, partner, reviewer) use the same three pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from mash_hub.audit.access import AUDIT_READ
from mash_hub.authz.policy import PolicyNotPublishedError
from mash_hub.casework.review import may_review as may_review_linkage
from mash_hub.casework.subject_access import subject_access_masks
from mash_hub.db.engine import Database
from mash_hub.referrals.requests import RESPOND
from mash_hub.referrals.service import SUBMIT, TRIAGE
from mash_hub.users.sessions import (
    ActiveSession,
    SessionEnded,
    csrf_matches,
    resume_session,
)
from mash_hub.web.auth import Principal
from mash_hub.web.pages.templating import render
from mash_hub.web.persons import services

COOKIE = "mash_session"
_ENDED_MESSAGES = {
    "idle": "You were signed out because you had not done anything for 15 minutes.",
    "expired": "You were signed out because you had been signed in for 8 hours.",
    "user_disabled": "Your account has been disabled.",
}


@dataclass(frozen=True)
class PageSession:
    """The signed-in member of staff as templates and page routes see them."""

    active: ActiveSession
    may_search: bool
    may_audit: bool = False
    may_submit: bool = False
    may_triage: bool = False
    may_review: bool = False
    may_subject_access: bool = False
    may_answer: bool = False  # information requests addressed to the caller's agency

    @property
    def principal(self) -> Principal:
        a = self.active
        return Principal(a.subject, "staff", a.role, a.agency, "session")

    @property
    def name(self) -> str:
        return self.active.name

    @property
    def role(self) -> str:
        return self.active.role

    @property
    def agency(self) -> str:
        return self.active.agency

    @property
    def csrf_token(self) -> str:
        return self.active.csrf_token


class SignInRequiredError(Exception):
    """No live session: answered with the sign-in page (handler below)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "signed_out")
        self.reason = reason


class FormRefusedError(Exception):
    """A POST without a valid CSRF token, or from another site (answered 403)."""


def oidc_provider_name(request: Request) -> str | None:
    """The provider's name when the pages offer OIDC sign-in, else None."""
    oidc = request.app.state.oidc_sign_in
    return None if oidc is None else str(oidc.provider_name)


def set_session_cookie(request: Request, response: Response, secret: str) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )


def _resume(request: Request) -> PageSession | None:
    secret = request.cookies.get(COOKIE)
    if not secret:
        return None
    database: Database = request.app.state.database
    ended: str | None = None
    with database.transaction() as session:
        try:
            active = resume_session(session, secret)
        except SessionEnded as end:
            ended = end.reason  # the ending (and its audit entry) commits
        else:
            _, _, policy = services(request)
            try:
                decisions = policy.for_session(session)
                caller = active.caller()
                may_search = decisions.may_view_persons(caller)
                may_audit = decisions.allows(caller, AUDIT_READ)
                may_submit = decisions.allows(caller, SUBMIT)
                may_triage = decisions.allows(caller, TRIAGE)
                may_review = may_review_linkage(decisions, caller)
                may_sar = bool(subject_access_masks(decisions, caller))
                may_answer = decisions.allows(caller, RESPOND)
            except PolicyNotPublishedError:
                may_search = may_audit = may_submit = may_triage = False
                may_review = may_sar = may_answer = False
    if ended is not None:
        raise SignInRequiredError(ended)
    wait = request.app.state.rate_limiter.take(active.subject)
    if wait is not None:
        raise SignInRequiredError("rate_limited")
    return PageSession(
        active,
        may_search,
        may_audit=may_audit,
        may_submit=may_submit,
        may_triage=may_triage,
        may_review=may_review,
        may_subject_access=may_sar,
        may_answer=may_answer,
    )


def signed_in(request: Request) -> PageSession:
    page = _resume(request)
    if page is None:
        raise SignInRequiredError
    return page


def maybe_signed_in(request: Request) -> PageSession | None:
    try:
        return _resume(request)
    except SignInRequiredError:
        return None


SignedIn = Annotated[PageSession, Depends(signed_in)]
MaybeSignedIn = Annotated[PageSession | None, Depends(maybe_signed_in)]


async def read_form(request: Request) -> dict[str, str]:
    """The posted form's text fields (the last value of a repeated name)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormData = Annotated[dict[str, str], Depends(read_form)]


async def read_form_lists(request: Request) -> dict[str, list[str]]:
    """Every text value of each posted name (checkboxes post one name many times)."""
    form = await request.form()
    values: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            values.setdefault(key, []).append(value)
    return values


FormLists = Annotated[dict[str, list[str]], Depends(read_form_lists)]


def check_csrf(request: Request, page: PageSession, form: dict[str, str]) -> None:
    """Refuse a form from another site or without this session's CSRF token."""
    refuse_cross_site(request)
    if not csrf_matches(page.active.secret, form.get("csrf_token")):
        raise FormRefusedError


def refuse_cross_site(request: Request) -> None:
    """Refuse a POST another site's page made (``Sec-Fetch-Site``, else ``Origin``)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in {"same-origin", "none"}:
        raise FormRefusedError
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise FormRefusedError


def install_handlers(app: FastAPI) -> None:
    """Pages answer a missing session and a refused form with pages, not JSON."""

    @app.exception_handler(SignInRequiredError)
    def _sign_in_required(request: Request, exc: SignInRequiredError) -> Response:
        lines = [_ENDED_MESSAGES.get(exc.reason or "", "You need to sign in to use this page.")]
        if exc.reason == "rate_limited":
            lines = ["Too many requests. Wait a minute and try again."]
        response = render(
            request,
            "sign_in_start.html",
            {"lines": lines, "oidc_provider": oidc_provider_name(request)},
            status_code=429 if exc.reason == "rate_limited" else 401,
        )
        if exc.reason != "rate_limited":
            clear_session_cookie(request, response)
        return response

    @app.exception_handler(FormRefusedError)
    def _form_refused(request: Request, _exc: FormRefusedError) -> Response:
        return render(
            request,
            "error.html",
            {
                "heading": "This form could not be accepted",
                "lines": [
                    "The form had expired or did not come from this service. "
                    "Go back, reload the page and try again."
                ],
            },
            status_code=403,
        )
