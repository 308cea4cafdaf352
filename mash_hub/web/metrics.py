"""``/metrics`` for Prometheus, and the middleware that times every request.

The endpoint answers only a scraper presenting ``MASH_METRICS_TOKEN`` as a bearer token
(404 when no token is configured, 401 otherwise): the figures hold no personal data, but
they describe the hub's workload, which is nobody else's business.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mash_hub.db.engine import Database
from mash_hub.observability import metrics
from mash_hub.web.errors import ApiProblemError, problem_doc, problem_example
from mash_hub.web.middleware import ASGIApp, Message, Receive, Scope, Send

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer MASH_METRICS_TOKEN)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: problem_doc(
            "Missing or wrong metrics token",
            problem_example(401, "missing or invalid metrics token", "unauthenticated"),
        ),
        404: problem_doc(
            "Metrics are not enabled (no MASH_METRICS_TOKEN)",
            problem_example(404, "metrics are not enabled (set MASH_METRICS_TOKEN)"),
        ),
    },
)
def scrape(request: Request) -> Response:
    """Request latency per route, pool use, ingest, linkage, review-queue and audit-chain
    figures, key rotation progress. Needs `Authorization: Bearer <MASH_METRICS_TOKEN>`."""
    expected = request.app.state.metrics_token
    if expected is None:
        raise ApiProblemError(404, "metrics are not enabled (set MASH_METRICS_TOKEN)")
    if not metrics.token_matches(request.headers.get("authorization"), expected):
        raise ApiProblemError(
            401,
            "missing or invalid metrics token",
            code="unauthenticated",
            headers={"WWW-Authenticate": 'Bearer realm="mash-hub-metrics"'},
        )
    database: Database = request.app.state.database
    body, content_type = metrics.exposition(database.engine)
    return Response(body, media_type=content_type)


class MetricsMiddleware:
    """Times each HTTP exchange under its route template and records the pool's use."""

    def __init__(self, app: ASGIApp, *, database: Database) -> None:
        self.app = app
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            metrics.observe_request(
                scope.get("method", "?"),
                metrics.route_label(scope),
                status,
                time.perf_counter() - started,
            )
            metrics.observe_pool(self.database.engine)
