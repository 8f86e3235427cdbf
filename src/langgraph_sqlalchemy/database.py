"""The one way this library reaches the database.

:class:`Database` decides engine-versus-connection, opens the transaction, applies the retry
policy and translates errors. Everything else (the repositories, the saver, the store) receives
an ``AsyncConnection`` from :meth:`Database.run` and never commits or retries on its own.

Engine-bound (the normal case): each call checks a connection out of the host's pool, runs in
one transaction, and returns the connection. Every write this library makes is idempotent
(upserts, ``ON CONFLICT DO NOTHING``, deletes by key), so a call that lost its connection, even
one whose ``COMMIT`` reached the server before the client saw the error, is simply run again.

Connection-bound (a host ``AsyncConnection``): calls run inside a savepoint of the host's
transaction and the host commits. There is no retry: a lost connection takes the host's
transaction with it, and only the host can decide to redo that.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from .errors import DatabaseError, DatabaseUnavailableError, LangGraphSQLAlchemyError

__all__ = ["POOLER_OPTION", "Database", "RetryPolicy", "SingleStatement", "is_transient"]

logger = logging.getLogger("langgraph_sqlalchemy")

T = TypeVar("T")

# SQLSTATEs after which the same idempotent transaction can simply be run again.
# Class 08: connection exceptions. 57P01/02/03: the server is shutting down, crashed or is
# still starting (an immediate restart, a failover, pg_terminate_backend from an idle reaper).
# 40001/40P01: serialization failure and deadlock, which Postgres documents as "retry".
# 53300: too many connections, typical while a restarted server's pool refills.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "53300"})

# invalid_sql_statement_name: the server connection does not know the prepared statement the
# client is binding (a transaction-mode pooler switched server connections under it).
_UNKNOWN_PREPARED_STATEMENT = "26000"

#: Execution option that ``create_engine(pgbouncer=True)`` sets on its engine: the engine sits
#: behind a transaction-mode pooler, so every statement must run inside an explicit transaction.
POOLER_OPTION = "langgraph_sqlalchemy_transaction_pooler"


@dataclass(frozen=True)
class RetryPolicy:
    """How engine-bound calls ride out transient failures (see :func:`is_transient`).

    A call runs at most ``max_attempts`` times. Before attempt ``n + 1`` it sleeps
    ``min(max_backoff, initial_backoff * 2 ** (n - 1))`` seconds times a random factor in
    [0.5, 1): with the defaults 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2, 2, 2 s, so the tenth attempt
    starts 4.6 to 9.2 s after the first failure. That covers an immediate server restart (under
    a second of crash recovery here) and a connection reaper; a failover that takes longer needs
    a bigger budget. Set ``max_attempts=1`` to turn retries off.
    """

    max_attempts: int = 10
    initial_backoff: float = 0.05
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``, with jitter so that many clients
        reconnecting after one restart do not arrive in lockstep."""
        base = min(self.max_backoff, self.initial_backoff * 2.0 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None), exc):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


# What asyncpg says when the socket went away under it; some of these reach us with no SQLSTATE
# (asyncpg's InterfaceError family) or wrapped in a plain SQLAlchemy error.
_LOST_CONNECTION_MARKERS = (
    "connection is closed",
    "closed in the middle of operation",
    "connection was closed",
    "unexpected connection_lost",
    "connection reset",
)


def _is_driver_error(exc: BaseException) -> bool:
    """Raised by SQLAlchemy, the socket or asyncpg, as opposed to a bug or bad input in ``work``.

    asyncpg's own exceptions mostly arrive wrapped by SQLAlchemy, but not all: one raised while a
    new pooled connection runs its set-up queries (the JSON codecs) escapes unwrapped, and a
    connection killed at that moment is routine under an idle reaper.
    """
    if isinstance(exc, (sa_exc.SQLAlchemyError, OSError, asyncio.TimeoutError)):
        return True
    return type(exc).__module__.startswith("asyncpg")


