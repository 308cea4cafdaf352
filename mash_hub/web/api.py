"""The versioned API under ``/api/v1``. Later routers (referrals, search, persons, audit)
join :data:`router` and take :data:`~mash_hub.web.deps.CurrentPrincipal` as a dependency."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from mash_hub.web import persons
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import PROBLEM_JSON

PROBLEMS = {
    status: {"description": description, "content": {PROBLEM_JSON: {}}}
    for status, description in (
        (401, "Missing or invalid credentials"),
        (429, "Too many requests (see Retry-After)"),
    )
}

router = APIRouter(prefix="/api/v1", responses=PROBLEMS)  # type: ignore[arg-type]
router.include_router(persons.router)


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
