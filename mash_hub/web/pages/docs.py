"""The interactive API documentation at ``/docs``, from local files (works offline).

Swagger UI 5 (it reads OpenAPI 3.1) is in ``static/swagger-ui`` (``.ci/refresh-govuk-assets``
takes it from npm's ``swagger-ui-dist``) and is started by ``static/js/docs.js``,
so the page needs no CDN and no inline script. Swagger UI sets style attributes as it
renders, so this one page allows inline styles (never inline script).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mash_hub.web.pages.templating import environment

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    html = environment.get_template("docs.html").render(
        title=request.app.title, openapi_url=request.app.openapi_url or "/openapi.json"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CSP})
