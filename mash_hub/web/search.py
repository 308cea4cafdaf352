"""Person search over HTTP: ``POST /api/v1/persons/search`` (preferred) and
``GET /api/v1/persons?...``.

Both take the same fields (``given_name``, ``family_name``, ``date_of_birth``, ``postcode``,
``nhs_number``, ``upn``, ``pnc_id``) and ``limit``, and the purpose-of-access headers of the
person view. POST is the form to use: a query string is personal data in a URL, and URLs end
up in proxy and browser logs; the hub's own server logs no query strings
(:mod:`mash_hub.cli.serve`), but it cannot speak for every proxy in between. GET exists
because the issue asked for it.

The service is :func:`~mash_hub.casework.search.search_persons`, in the request's unit of
work; refusals are caught inside the transaction so their ``authz.denied`` entry commits.
Validation problems name the field and the reason, never the value.
"""

from __future__ import annotations

import threading
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from mash_hub.authz.policy import PolicyNotPublishedError
from mash_hub.casework.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SEARCH_FIELDS,
    InvalidQueryError,
    QueryFault,
    QueryTooBroadError,
    SearchDeniedError,
    SearchResult,
    authorise_search,
    search_persons,
    standardise_query,
)
from mash_hub.casework.view import PURPOSE_REFERRAL_INVALID
from mash_hub.matching.model import LinkageModel, ModelMismatchError, model_path
from mash_hub.web.deps import CurrentPrincipal
from mash_hub.web.errors import ApiProblemError, problem_doc, problem_response
from mash_hub.web.persons import (
    H_CODE,
    H_TEXT,
    RESPONSES,
    PurposeCode,
    PurposeReferral,
    PurposeText,
    parse_purpose,
    policy_not_published,
    purpose_bad_request,
    services,
)

DENIED_DETAIL = "not allowed to search persons"
DENIED_CODE = "search_not_permitted"
PURPOSE_REFERRAL_SEARCH = (
    "the referral given as purpose of access does not exist or was decided more than 30 days ago"
)
_RID = "3f0c2a9e6b1d4c57"

SEARCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: RESPONSES[400],
    403: problem_doc(
        "The caller's role may read no identity fields (auditor, partner agency, admin), or "
        f"(code `{PURPOSE_REFERRAL_INVALID}`) the referral given as purpose does not exist or "
        "was decided more than 30 days ago; the refusal is audited",
        {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": DENIED_DETAIL,
            "code": DENIED_CODE,
            "request_id": _RID,
        },
    ),
    422: problem_doc(
        "The query is not valid (`errors` names each field and why, never its value), or "
        "matches too many records to rank (`query_too_broad`: add fields)",
        {
            "type": "about:blank",
            "title": "Unprocessable Content",
            "status": 422,
            "detail": "the search query is not valid",
            "code": "query_invalid",
            "request_id": _RID,
            "errors": [
                {
                    "loc": ["body", "nhs_number"],
                    "msg": "NHS number check digit does not match",
                    "type": "nhs_number_check_digit",
                }
            ],
        },
    ),
    503: problem_doc(
        "No access policy is published, or the linkage model is not available",
        {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "no access policy is published",
            "code": "policy_not_published",
            "request_id": _RID,
        },
    ),
}

router = APIRouter(prefix="/persons", tags=["search"], responses=SEARCH_RESPONSES)


# -- request and response bodies -------------------------------------------------------------

_FIELD_DOCS = {
    "given_name": ("First given name (nicknames, short forms, one wrong letter).", "Bob"),
    "family_name": ("Family name (one wrong letter and sounds-alike names are found).", "Smyth"),
    "date_of_birth": ("Day first (04/03/2012) or ISO (2012-03-04); day/month swaps are found.",
                      "2012-03-04"),
    "postcode": ("UK postcode.", "LS6 2QT"),
    "nhs_number": ("NHS number (checked: modulus 11).", "943 476 5919"),
    "upn": ("Unique Pupil Number (check letter checked).", "B801200005001"),
    "pnc_id": ("PNC id, YY/NNNNNNNC or YYYY/NNNNNNNC (check letter checked).", "12/0000345G"),
}  # fmt: skip


