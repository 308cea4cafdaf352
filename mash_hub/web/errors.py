"""Every error the API answers is an RFC 9457 problem document (``application/problem+json``).

Problem bodies carry a status, a title, a short fixed ``detail`` and, where useful, a ``code``
for clients and the ``request_id`` to quote to an operator. They never carry a stack trace,
an exception message from a library, or a value from the request: validation errors list the
location, message and type of each fault, without the offending input.
"""

from __future__ import annotations

import http
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
EXAMPLE_REQUEST_ID = "3f0c2a9e6b1d4c57"


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``): the OpenAPI schema of
    every error answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    code: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Field-level faults: loc, msg, type (never the input)."
    )


def problem_example(
    status: int, detail: str, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An example problem body for the OpenAPI description."""
    example: dict[str, Any] = {
        "type": "about:blank",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if code is not None:
        example["code"] = code
    return {**example, "request_id": EXAMPLE_REQUEST_ID, **extra}


def problem_doc(description: str, example: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI response entry: a problem document with its schema and an example."""
    content = {"schema": Problem.model_json_schema(), "example": example}
    return {"description": description, "content": {PROBLEM_JSON: content}}


class ApiProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = dict(headers or {})


def title_of(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    detail: str | None = None,
    *,
    request_id: str | None = None,
    code: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title_of(status), "status": status}
    if detail:
        body["detail"] = detail
    if code:
        body["code"] = code
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return body


def problem_response(
    request: Request,
    status: int,
    detail: str | None = None,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(
        problem_body(status, detail, request_id=request_id, code=code, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=dict(headers) if headers else None,
    )


# Fixed wording for the framework's own errors, so no library message reaches a client.
_HTTP_DETAILS = {
    400: "the request could not be understood",
    401: "missing or invalid credentials",
    403: "not allowed",
    404: "no such resource",
    405: "method not allowed on this resource",
    413: "the request body is too large",
    415: "unsupported media type",
}

# Response headers a framework error may carry through (e.g. Allow on 405).
_PASS_HEADERS = frozenset({"allow", "www-authenticate", "retry-after"})


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in _PASS_HEADERS}
    return problem_response(
        request, exc.status_code, _HTTP_DETAILS.get(exc.status_code), headers=headers
    )


# How an error names a field the caller made up (the name itself may be personal data).
UNKNOWN_FIELD = "<unknown>"


def _location(error: Mapping[str, Any]) -> list[int | str]:
    """Where a fault is, without echoing a name the caller chose: an undeclared field
    (``extra_forbidden``) is named ``<unknown>``."""
    loc: list[int | str] = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
    if error.get("type") == "extra_forbidden" and loc:
        loc[-1] = UNKNOWN_FIELD
    return loc


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": _location(error),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    return problem_response(
        request, 422, "the request is not valid", code="validation_failed", errors=errors
    )


async def _on_api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblemError)
    return problem_response(request, exc.status, exc.detail, code=exc.code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Problem documents for HTTP errors, validation errors and :class:`ApiProblemError`.

    Unhandled exceptions become a 500 problem in :class:`~mash_hub.web.middleware.ApiMiddleware`
    (so they too carry the request id and security headers).
    """
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ApiProblemError, _on_api_problem)