def is_transient(exc: BaseException) -> bool:
    """Whether running the same idempotent transaction again can succeed.

    True for a lost or refused connection (SQLSTATE class 08, socket errors, asyncpg's "connection
    is closed"), a server shutting down, restarting or still recovering (57P01, 57P02, 57P03),
    too many connections (53300), a serialization failure or deadlock (40001, 40P01) and a
    timeout while connecting. False for everything that would fail the same way again:
    constraint violations, bad input, permissions, syntax, and a full pool (``sa_exc.TimeoutError``,
    which more waiting would not cure quickly).
    """
    if isinstance(exc, sa_exc.TimeoutError):
        return False
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    code = _sqlstate(exc)
    if code is not None and (code.startswith("08") or code in _TRANSIENT_SQLSTATES):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        text = str(exc.orig).lower()
        return any(marker in text for marker in _LOST_CONNECTION_MARKERS)
    # asyncpg raises plain OSErrors (refused, reset, broken pipe, TimeoutError) while connecting;
    # SQLAlchemy passes those through unwrapped. On Python 3.10 asyncio.TimeoutError is not an
    # OSError yet.
    if isinstance(exc, (OSError, asyncio.TimeoutError)):
        return True
    if type(exc).__module__.startswith("asyncpg"):
        text = str(exc).lower()
        return any(marker in text for marker in _LOST_CONNECTION_MARKERS)
    return False


