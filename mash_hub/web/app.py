"""FastAPI application factory.

The app is handed an open :class:`~mash_hub.db.engine.Database` by whoever runs it (``serve`` or
a test), so the process that starts the embedded server is also the one that stops it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from mash_hub import __version__
from mash_hub.crypto.tokens import TokenKey
from mash_hub.db import migrate
from mash_hub.db.engine import Database, open_database
from mash_hub.settings import Settings, get_settings
from mash_hub.web import api
from mash_hub.web import metrics as metrics_api
from mash_hub.web.auth import Authenticator
from mash_hub.web.errors import PROBLEM_JSON, install_error_handlers
from mash_hub.web.metrics import MetricsMiddleware
from mash_hub.web.middleware import RETRY_AFTER_SECONDS, ApiMiddleware
from mash_hub.web.oidc_signin import OidcSignIn
from mash_hub.web.pages import install_pages
from mash_hub.web.ratelimit import RateLimiter


def create_app(
    database: Database, *, settings: Settings | None = None, token_key: TokenKey | None = None
) -> FastAPI:
    """The app; ``settings`` default to the process's, ``token_key`` is loaded when needed."""
    cfg = settings or get_settings()
    app = FastAPI(
        title="MASH Hub",
        version=__version__,
        summary="Shared, encrypted, audited person index for a Multi-Agency Safeguarding Hub.",
        docs_url=None,  # served from local files by the pages (mash_hub/web/pages/docs.py)
        redoc_url=None,
    )
    app.state.database = database
    authenticator = Authenticator(cfg, token_key)
    app.state.authenticator = authenticator
    app.state.oidc_sign_in = (
        OidcSignIn(cfg, authenticator.oidc)
        if cfg.oidc_sign_in_enabled and authenticator.oidc is not None
        else None
    )
    app.state.rate_limiter = RateLimiter(database, "api", cfg.rate_limit_per_minute)
    app.state.failure_limiter = RateLimiter(database, "auth_failures", cfg.auth_failures_per_minute)
    app.state.metrics_token = (
        cfg.metrics_token.get_secret_value() if cfg.metrics_token is not None else None
    )
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, database=database)  # inner: sees the matched route
    app.add_middleware(
        ApiMiddleware,
        max_body_bytes=cfg.max_body_bytes,
        statement_timeout_seconds=cfg.request_statement_timeout_seconds,
    )
    app.include_router(api.router)
    app.include_router(metrics_api.router)
    install_pages(app)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    def healthz() -> dict[str, str]:
        """Liveness: answers while the process runs, whatever the database does."""
        return {"status": "alive"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The database is reachable and fully migrated",
        responses={503: {"description": "Not ready", "content": {PROBLEM_JSON: {}}}},
    )
    def readyz(request: Request) -> Any:
        """Readiness: a load balancer should send traffic only when this answers 200."""
        db: Database = request.app.state.database
        head = migrate.head_revision()
        try:
            with db.engine.connect() as connection:
                current = migrate.current_revision(connection)
        except SQLAlchemyError:
            return _not_ready("the database does not answer", database="unreachable")
        if current != head:
            return _not_ready(
                "the database schema is not at the latest migration; run `mash-hub db upgrade`",
                database="reachable",
                migration=current,
                expected=head,
            )
        return {"status": "ready", "database": "reachable", "migration": current}

    return app


def worker_app() -> FastAPI:
    """The app of one ``serve --workers N`` process (uvicorn's factory, in a spawned child).

    Each worker opens its own pool (and registers with the embedded server, which the parent
    keeps running) and closes it when uvicorn shuts the worker down; the engine's disposal
    chains what the worker wrote. Policy, model and key caches are per process.
    """
    database = open_database(get_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            database.close()

    app = create_app(database)
    app.router.lifespan_context = lifespan
    return app


def _not_ready(detail: str, **extra: str | None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": "Service not ready",
        "status": 503,
        "detail": detail,
        **extra,
    }
    return JSONResponse(
        body,
        status_code=503,
        media_type=PROBLEM_JSON,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
