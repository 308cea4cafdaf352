"""The outermost layer of every HTTP exchange: request id, security headers, body limit, 500s.

A pure ASGI middleware (no ``BaseHTTPMiddleware``), so it streams bodies untouched and sees
every response, including the problem documents it writes itself:

* ``X-Request-ID``: an incoming id is kept when it is short and plain (letters, digits,
  ``.``, ``_``, ``-``, ``:``; at most 64), otherwise a new one is made; it is on every
  response, in ``request.state.request_id`` and in problem bodies;
* security headers on every response, and a ``Content-Security-Policy`` that allows nothing
  on every response that is not HTML (pages set their own strict policy: ``web/pages``);
* the body limit: a ``Content-Length`` above the limit is refused before the app runs; a
  streamed (chunked) body is counted as it is read and the app's answer replaced by 413;
* an exception nothing handled becomes a 500 problem: the traceback goes to the log (frames
  only, not the exception's message, which may quote data), the client gets the request id;
* except when the database is unavailable (server down, connection lost, pool exhausted):
  that is 503 ``database_unavailable`` with ``Retry-After``, and the log gets one short line
  (no traceback) at most every few seconds, counting the requests answered so meanwhile;
* each SQL statement of the request's units of work may run for at most the configured
  time (``MASH_REQUEST_STATEMENT_TIMEOUT_SECONDS``); one PostgreSQL cancels is answered 503
  ``database_timeout`` with ``Retry-After``, and its transaction has rolled back.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mash_hub.db.engine import (
    is_database_unavailable,
    is_statement_timeout,
    statement_time_limit,
)
from mash_hub.observability.logs import request_id_var
from mash_hub.web.errors import PROBLEM_JSON, problem_body

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
JSON_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER.encode():
            text: str = value.decode("latin-1")
            if _REQUEST_ID_RE.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class _BodyTooLargeError(Exception):
    pass


# What a client is told to wait before retrying while the database is unavailable: about the
# time the embedded server's supervisor takes to notice a dead server and start it again.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_DETAIL = "the database is unavailable; retry later"
TIMEOUT_DETAIL = "the request took too long in the database and was cancelled; retry later"


class OutageLog:
    """One log line per ``interval`` seconds while the database is unavailable, not one
    traceback per request: an outage under load was 15,000 log lines of repeated frames."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -interval
        self._unlogged = 0

    def answered_503(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._unlogged += 1
            if now - self._last < self.interval:
                return
            count, self._unlogged, self._last = self._unlogged, 0, now
        log.warning(
            "database unavailable (%s): answered 503 to %d request(s) since the last message",
            type(exc).__name__,
            count,
        )


class ApiMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, statement_timeout_seconds: float = 0
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.statement_timeout_seconds = statement_timeout_seconds
        self.outage_log = OutageLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        request_id_var.set(request_id)  # for the log lines written while answering
        started = False
        too_large = False
        received = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to a truncated body is replaced by 413 below
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = _with_security_headers(
                    list(message.get("headers", ())), request_id
                )
            await send(message)

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLargeError
            return message

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _send_problem(send, 413, "the request body is too large", request_id)
            return
        try:
            with statement_time_limit(self.statement_timeout_seconds):
                await self.app(scope, counting_receive, send_with_headers)
        except _BodyTooLargeError:
            pass
        except Exception as exc:
            if not too_large and not started and is_statement_timeout(exc):
                log.warning(
                    "a statement of %s %s was cancelled after %s s (request %s)",
                    scope.get("method"),
                    scope.get("path"),
                    self.statement_timeout_seconds,
                    request_id,
                )
                await _send_problem(
                    send,
                    503,
                    TIMEOUT_DETAIL,
                    request_id,
                    code="database_timeout",
                    headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
                )
                return
            if not too_large and not started and is_database_unavailable(exc):
                self.outage_log.answered_503(exc)
                await _send_problem(
                    send,
                    503,
                    UNAVAILABLE_DETAIL,
                    request_id,
                    code="database_unavailable",
                    headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
                )
                return
            if not too_large:  # else: the app reacting to the body it could not read
                log.error(
                    "unhandled %s answering %s %s (request %s)\n%s",
                    type(exc).__name__,
                    scope.get("method"),
                    scope.get("path"),
                    request_id,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )
                if started:
                    raise
                await _send_problem(send, 500, "an unexpected error occurred", request_id)
                return
        if too_large and not started:
            await _send_problem(send, 413, "the request body is too large", request_id)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _with_security_headers(
    headers: list[tuple[bytes, bytes]], request_id: str
) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
    out = [(n, v) for n, v in headers if n.lower() != REQUEST_ID_HEADER.encode()]
    out.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
    out.extend((name, value) for name, value in SECURITY_HEADERS if name not in present)
    # HTML (the pages, the docs) sets its own policy; everything else gets nothing.
    if not content_type.startswith(b"text/html") and b"content-security-policy" not in present:
        out.append((b"content-security-policy", JSON_CSP))
    return out


async def _send_problem(
    send: Send,
    status: int,
    detail: str,
    request_id: str,
    *,
    code: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(problem_body(status, detail, request_id=request_id, code=code)).encode()
    headers = _with_security_headers(
        [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
        request_id,
    )
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