def _describe(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's ``[SQL: ...] [parameters: ...]`` suffix:
    parameters are user data (checkpoint blobs, store values) and may be megabytes long."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        detail = str(exc.orig).strip()
        return f"{type(exc.orig).__name__}: {detail}" if detail else type(exc.orig).__name__
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        return _describe(exc.orig)
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _translate(exc: BaseException, op: str, *, exhausted: bool) -> LangGraphSQLAlchemyError:
    if exhausted:
        return DatabaseUnavailableError(f"{op}: the database stayed unreachable: {_describe(exc)}")
    if isinstance(exc, sa_exc.TimeoutError):
        return DatabaseUnavailableError(f"{op}: no pooled connection became free: {exc}")
    code = _sqlstate(exc)
    return DatabaseError(f"{op} failed ({code or 'no SQLSTATE'}): {_describe(exc)}")


Rows = Sequence[Sequence[Any]]


class SingleStatement(Protocol):
    """One statement with its parameters, as :meth:`Database.fetch` runs it."""

    def driver_form(self, dialect: Dialect) -> tuple[str, tuple[Any, ...]] | None:
        """Final SQL text and positional values for the driver; None: SQLAlchemy only."""

    async def execute(self, conn: AsyncConnection) -> Rows:
        """Run it through SQLAlchemy on ``conn`` and return all rows (empty for DML)."""


class Database:
    """Transactions, retries and error translation for one engine or host connection."""

    def __init__(
        self,
        bind: AsyncEngine | AsyncConnection,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        if isinstance(bind, AsyncEngine):
            self.engine: AsyncEngine | None = bind
            self.connection: AsyncConnection | None = None
            # An option view of the same pool: single-statement calls skip BEGIN/COMMIT, two of
            # their three round trips. A single statement is atomic on its own.
            self._autocommit_engine = bind.execution_options(isolation_level="AUTOCOMMIT")
            # Not behind a transaction-mode pooler: there, only an explicit transaction pins one
            # server connection for all the protocol messages of a statement (asyncpg prepares
            # it, may introspect its types, then binds it; outside a transaction PgBouncer may
            # hand those to different server connections: "prepared statement ... does not
            # exist"). Engines from create_engine(pgbouncer=True) say so; for other engines
            # the first such error turns the shortcut off (see run()).
            self._autocommit_single_statements = not bind.get_execution_options().get(
                POOLER_OPTION, False
            )
        elif isinstance(bind, AsyncConnection):
            self.engine = None
            self.connection = bind
        else:
            raise TypeError(
                "expected a sqlalchemy AsyncEngine or AsyncConnection, got "
                f"{type(bind).__name__}; use from_conn_string() to start from a URL"
            )
        self.retry = retry or RetryPolicy()
        # One asyncpg connection runs one statement at a time; calls sharing a host connection
        # queue here instead of failing with "another operation is in progress".
        self._connection_lock = asyncio.Lock() if self.connection is not None else None

    @property
    def bind(self) -> AsyncEngine | AsyncConnection:
        if self.engine is not None:
            return self.engine
        assert self.connection is not None
        return self.connection

    @property
    def dialect_name(self) -> str:
        return self.bind.dialect.name

    async def fetch(self, statement: SingleStatement, *, op: str) -> Rows:
        """Run one idempotent statement on its own and return all its rows.

        The saver's hot calls come here. When nothing could observe the difference, the
        statement goes straight to a pooled asyncpg connection: checked out of and returned
        to the host's pool as usual (pool events, pre-ping and reset-on-return included), but
        without the SQLAlchemy ``Connection`` around it, whose set-up, isolation-level switch
        and shielded close cost more CPU than the round trip. Anything unusual on that path
        (an error, a dead connection) is not interpreted there: the statement is run again
        the ordinary way, through :meth:`run`, which wraps, retries and translates.
        """
        engine = self.engine
        form = None
        if engine is not None and self._autocommit_single_statements and _unobserved(engine):
            form = statement.driver_form(engine.dialect)
        if engine is None or form is None:
            return await self.run(statement.execute, op=op, single_statement=True)
        attempt = 0
        while True:
            attempt += 1
            try:
                rows = await _fetch_on_pooled_driver(engine, *form)
            except Exception as exc:
                # Lost or refused connections count against the same retry budget as run()'s.
                await self._retry_or_raise(exc, op, attempt)
                continue
            if rows is not None:
                return rows
            # It failed on a healthy connection (bad data, a pooler, ...): the same attempt
            # again through SQLAlchemy, which raises the error the ordinary way.
            return await self.run(
                statement.execute, op=op, single_statement=True, attempts_used=attempt - 1
            )

    async def run(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        op: str,
        single_statement: bool = False,
        attempts_used: int = 0,
    ) -> T:
        """Run ``work`` in one transaction and return what it returns.

        ``work`` must be idempotent (it may run more than once) and must read everything it
        needs before returning: the connection goes back to the pool right after.
        ``single_statement=True`` promises that ``work`` issues exactly one statement, which
        then runs without an explicit transaction. ``attempts_used``: attempts already spent
        on this call elsewhere (:meth:`fetch`), deducted from the retry budget.
        """
        if self.connection is not None:
            return await self._run_on_host_connection(work, op=op)
        attempt = attempts_used
        while True:
            attempt += 1
            autocommit = single_statement and self._autocommit_single_statements
            try:
                async with self._transaction(autocommit) as conn:
                    return await work(conn)
            except LangGraphSQLAlchemyError:
                raise
            except Exception as exc:
                if not _is_driver_error(exc):
                    raise  # a bug or bad input inside work: the caller's to see, unchanged
                if autocommit and _sqlstate(exc) == _UNKNOWN_PREPARED_STATEMENT:
                    # The statement never ran (its Bind failed), so running it again inside a
                    # transaction is safe; from now on every call of this Database does so.
                    self._autocommit_single_statements = False
                    logger.warning(
                        "%s: a prepared statement vanished between two protocol messages; this "
                        "engine seems to sit behind PgBouncer in transaction mode. Single "
                        "statements now run in explicit transactions. Create the engine with "
                        "langgraph_sqlalchemy.engine.create_engine(url, pgbouncer=True) to say "
                        "so up front.",
                        op,
                    )
                    continue
                await self._retry_or_raise(exc, op, attempt)

    async def _retry_or_raise(self, exc: Exception, op: str, attempt: int) -> None:
        """After attempt ``attempt`` failed with ``exc``: wait before the next one, or raise."""
        if isinstance(exc, LangGraphSQLAlchemyError) or not _is_driver_error(exc):
            raise exc  # ours already, or a bug or bad input: the caller's to see, unchanged
        if not is_transient(exc):
            raise _translate(exc, op, exhausted=False) from exc
        if attempt >= self.retry.max_attempts:
            raise _translate(exc, op, exhausted=True) from exc
        delay = self.retry.backoff(attempt)
        logger.warning(
            "%s: transient database error (attempt %d of %d), retrying in %.2fs: %s",
            op, attempt, self.retry.max_attempts, delay, _describe(exc),
        )
        await asyncio.sleep(delay)

    @asynccontextmanager
    async def _transaction(self, autocommit: bool) -> AsyncIterator[AsyncConnection]:
        assert self.engine is not None
        if autocommit:
            async with self._autocommit_engine.connect() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def _run_on_host_connection(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, op: str
    ) -> T:
        assert self.connection is not None and self._connection_lock is not None
        async with self._connection_lock:
            try:
                # A savepoint keeps the host's transaction usable when our call fails; the host
                # decides when (and whether) everything commits.
                async with self.connection.begin_nested():
                    return await work(self.connection)
            except LangGraphSQLAlchemyError:
                raise
            except Exception as exc:
                if not _is_driver_error(exc):
                    raise
                raise _translate(exc, op, exhausted=False) from exc

    @asynccontextmanager
    async def autocommit_connection(self, *, op: str) -> AsyncIterator[AsyncConnection]:
        """A connection with no open transaction (migrations: ``CREATE INDEX CONCURRENTLY``).

        Only engine-bound: a host connection is inside the host's transaction, where
        CONCURRENTLY cannot run.
        """
        if self.engine is None:
            raise DatabaseError(
                f"{op} needs a connection outside any transaction; bind the saver/store to an "
                "AsyncEngine for setup(), or run the migrations with the CLI"
            )
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
        except LangGraphSQLAlchemyError:
            raise
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise _translate(exc, op, exhausted=False) from exc


def _unobserved(engine: AsyncEngine) -> bool:
    """Whether a statement sent on a raw pooled connection changes nothing anyone can see.

    Not with ``echo``, statement or connection listeners on the engine (tracing, a host's
    ``engine_connect`` hook), a ``schema_translate_map``, or a driver other than asyncpg.
    """
    sync_engine = engine.sync_engine
    if sync_engine.echo or sync_engine.dialect.driver != "asyncpg":
        return False
    dispatch = sync_engine.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute or dispatch.engine_connect:
        return False
    return not sync_engine.get_execution_options().get("schema_translate_map")


async def _fetch_on_pooled_driver(
    engine: AsyncEngine, sql: str, values: tuple[Any, ...]
) -> Rows | None:
    """``sql`` on a connection of the engine's pool, outside any transaction.

    Raises a pool timeout and transient failures of the statement (the connection is then
    discarded). Returns None when no connection could be opened or the statement failed on
    a healthy one, for the caller to run it the ordinary way (SQLAlchemy's ``Connection``
    wraps checkout errors, which the pool raises unwrapped).
    """
    pool = engine.sync_engine.pool
    try:
        # The pool's checkout may open a connection (network I/O): SQLAlchemy's pools run
        # their async drivers inside a greenlet.
        fairy = await greenlet_spawn(pool.connect)
    except sa_exc.TimeoutError:
        raise  # the pool stayed full for its whole timeout: waiting twice would not help
    except Exception:
        return None
    driver = fairy.driver_connection
    adapter = fairy.dbapi_connection
    if (
        driver is None
        or type(driver).__module__.split(".")[0] != "asyncpg"
        or getattr(adapter, "_transaction", None) is not None
    ):
        await greenlet_spawn(fairy.close)
        return None
    try:
        rows: Rows = await driver.fetch(sql, *values)
    except asyncio.CancelledError:
        # The statement may still be running on that socket: the connection must not go
        # back to the pool as if it were idle.
        await greenlet_spawn(fairy.invalidate)
        raise
    except Exception as exc:
        if is_transient(exc):
            await greenlet_spawn(fairy.invalidate)
            raise
        await greenlet_spawn(fairy.invalidate if driver.is_closed() else fairy.close)
        return None
    await greenlet_spawn(fairy.close)
    return rows
