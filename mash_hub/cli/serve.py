"""``mash-hub serve``: run the HTTP API."""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import tempfile
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn
import uvicorn.config
from uvicorn.supervisors import Multiprocess

from mash_hub.audit.checkpointer import start_checkpointer
from mash_hub.cli._common import console, open_hub, settings
from mash_hub.crypto.signing import load_signing_key
from mash_hub.db.supervisor import ServerSupervisor
from mash_hub.observability import logs
from mash_hub.observability.logs import LogFormat
from mash_hub.observability.metrics import MULTIPROCESS_ENV
from mash_hub.web.app import create_app


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes (one per core is a good start). Each has its own "
            "connection pool (MASH_POOL_SIZE each), policy cache and audit chainer; the "
            "audit checkpointer runs once, in this process.",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Serve the hub's HTTP API (migrating the embedded database first).

    Refuses to start when the keys are missing or the keyring file is readable by others.
    One process serves all requests unless ``--workers`` asks for more: Python runs one
    request's code at a time per process, so on a multi-core machine several workers serve
    more searches a second.
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
        # The hub runs the embedded server, so it starts it again when it dies.
        supervisor = ServerSupervisor(db.embedded).start() if db.embedded is not None else None
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": cfg.log_level.lower(),
            "log_config": log_config(cfg.log_format),
            "access_log": True,
        }
        try:
            if workers == 1:
                uvicorn.run(app, **options)
            else:
                _run_workers(workers, options)
        finally:
            # Shutdown order: nothing more signed or restarted, then (leaving `open_hub`) the
            # engine is disposed, which chains what was written, and only then is the
            # embedded server released and stopped.
            stop_checkpoints()
            if supervisor is not None:
                supervisor.stop()


# How long uvicorn's supervisor waits for a worker to answer its health check before it
# kills and replaces it. uvicorn's 5 s is shorter than a worker's start-up (imports, pool,
# policy) on a busy 2-core host: workers were killed and restarted in a loop, never serving.
WORKER_HEALTHCHECK_SECONDS = 60


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The bound socket for the workers, with ``TCP_NODELAY`` (see :func:`_run_workers`)."""
    sock = config.bind_socket()
    if sock.family in {socket.AF_INET, socket.AF_INET6}:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _run_workers(workers: int, options: dict[str, Any]) -> None:
    """uvicorn's supervisor with ``workers`` spawned processes (each builds the app with the
    factory); this process keeps the embedded server and runs the checkpointer.

    The listening socket is bound here, as ``uvicorn.run`` binds it, plus ``TCP_NODELAY``:
    uvicorn's socket has no protocol number, so asyncio leaves Nagle's algorithm on for the
    connections it accepts, and a response written in two parts then waits for the client's
    delayed ACK (about 40 ms a request). Accepted sockets inherit the option on Linux.
    """
    config = uvicorn.Config(
        "mash_hub.web.app:worker_app",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        **options,
    )
    sock = listening_socket(config)
    # Each worker writes its request metrics here; a scrape of any worker sums them all.
    with tempfile.TemporaryDirectory(prefix="mash-hub-metrics-") as shared_metrics:
        os.environ[MULTIPROCESS_ENV] = shared_metrics
        try:
            Multiprocess(config, sockets=[sock]).run()
        finally:
            del os.environ[MULTIPROCESS_ENV]
            sock.close()


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


def log_config(kind: LogFormat = "text") -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`QueryStringFilter` on every handler, in
    the hub's log format (``MASH_LOG_FORMAT``)."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"].update(logs.uvicorn_formatters(kind))
    config.setdefault("filters", {})["no_query_string"] = {"()": QueryStringFilter}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "no_query_string"]
    return config


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
