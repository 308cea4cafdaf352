"""Connections, pooling and the one place transactions are owned.

Services receive a :class:`~sqlalchemy.orm.Session` and never commit. The caller that owns the
unit of work (an HTTP request, a CLI command, a job) opens it with :meth:`Database.transaction`,
which commits when the block succeeds and rolls back when it raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from mash_hub.db.embedded import EmbeddedPostgres
from mash_hub.settings import Settings


class DatabaseConfigError(ValueError):
    """The configured database URL cannot be used."""


class DatabaseUnavailableError(RuntimeError):
    """The database server does not answer."""


# SQLSTATEs of a server that is going away or not yet accepting work: class 08 (connection
# exceptions), admin/crash shutdown, "the database system is starting up", too many clients.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLAlchemy's code for "Can't reconnect until invalid transaction is rolled back": the
# connection was lost inside a transaction that something then tried to use again.
_LOST_IN_TRANSACTION = "8s2b"


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it wraps) means the server cannot be reached now.

    True for a failed or lost connection (psycopg's OperationalError without a SQLSTATE, or
    with a connection or shutdown SQLSTATE), a connection SQLAlchemy invalidated as
    disconnected (also when a transaction on it is used again), a pool timeout, and
    :class:`DatabaseUnavailableError`. Errors in a
    statement (a deadlock, a cancelled query, a constraint) are not: those are the request's.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailableError | PoolTimeoutError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, PendingRollbackError) and current.code == _LOST_IN_TRANSACTION:
            return True
        if isinstance(current, psycopg.OperationalError) and not isinstance(
            current, psycopg.errors.PipelineAborted
        ):
            sqlstate = current.sqlstate
            if sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES:
                return True
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return False


def normalise_url(raw: str) -> str:
    """Accept the URL forms operators paste (``postgres://``, ``postgresql://``) for psycopg 3."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseConfigError("MASH_DATABASE_URL is not a valid database URL") from exc
    backend = url.get_backend_name()
    if backend not in {"postgres", "postgresql"}:
        raise DatabaseConfigError(
            f"MASH_DATABASE_URL must point at PostgreSQL, not {backend!r}; "
            "the hub has no other database mode"
        )
    if url.get_driver_name() not in {"psycopg", "psycopg2", ""} or url.drivername in {
        "postgres",
        "postgresql",
        "postgresql+psycopg2",
    }:
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


# The longest one SQL statement may run in the units of work of the current HTTP request, in
# milliseconds; None (CLI commands, jobs, migrations): no limit. Set by the API middleware.
_statement_limit_ms: ContextVar[int | None] = ContextVar("statement_limit_ms", default=None)
_QUERY_CANCELED = "57014"


@contextlib.contextmanager
def statement_time_limit(seconds: float) -> Iterator[None]:
    """Within this block, each statement of a :meth:`Database.transaction` may run for at most
    ``seconds`` (0: no limit), so a runaway query cannot hold a worker and its connection."""
    token = _statement_limit_ms.set(round(seconds * 1000) if seconds > 0 else None)
    try:
        yield
    finally:
        _statement_limit_ms.reset(token)


def is_statement_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it wraps) is PostgreSQL cancelling a statement."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error) and current.sqlstate == _QUERY_CANCELED:
            return True
        if isinstance(current, DBAPIError) and isinstance(current.orig, BaseException):
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return False


# Set only while Database.transaction checks out its connection: the one kind of checkout the
# request limit is for (raw connections, e.g. the audit chain check's COPY, keep none).
_limit_applies: ContextVar[bool] = ContextVar("statement_limit_applies", default=False)
_TIMEOUT_SET = "mash_hub_statement_timeout_ms"


