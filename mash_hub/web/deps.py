"""Request dependencies: the authenticated principal, with rate limits and failure auditing.

* A request whose credentials are missing or refused takes a token from the stricter
  per-IP failure bucket (``MASH_AUTH_FAILURES_PER_MINUTE``): while tokens remain it is
  audited (``auth.failed``: reason code, credential kind, client IP, request id; never any
  part of the credential) and answered 401; once the bucket is empty it is answered 429
  and not audited, so a flood cannot flood the audit log. Valid credentials are never
  refused because of someone else's failures from the same (possibly shared, NAT) address.
* An authenticated request takes a token from its principal's bucket
  (``MASH_RATE_LIMIT_PER_MINUTE``), keyed by principal rather than IP because every member
  of staff of one agency may share one egress address. The take is made in the
  authentication transaction (one connection and one commit for both), which commits before
  the endpoint's own unit of work begins: a request refused, or whose work then rolls back,
  has still spent its token.

Successful authentication is not audited per request (the access it leads to is).
The client IP is the socket peer; behind a reverse proxy run uvicorn with
``--proxy-headers --forwarded-allow-ips`` naming the proxy so the peer is the real client.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit
from mash_hub.db.engine import Database
from mash_hub.web.auth import Authenticator, AuthFailure, Principal
from mash_hub.web.errors import ApiProblemError
from mash_hub.web.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Declared for the OpenAPI document only; the Authenticator reads the headers itself.
_bearer = HTTPBearer(auto_error=False, description="A hub token, an OIDC token or an API key.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A partner API key.")


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _too_many(retry_after: int) -> ApiProblemError:
    return ApiProblemError(
        429,
        "too many requests; retry later",
        code="rate_limited",
        headers={"Retry-After": str(retry_after)},
    )


def current_principal(
    request: Request,
    _b: Annotated[object, Depends(_bearer)] = None,
    _k: Annotated[object, Depends(_api_key)] = None,
) -> Principal:
    state = request.app.state
    authenticator: Authenticator = state.authenticator
    database: Database = state.database
    limiter: RateLimiter = state.rate_limiter
    try:
        with database.transaction() as session:
            principal = authenticator.authenticate(session, request.headers)
            # Last, so the bucket's row is locked only until the commit just after.
            wait = limiter.take(principal.id, session)
    except AuthFailure as failure:
        ip = client_ip(request)
        failures: RateLimiter = state.failure_limiter
        wait = failures.take(ip)
        if wait is not None:
            log.warning("authentication failures from %s over the limit", ip)
            raise _too_many(wait) from None
        with database.transaction() as session:
            audit(
                session,
                AuditEvent(
                    "anonymous",
                    "auth.failed",
                    details={
                        "reason": failure.reason,
                        "credential": failure.credential,
                        "ip": ip,
                        "request_id": getattr(request.state, "request_id", None),
                    },
                ),
            )
        raise ApiProblemError(
            401,
            "missing or invalid credentials",
            code="unauthenticated",
            headers={"WWW-Authenticate": 'Bearer realm="mash-hub"'},
        ) from None
    if wait is not None:
        raise _too_many(wait)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
