"""Log set-up for every process: plain text for people, or JSON lines for a log pipeline.

``MASH_LOG_FORMAT=json`` makes every record one JSON object (time, level, logger, message,
and the request id of the HTTP request being answered, when there is one). The hub's own
messages name tables, codes and ids, never personal values (SECURITY.md), and uvicorn's
access log has its query strings cut off (``cli/serve.py``), so the JSON form is as safe to
ship to a log store as the text form.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import traceback
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"

# The id of the HTTP request this task is answering (set by the web middleware).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mash_hub_request_id", default=None
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; exceptions as their class and frames, never the message
    (a library's exception message may quote a value from a failed statement)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["frames"] = "".join(traceback.format_tb(record.exc_info[2])).splitlines()
        return json.dumps(entry, ensure_ascii=False)


def formatter(kind: LogFormat) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: int, kind: LogFormat) -> None:
    """The root logger's one handler (stderr) with the chosen format."""
    logging.basicConfig(level=level, format=TEXT_FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(kind))


def uvicorn_formatters(kind: LogFormat) -> dict[str, dict[str, Any]]:
    """uvicorn's ``formatters`` section for the chosen format (its own when text)."""
    if kind == "text":
        return {}
    json_formatter = {"()": "mash_hub.observability.logs.JsonFormatter"}
    return {"default": json_formatter, "access": json_formatter}
