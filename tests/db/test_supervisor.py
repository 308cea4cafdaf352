"""The supervisor starts the embedded server again when it dies, and not when stopped on purpose."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.db.supervisor import ServerSupervisor


def _eventually(condition: Callable[[], bool], within: float = 90) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _answers(server: EmbeddedPostgres) -> bool:
    try:
        with psycopg.connect(server.psql_url(), connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM kept").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def _kill_postmaster(server: EmbeddedPostgres) -> int:
    pid = int((server.pgdata / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_server_is_started_again_with_its_committed_data(server_dir: Path) -> None:
    server = EmbeddedPostgres(server_dir)
    server.acquire()
    supervisor = ServerSupervisor(server, interval=0.2).start()
    try:
        with psycopg.connect(server.psql_url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (id int)")
            conn.execute("INSERT INTO kept VALUES (1)")
        _kill_postmaster(server)
        assert _eventually(lambda: supervisor.restarts >= 1 and _answers(server))
    finally:
        supervisor.stop()
        server.release()
    assert not server.is_running()


def test_a_server_stopped_on_purpose_stays_stopped(server_dir: Path) -> None:
    server = EmbeddedPostgres(server_dir)
    server.acquire()
    supervisor = ServerSupervisor(server, interval=0.1).start()
    try:
        server.stop()  # `mash-hub db stop`
        time.sleep(1)  # ten looks
        assert not server.is_running()
        assert supervisor.restarts == 0
        EmbeddedPostgres(server_dir).acquire()  # the next hub command asks for it again
        assert server.is_running() and not server.stopped_on_purpose()
    finally:
        supervisor.stop()
        server.stop()