class SearchBody(BaseModel):
    """A search: at least two fields, or one identifier."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"given_name": "Bob", "family_name": "Smyth", "date_of_birth": "04/03/2012"},
                {"nhs_number": "943 476 5919"},
            ]
        },
    )

    given_name: str | None = Field(None, description=_FIELD_DOCS["given_name"][0])
    family_name: str | None = Field(None, description=_FIELD_DOCS["family_name"][0])
    date_of_birth: str | None = Field(None, description=_FIELD_DOCS["date_of_birth"][0])
    postcode: str | None = Field(None, description=_FIELD_DOCS["postcode"][0])
    nhs_number: str | None = Field(None, description=_FIELD_DOCS["nhs_number"][0])
    upn: str | None = Field(None, description=_FIELD_DOCS["upn"][0])
    pnc_id: str | None = Field(None, description=_FIELD_DOCS["pnc_id"][0])
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Persons to return.")


class SearchHitOut(BaseModel):
    rank: int
    person_id: uuid.UUID
    match_weight: float = Field(description="log2 Bayes factor of the best-matching record.")
    match_probability: float = Field(description="The model's probability that it is them.")
    record_id: uuid.UUID = Field(description="The best-matching record.")
    source: str = Field(description="The agency that supplied the best-matching record.")
    groups: dict[str, dict[str, Any]] = Field(
        description="That record's identity groups the caller may see (identity, "
        "identifiers, contact), masked for its source."
    )
    explanation: str = Field(description="The kinds of agreement and their weights, no values.")
    records_matched: int = Field(description="The person's records the search found.")


class SearchOut(BaseModel):
    search_id: uuid.UUID
    policy_version: int | None
    purpose: dict[str, str] = Field(description="The reason code or referral reference.")
    audit_seq: int = Field(description="The `person.search` audit entry of this search.")
    candidates: int = Field(description="Candidate records ranked.")
    count: int
    limit: int
    results: list[SearchHitOut] = Field(description="Best match first.")


# -- the linkage model (loaded once per app) --------------------------------------------------

_model_lock = threading.Lock()


def linkage_model(request: Request) -> LinkageModel:
    """The app's linkage model, loaded once (tests may set ``app.state.linkage_model``)."""
    state = request.app.state
    model: LinkageModel | None = getattr(state, "linkage_model", None)
    if model is None:
        with _model_lock:
            if getattr(state, "linkage_model", None) is None:
                cfg = state.authenticator.settings
                try:
                    state.linkage_model = LinkageModel.load(
                        model_path(cfg.data_dir, cfg.linkage_model)
                    )
                except (OSError, ValueError, KeyError, ModelMismatchError):
                    raise ApiProblemError(
                        503, "the linkage model is not available", code="model_unavailable"
                    ) from None
            model = state.linkage_model
    assert model is not None
    return model


# -- the search --------------------------------------------------------------------------------


def _query_problem(request: Request, faults: list[QueryFault], where: str) -> JSONResponse:
    errors = [
        {
            "loc": [where] if fault.field is None else [where, fault.field],
            "msg": fault.message,
            "type": fault.code,
        }
        for fault in faults
    ]
    return problem_response(
        request, 422, "the search query is not valid", code="query_invalid", errors=errors
    )


