"""Rendering pages: one Jinja2 environment (our templates plus the GOV.UK Frontend macros)
and the response headers every page carries.

Every page is sent with a strict Content-Security-Policy (scripts, styles, images and fonts
from this origin only, no inline script or style) and ``Cache-Control: no-store`` (pages may
show personal data, so no browser or proxy keeps a copy). Templates are autoescaped.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader

PAGES_DIR = Path(__file__).parent
STATIC_DIR = PAGES_DIR / "static"
SERVICE_NAME = "MASH Hub"
LONDON = ZoneInfo("Europe/London")

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; manifest-src 'self'"
)
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-store",
    # Same-origin (not no-referrer, the API's): with no-referrer a browser sends
    # ``Origin: null`` on form posts, and the pages check the Origin of every POST.
    "Referrer-Policy": "same-origin",
}

environment = Environment(
    loader=ChoiceLoader(
        [
            FileSystemLoader(PAGES_DIR / "templates"),
            PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
        ]
    ),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.globals["service_name"] = SERVICE_NAME


_WORDS = {"upn": "UPN", "nhs": "NHS", "pnc": "PNC", "mash": "MASH", "rag": "RAG"}
_GROUP_ORDER = ("identity", "identifiers", "contact")


def humanise(name: str) -> str:
    """A field or group name for people: ``details.warning_markers`` -> ``Warning markers``,
    ``nhs_number`` -> ``NHS number``."""
    words = name.rsplit(".", 1)[-1].replace("_", " ").split()
    text = " ".join(_WORDS.get(word.lower(), word) for word in words)
    return text[:1].upper() + text[1:]


def show(value: Any) -> str:
    """A decrypted field value as text (lists and addresses flattened; nothing is guessed)."""
    if value is None or value in ("", []):
        return "Not recorded"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, dict):
        parts = [
            f"{humanise(k)}: {show(v)}" if k in {"current", "from", "to"} else show(v)
            for k, v in value.items()
            if v not in (None, "", [])
        ]
        return ", ".join(parts) or "Not recorded"
    if isinstance(value, list | tuple):
        return "; ".join(show(item) for item in value)
    return str(value)


def when(moment: dt.datetime) -> str:
    """A time as people in England read it (Europe/London)."""
    return moment.astimezone(LONDON).strftime("%-d %b %Y %H:%M")


def time_left(due: dt.datetime | None, now: dt.datetime) -> str:
    """How long until ``due`` (or how long overdue), in hours and minutes."""
    if due is None:
        return ""
    seconds = int((due - now).total_seconds())
    minutes = abs(seconds) // 60
    hours, minutes = divmod(minutes, 60)
    span = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"{span} left" if seconds > 0 else f"overdue by {span}"


def ordered_groups(groups: dict[str, Any]) -> list[tuple[str, Any]]:
    """A record's groups as people read them: identity, identifiers, contact, then details."""
    rank = {name: i for i, name in enumerate(_GROUP_ORDER)}
    return sorted(groups.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


environment.filters["humanise"] = humanise
environment.filters["ordered_groups"] = ordered_groups
environment.filters["show"] = show
environment.filters["when"] = when
environment.filters["time_left"] = time_left


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The page, with the page headers. ``context`` may use ``page`` (the signed-in
    :class:`~mash_hub.web.pages.session.PageSession`, or None) and ``errors``."""
    values: dict[str, Any] = {"request": request, "page": None, "errors": []}
    values.update(context or {})
    html = environment.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})})
