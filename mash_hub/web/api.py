"""The versioned API under ``/api/v1``. Later routers (referrals, search, persons, audit)
join :data:`router` and take :data:`~mash_hub.web.deps.CurrentPrincipal` as a dependency."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from mash_hub.audit import AuditEvent
from mash_hub.audit import record as audit_record
from mash_hub.db.engine import Database
from mash_hub.users.service import revoke_token
from mash_hub.web import audit as audit_api
from mash_hub.web import persons, search, subject_access
from mash_hub.web import quality as quality_api
from mash_hub.web import referrals as referrals_api
from mash_hub.web import review as review_api
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import ApiProblemError, problem_doc, problem_example

# Answers any operation may give; an operation documents its own 400/422 where it has more
# to say. (FastAPI's default 422 schema is not what the hub sends, so it is replaced here.)
PROBLEMS = {
    400: problem_doc(
        "The request could not be understood (e.g. a body that is not JSON)",
        problem_example(400, "the request could not be understood"),
    ),
    401: problem_doc(
        "Missing or invalid credentials",
        problem_example(401, "missing or invalid credentials", "unauthenticated"),
    ),
    413: problem_doc(
        "The request body is larger than MASH_MAX_BODY_BYTES",
        problem_example(413, "the request body is too large"),
    ),
    422: problem_doc(
        "A parameter or body field is invalid; `errors` names each one (never its value)",
        problem_example(
            422,
            "the request is not valid",
            "validation_failed",
            errors=[
                {
                    "loc": ["path", "person_id"],
                    "msg": "Input should be a valid UUID",
                    "type": "uuid_parsing",
                }
            ],
        ),
    ),
    429: problem_doc(
        "Too many requests (see Retry-After)",
        problem_example(429, "too many requests; retry later", "rate_limited"),
    ),
    503: problem_doc(
        "The database is unavailable (down, restarting or out of connections; code "
        "`database_unavailable`) or a statement ran past the request limit and was cancelled "
        "(code `database_timeout`, nothing written): retry after Retry-After seconds; a "
        "referral retried with the same Idempotency-Key is never taken twice",
        problem_example(503, "the database is unavailable; retry later", "database_unavailable"),
    ),
}

router = APIRouter(prefix="/api/v1", responses=PROBLEMS)  # type: ignore[arg-type]
router.include_router(search.router)  # before persons: /persons/{id} must not shadow it
router.include_router(persons.router)
router.include_router(subject_access.router)  # /persons/{id}/subject-access: no clash
router.include_router(audit_api.router)
router.include_router(referrals_api.router)
router.include_router(referrals_api.information_router)
router.include_router(review_api.router)
router.include_router(quality_api.router)


class Me(BaseModel):
    id: str
    kind: Literal["staff", "partner"]
    role: str
    agency: str
    method: Literal["hub_token", "oidc", "api_key"]


@router.get("/me", tags=["auth"], summary="Who the credentials belong to")
def me(principal: CurrentPrincipal) -> Me:
    """The authenticated principal: its id, kind (staff or partner), role, agency and method."""
    return Me(
        id=principal.id,
        kind=principal.kind,
        role=principal.role,
        agency=principal.agency,
        method=principal.method,
    )


@router.post(
    "/auth/sign-out",
    tags=["auth"],
    summary="Sign out: refuse this hub token from now on",
    status_code=204,
    responses={
        409: problem_doc(
            "The credential is not a hub-issued token",
            problem_example(409, "only hub-issued tokens are signed out here", "not_a_hub_token"),
        )
    },
)
def sign_out(request: Request, principal: CurrentPrincipal) -> Response:
    """Revokes the presented hub token by its `jti` until it would have expired (audited as
    `auth.signed_out`). API keys are revoked with `mash-hub clients revoke`; OIDC sessions
    end at the identity provider."""
    if principal.token_id is None or principal.token_expires is None:
        raise ApiProblemError(
            409,
            "only hub-issued tokens are signed out here; revoke an API key with "
            "`mash-hub clients revoke`, end an OIDC session at the identity provider",
            code="not_a_hub_token",
        )
    database: Database = request.app.state.database
    with database.transaction() as session:
        user_id = uuid.UUID(principal.id.removeprefix("user:"))
        revoke_token(
            session, principal.token_id, expires_at=principal.token_expires, user_id=user_id
        )
        audit_record(
            session,
            AuditEvent(
                principal.id,
                "auth.signed_out",
                "user",
                str(user_id),
                {"jti": principal.token_id, "role": principal.role, "agency": principal.agency},
            ),
        )
    return Response(status_code=204)
