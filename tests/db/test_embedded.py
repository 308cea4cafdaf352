"""The embedded server: private, socket-only, started on demand, stopped by its last user."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from mash_hub.db.embedded import EmbeddedPostgres, EmbeddedPostgresError


def _query(server: EmbeddedPostgres, statement: str) -> object:
    with psycopg.connect(server.psql_url()) as conn:
        row = conn.execute(statement).fetchone()
        assert row is not None
        return row[0]


def test_server_listens_on_a_private_socket_only(server_dir: Path) -> None:
    server = EmbeddedPostgres(server_dir / "data")
    with server.running():
        assert _query(server, "SHOW listen_addresses") == ""
        assert _query(server, "SELECT current_database()") == "mash_hub"
        assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(server.pgdata.stat().st_mode) == 0o700
        # Statement text, which may carry personal data, never reaches the server log.
        assert _query(server, "SHOW log_min_error_statement") == "panic"
    assert not server.is_running()


def test_server_stops_only_after_its_last_user(server_dir: Path) -> None:
    data_dir = server_dir / "data"
    first = EmbeddedPostgres(data_dir)
    first.acquire()
    # A second process uses the same server and exits while the first still holds it.
    child = textwrap.dedent(
        f"""
        from pathlib import Path
        from mash_hub.db.embedded import EmbeddedPostgres
        s = EmbeddedPostgres(Path({str(data_dir)!r}))
        s.acquire()
        s.release()
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    assert first.is_running(), "a second user's exit must not stop a server still in use"
    first.release()
    assert not first.is_running()


def test_an_inner_user_in_the_same_process_does_not_stop_the_server(server_dir: Path) -> None:
    """`demo` serves inside its own use of the server: the inner release stopped it, and the
    outer use's last audit chaining then failed at Ctrl+C."""
    outer = EmbeddedPostgres(server_dir / "data")
    outer.acquire()
    inner = EmbeddedPostgres(server_dir / "data")
    inner.acquire()
    inner.release()
    assert outer.is_running(), "the outer user still needs the server"
    outer.release()
    assert not outer.is_running()


def test_a_killed_user_does_not_keep_the_server_alive(server_dir: Path) -> None:
    data_dir = server_dir / "data"
    child = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from mash_hub.db.embedded import EmbeddedPostgres
        EmbeddedPostgres(Path({str(data_dir)!r})).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], timeout=60, check=False)
    assert result.returncode == -9
    server = EmbeddedPostgres(data_dir)
    assert server.is_running()
    server.acquire()
    server.release()
    assert not server.is_running()


def test_pinned_server_outlives_hub_commands(server_dir: Path) -> None:
    server = EmbeddedPostgres(server_dir / "data")
    server.start_pinned()
    try:
        with server.running():
            pass
        assert server.is_running()
    finally:
        assert server.stop() is True
    assert not server.is_running()
    assert server.stop() is False


@pytest.mark.skipif(os.geteuid() != 0, reason="the service-user path only applies to root")
def test_as_root_runs_as_service_user_and_only_adds_traverse_bits(server_dir: Path) -> None:
    private_parent = server_dir / "private"
    private_parent.mkdir(mode=0o700)
    private_parent.chmod(0o700)
    server = EmbeddedPostgres(private_parent / "hub")
    with server.running():
        owner = _query(server, "SELECT pg_catalog.pg_get_userbyid(10)")
        assert owner == "postgres"
        assert server.pgdata.stat().st_uid != 0
    assert private_parent in server.permission_changes()
    # Traverse only: other users still cannot list the folder.
    assert stat.S_IMODE(private_parent.stat().st_mode) == 0o701


def test_socket_folder_that_is_a_planted_symlink_is_refused(server_dir: Path) -> None:
    target = server_dir / "victim"
    target.mkdir(mode=0o755)
    server = EmbeddedPostgres(server_dir / "data")
    server.root.mkdir(parents=True)
    server.socket_dir.symlink_to(target)
    with pytest.raises(EmbeddedPostgresError, match="symlink"):
        server.acquire()
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert target.stat().st_uid == os.geteuid()


def test_a_crash_after_initdb_still_starts_socket_only(server_dir: Path) -> None:
    server = EmbeddedPostgres(server_dir / "data")
    with server.running():
        pass
    conf = server.pgdata / "postgresql.conf"
    conf.write_text(conf.read_text().replace("include_if_exists = 'mash_hub.conf'", ""))
    with server.running():
        assert _query(server, "SHOW listen_addresses") == ""


_CREATE_USER = textwrap.dedent(
    """
    import sys, time
    from mash_hub.db import embedded
    start = float(sys.argv[2])
    while time.time() < start:
        pass
    print(embedded.ensure_service_user(sys.argv[1]).pw_uid)
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating system users needs root")
def test_processes_starting_at_once_as_root_create_the_service_user_once() -> None:
    """Before: concurrent `useradd` calls failed (user exists, /etc/passwd locked) and
    initdb then could not look the user up. A throwaway user name, removed afterwards."""
    name = f"mash_t{os.getpid() % 100000}"
    start = f"{time.time() + 3:.3f}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE_USER, name, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        results = [process.communicate(timeout=120) for process in processes]
        assert all(process.returncode == 0 for process in processes), results
        assert len({out.strip() for out, _ in results}) == 1  # one user, the same uid for all
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
