"""``mash-hub serve``: run the HTTP API."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer
import uvicorn

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
                app, host=host, port=port, log_level=cfg.log_level.lower(), access_log=False
            )
        finally:
            stop_checkpoints()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
