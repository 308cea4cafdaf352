"""Keeping the embedded PostgreSQL server up while ``serve`` runs.

The hub runs that server itself by default, so nobody else will notice that it died (killed,
out of memory, a crash): the process that owns it (``serve``; with ``--workers``, the parent)
looks every second and starts it again, and PostgreSQL's crash recovery replays the WAL, so
every committed transaction is there. Meanwhile the API answers 503 ``database_unavailable``
and the pool's pre-ping replaces the broken connections once the server is back.
"""

from __future__ import annotations

import logging
import threading
import time

from mash_hub.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


class ServerSupervisor:
    """A daemon thread that starts the embedded server again whenever it is found down.

    Stop it (:meth:`stop`) before the server is released at shutdown, or it would start the
    server the shutdown is stopping. A failed start is logged in one line and retried with
    a doubling delay (up to 30 s); the first line of the error says why.
    """

    def __init__(
        self, server: EmbeddedPostgres, *, interval: float = CHECK_INTERVAL_SECONDS
    ) -> None:
        self.server = server
        self.interval = interval
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="mash-hub-postgres-supervisor", daemon=True
        )

    def start(self) -> ServerSupervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Look no more, and wait for a start in progress to finish."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        wait = self.interval
        down_since: float | None = None
        while not self._stopping.wait(wait):
            if self.server.is_running() or self.server.stopped_on_purpose():
                down_since, wait = None, self.interval
                continue
            if down_since is None:
                down_since = time.monotonic()
                log.warning("the embedded PostgreSQL server is not running; starting it again")
            try:
                started = self.server.start_if_down()
            except (EmbeddedPostgresError, OSError) as exc:
                wait = min(max(wait * 2, 2.0), MAX_BACKOFF_SECONDS)
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error(
                    "starting the embedded PostgreSQL server failed (%s); trying again in %.0f s",
                    reason,
                    wait,
                )
                continue
            wait = self.interval
            if started:
                self.restarts += 1
                log.warning(
                    "the embedded PostgreSQL server is running again after %.1f s down",
                    time.monotonic() - down_since,
                )
