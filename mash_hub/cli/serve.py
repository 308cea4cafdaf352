"""``mash-hub serve``: run the HTTP API."""

from __future__ import annotations

import copy
import logging
import signal
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn
import uvicorn.config

from mash_hub.audit.checkpointer import start_checkpointer
from mash_hub.cli._common import console, open_hub, settings
from mash_hub.crypto.signing import load_signing_key
from mash_hub.web.app import create_app


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the hub's HTTP API (migrating the embedded database first).

    Refuses to start when the keys are missing or the keyring file is readable by others.
    """
    cfg = settings()
    with open_hub() as (db, _provider):
        app = create_app(db)
        console.print(f"MASH Hub listening on http://{host}:{port} (Ctrl+C to stop)")
        # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit
        # lets this block release the database (and stop the embedded server) on the way out.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        stop_checkpoints = start_checkpointer(
            db,
            cfg.audit_checkpoint_interval_seconds,
            key=load_signing_key(cfg, create=True),
            directory=cfg.resolved_audit_checkpoint_dir,
        )
        try:
            uvicorn.run(
                app,
                host=host,
                port=port,
                log_level=cfg.log_level.lower(),
                log_config=log_config(),
                access_log=True,
            )
        finally:
            stop_checkpoints()


class QueryStringFilter(logging.Filter):
    """Cut the query string off every path uvicorn logs.

    A query string may carry personal data (``GET /api/v1/persons?family_name=...``), and
    uvicorn logs the path with its query string in the access log (and in websocket lines).
    The access log keeps client, method, path and status; never the part after ``?``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(arg) for arg in record.args)
        return True


def _without_query(arg: object) -> object:
    if isinstance(arg, str) and arg.startswith("/") and "?" in arg:
        return arg.split("?", 1)[0]
    return arg


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`QueryStringFilter` on every handler."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["no_query_string"] = {"()": QueryStringFilter}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "no_query_string"]
    return config


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