def _reconcile_statement_timeout(
    dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    """Give a checked-out connection the statement limit its unit of work runs under.

    Set at session level and remembered on the pooled connection, so only a change costs a
    round trip (``SET`` / ``RESET`` in autocommit, outside any transaction): a request's two
    transactions used to spend one ``set_config(..., true)`` each. Every checkout is
    reconciled, so a connection never carries a request's limit into a command, a job or a
    raw connection (``RESET`` gives back the role's or server's own setting).
    """
    wanted = _statement_limit_ms.get() if _limit_applies.get() else None
    if record.info.get(_TIMEOUT_SET) == wanted:
        return
    record.info.pop(_TIMEOUT_SET, None)  # unknown until the change has been made
    dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cursor:
            if wanted is None:
                cursor.execute("RESET statement_timeout")
            else:
                cursor.execute(f"SET statement_timeout = {int(wanted)}")
    finally:
        dbapi_connection.autocommit = False
    record.info[_TIMEOUT_SET] = wanted


@dataclass
class Database:
    """An engine, its session factory, and the embedded server behind it if any."""

    engine: Engine
    embedded: EmbeddedPostgres | None = None
    sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if not event.contains(self.engine, "checkout", _reconcile_statement_timeout):
            event.listen(self.engine, "checkout", _reconcile_statement_timeout)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    @property
    def display_url(self) -> str:
        """Where the data lives, fit to print: libpq form for the embedded server, no password."""
        if self.embedded is not None:
            return self.embedded.psql_url()
        return redact(self.url)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """The unit of work: commit on success, roll back on any exception.

        Inside :func:`statement_time_limit` the connection is checked out with the limit set
        (see :func:`_reconcile_statement_timeout`); any other checkout has the server's.
        """
        with self.sessions.begin() as session:
            token = _limit_applies.set(True)
            try:
                session.connection()  # checked out now, under the limit (no round trip)
            finally:
                _limit_applies.reset(token)
            yield session

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailableError` unless the server answers a query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise DatabaseUnavailableError(
                f"cannot reach PostgreSQL at {self.display_url}: {exc.orig.__class__.__name__}"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()
        if self.embedded is not None:
            self.embedded.release()


APP_ROLE = "mash_hub_app"
_ROLE_CHECKED = "mash_hub_role_checked"


def _assume_app_role(
    dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    """``SET ROLE mash_hub_app`` once per connection, when the role exists and may be assumed.

    The role (migration 0005) has no UPDATE/DELETE/TRUNCATE on the audit tables. Checked at
    checkout, once per pooled connection once the role exists, so connections opened before
    the hook was installed or before the first migration created the role are switched too.
    Migrations undo it for their own transaction (``SET LOCAL ROLE NONE``).
    """
    if record.info.get(_ROLE_CHECKED):
        return
    row = None
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)"
                " OR pg_has_role(session_user, r.oid, 'MEMBER') FROM pg_roles r"
                " WHERE r.rolname = %s",
                (APP_ROLE,),
            )
            row = cursor.fetchone()
            if row is not None and row[0]:
                cursor.execute(f"SET ROLE {APP_ROLE}")
        dbapi_connection.commit()
    except psycopg.errors.InsufficientPrivilege:
        # A member without the SET option (PostgreSQL 16+ ADMIN-only grant): stay as is.
        dbapi_connection.rollback()
    # While the role does not exist yet (a fresh server before its first migration, or a
    # migrating user without CREATEROLE) look again at the next checkout.
    if row is not None:
        record.info[_ROLE_CHECKED] = True


def use_app_role(engine: Engine) -> Engine:
    """Make every connection of ``engine`` run as the application role (see above)."""
    if not event.contains(engine, "checkout", _assume_app_role):
        event.listen(engine, "checkout", _assume_app_role)
    return engine


def make_engine(url: str, settings: Settings) -> Engine:
    """A pooled psycopg 3 engine. ``pool_pre_ping`` drops connections a restart broke; the
    connect and pool timeouts bound how long a request can wait for a server that is down."""
    return use_app_role(
        create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_max_overflow,
            pool_timeout=settings.pool_timeout_seconds,
            pool_pre_ping=True,
            connect_args={
                "application_name": "mash-hub",
                "connect_timeout": settings.connect_timeout_seconds,
            },
        )
    )


def open_database(settings: Settings) -> Database:
    """Connect to the configured server, starting the embedded one when none is configured."""
    if settings.database_url is not None:
        url = normalise_url(settings.database_url.get_secret_value())
        return Database(make_engine(url, settings))
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.acquire()
    return Database(make_engine(url, settings), embedded=embedded)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Database]:
    """Open the database for the length of a block, and release it (and the server) after."""
    db = open_database(settings)
    try:
        yield db
    finally:
        db.close()
