"""The start page: how to sign in, or once signed in, what this role can do here."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mash_hub.web.pages.session import MaybeSignedIn
from mash_hub.web.pages.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request, page: MaybeSignedIn) -> Response:
    return render(request, "home.html", {"page": page, "nav": "home"})
