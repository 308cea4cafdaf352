"""Pages for people: server-rendered HTML in the GOV.UK Design System, beside the API.

``install_pages(app)`` adds them to the FastAPI app. The pieces other pages build on:

* ``templating.py``: the Jinja2 environment (our ``templates/`` plus the
  ``govuk-frontend-jinja`` macros) and ``render()``, which sets the strict CSP and
  ``Cache-Control: no-store`` on every page; ``templates/base.html`` is the layout;
* ``session.py``: the signed-in member of staff (``SignedIn`` / ``MaybeSignedIn``
  dependencies over the server-side sessions of :mod:`mash_hub.users.sessions`), the form
  reader and the CSRF check every POST makes (``FormData`` + ``check_csrf``);
* ``static/``: the compiled GOV.UK Frontend assets and Swagger UI
  (``.ci/refresh-govuk-assets``), our own JavaScript (no inline script anywhere) and CSS;
* one router per concern: ``signin.py``, ``home.py``, ``persons.py`` (officers),
  ``referrals.py`` (partners' referral form and their referrals; the MASH triage queue and
  referral page), ``review.py`` (linkage reviewers), ``audit.py`` (auditors),
  ``subject_access.py`` (information governance), ``docs.py``.

Pages call the same services as the API (search, person view, links, referrals, review,
audit, subject access); no policy, audit or masking logic lives here. Every task works with
JavaScript turned off.

Adding a page (auditor, partner, reviewer, ...):

1. a router module here with ``APIRouter(include_in_schema=False)``, included below;
2. routes take ``page: SignedIn`` (or ``MaybeSignedIn``) and answer
   ``render(request, "x.html", {"page": page, ...})``; a template extends ``base.html`` and
   fills ``title`` and ``content`` (``width`` ``full`` for wide tables); add a navigation
   item in ``base.html`` when the role may use it;
3. every form posts ``<input type="hidden" name="csrf_token" value="{{ page.csrf_token }}">``
   and its route takes ``form: FormData`` and calls ``check_csrf(request, page, form)`` first;
4. errors: put ``errors`` (``FormErrors.summary()``) and ``field_errors`` in the context;
   the layout shows the GOV.UK error summary, and macros take ``errorMessage``;
5. personal data only in answers to POSTs or behind ids, never in URLs; a browser test in
   ``tests/browser`` visits the page through ``check()`` (screenshot + axe-core).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from mash_hub.web.pages import docs
from mash_hub.web.pages.templating import STATIC_DIR


def install_pages(app: FastAPI) -> None:
    """Mount the static files and the page routers (call once, from ``create_app``)."""
    from mash_hub.web.pages import (  # noqa: PLC0415
        audit,
        home,
        persons,
        referrals,
        review,
        session,
        signin,
        subject_access,
    )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    session.install_handlers(app)
    app.include_router(docs.router)
    app.include_router(signin.router)
    app.include_router(home.router)
    app.include_router(persons.router)
    app.include_router(audit.router)
    app.include_router(referrals.router)
    app.include_router(review.router)
    app.include_router(subject_access.router)