def _search(  # noqa: PLR0917 - the two routes' shared inputs
    request: Request,
    principal: CurrentPrincipal,
    raw: dict[str, Any],
    limit: int,
    where: str,
    purpose_headers: tuple[str | None, str | None, str | None],
) -> Any:
    purpose, purpose_faults = parse_purpose(*purpose_headers)
    try:
        query = standardise_query(raw)
        query_faults: list[QueryFault] = []
    except InvalidQueryError as invalid:
        query, query_faults = None, invalid.faults
    database, store, policy = services(request)
    model = linkage_model(request)
    caller = principal.caller()
    result: SearchResult | None = None
    denied: str | None = None
    too_broad = False
    with database.transaction() as session:
        try:
            if query is None:
                authorise_search(session, policy, caller, purpose)  # refusals audited
            else:
                result = search_persons(
                    session, store, policy, caller, query, purpose, model, limit=limit
                )
        except PolicyNotPublishedError:
            raise policy_not_published() from None
        except SearchDeniedError as refusal:
            denied = refusal.reason  # its authz.denied entry commits with the transaction
        except QueryTooBroadError:
            too_broad = True  # audited as a search with outcome too_broad
    if denied == "purpose_missing":
        return purpose_bad_request(request, purpose_faults)
    if denied == PURPOSE_REFERRAL_INVALID:
        raise ApiProblemError(403, PURPOSE_REFERRAL_SEARCH, code=PURPOSE_REFERRAL_INVALID)
    if denied is not None:
        raise ApiProblemError(403, DENIED_DETAIL, code=DENIED_CODE)
    if too_broad:
        return problem_response(
            request,
            422,
            "the query matches too many records to rank; add fields",
            code="query_too_broad",
        )
    if result is None:
        return _query_problem(request, query_faults, where)
    # Built and checked once here, and serialised by pydantic's own encoder: returned as a
    # model, FastAPI would validate it again against the response model, then encode it.
    out = SearchOut(
        search_id=result.search_id,
        policy_version=result.policy_version,
        purpose=result.purpose,
        audit_seq=result.audit_seq,
        candidates=result.candidates,
        count=len(result.results),
        limit=limit,
        results=[
            SearchHitOut(
                rank=rank,
                person_id=hit.person_id,
                match_weight=hit.match_weight,
                match_probability=hit.match_probability,
                record_id=hit.record_id,
                source=hit.source,
                groups=hit.groups,
                explanation=hit.explanation,
                records_matched=hit.records_matched,
            )
            for rank, hit in enumerate(result.results, start=1)
        ],
    )
    return Response(out.model_dump_json(), media_type="application/json")


_DESCRIPTION = (
    "Ranked persons the description may mean, with a match score and the identity fields "
    "the caller may see of each person's best-matching record. Tolerates typos, nicknames, "
    "swapped day/month and swapped given/family names. Needs a purpose of access "
    f"(`{H_CODE}` with `{H_TEXT}`, or `X-Purpose-Referral`); every search writes one "
    "`person.search` audit entry holding the query only as blind-index values; roles that "
    "may read no identity fields get 403 (audited)."
)


@router.post(
    "/search",
    summary="Search persons (preferred: the query stays out of the URL)",
    response_model=SearchOut,
    description=_DESCRIPTION,
)
def search_post(
    request: Request,
    body: Annotated[SearchBody, Body()],
    *,
    principal: CurrentPrincipal,
    x_purpose_code: PurposeCode = None,
    x_purpose_referral: PurposeReferral = None,
    x_purpose_text: PurposeText = None,
) -> Any:
    raw = body.model_dump(exclude={"limit"}, exclude_none=True)
    headers = (x_purpose_code, x_purpose_referral, x_purpose_text)
    return _search(request, principal, raw, body.limit, "body", headers)


def _query_param(name: str) -> Any:
    text, example = _FIELD_DOCS[name]
    return Query(description=text, examples=[example])


@router.get(
    "",
    summary="Search persons by query string (prefer POST /persons/search)",
    response_model=SearchOut,
    description=_DESCRIPTION
    + " **Prefer `POST /api/v1/persons/search`:** query strings are personal data in a URL "
    "and end up in proxy and browser logs.",
)
def search_get(
    request: Request,
    *,
    principal: CurrentPrincipal,
    given_name: Annotated[str | None, _query_param("given_name")] = None,
    family_name: Annotated[str | None, _query_param("family_name")] = None,
    date_of_birth: Annotated[str | None, _query_param("date_of_birth")] = None,
    postcode: Annotated[str | None, _query_param("postcode")] = None,
    nhs_number: Annotated[str | None, _query_param("nhs_number")] = None,
    upn: Annotated[str | None, _query_param("upn")] = None,
    pnc_id: Annotated[str | None, _query_param("pnc_id")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Persons to return.")] = (
        DEFAULT_LIMIT
    ),
    x_purpose_code: PurposeCode = None,
    x_purpose_referral: PurposeReferral = None,
    x_purpose_text: PurposeText = None,
) -> Any:
    given = {
        "given_name": given_name,
        "family_name": family_name,
        "date_of_birth": date_of_birth,
        "postcode": postcode,
        "nhs_number": nhs_number,
        "upn": upn,
        "pnc_id": pnc_id,
    }
    raw: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    # Unknown parameters are refused by name (FastAPI would ignore them silently).
    raw.update({k: "" for k in request.query_params if k not in (*SEARCH_FIELDS, "limit")})
    headers = (x_purpose_code, x_purpose_referral, x_purpose_text)
    return _search(request, principal, raw, limit, "query", headers)
