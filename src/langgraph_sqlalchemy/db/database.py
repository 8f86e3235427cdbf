"""The one way this library reaches the database.

:class:`Database` decides engine-versus-connection, opens the transaction, applies the retry
policy and translates errors. Everything else (the repositories, the saver, the store) hands it
a statement (:meth:`Database.fetch`) or a function of an ``AsyncConnection``
(:meth:`Database.run`) and never commits or retries on its own.

Every statement goes through SQLAlchemy's ``AsyncConnection``, so the host's ``echo``, its
``sqlalchemy.engine`` logger and every execute, cursor-execute and error event listener see
each statement once. The one exception, :meth:`Database.fetch`'s driver shortcut, is taken only
when nothing at all is watching (see :func:`unobserved`).

Engine-bound (the normal case): each call checks a connection out of the host's pool, runs in
one transaction (a single statement runs on an AUTOCOMMIT connection: it is atomic on its own
and needs no BEGIN/COMMIT round trips), and returns the connection. Every write this library
makes is idempotent (upserts, ``ON CONFLICT DO NOTHING``, deletes by key), so a call that lost
its connection, even one whose ``COMMIT`` reached the server before the client saw the error,
is simply run again.

Connection-bound (a host ``AsyncConnection``): calls run inside a savepoint of the host's
transaction and the host commits. There is no retry: a lost connection takes the host's
transaction with it, and only the host can decide to redo that.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.engine.events import ConnectionEvents, DialectEvents
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import Pool, PoolProxiedConnection, QueuePool
from sqlalchemy.pool.events import PoolEvents

from .. import telemetry
from ..errors import DatabaseError, DatabaseUnavailableError, LangGraphSQLAlchemyError
from .errors import (
    UNKNOWN_PREPARED_STATEMENT,
    describe,
    driver_exception,
    is_driver_error,
    is_transient,
    sqlstate,
    translate,
)
from .group_commit import RUN_ALONE, GroupCommit
from .retry import RetryPolicy
from .statements import BoundStatement, Rows

__all__ = ["POOLER_OPTION", "Database", "server_address", "unobserved"]

logger = logging.getLogger("langgraph_sqlalchemy")

T = TypeVar("T")

#: Execution option that ``create_engine(pgbouncer=True)`` sets on its engine: the engine sits
#: behind a transaction-mode pooler, so every statement must run inside an explicit transaction.
POOLER_OPTION = "langgraph_sqlalchemy_transaction_pooler"

#: Execution option that turns the driver shortcut of :meth:`Database.fetch` off for an engine
#: (for example to compare both paths, or to rule the shortcut out while debugging).
OBSERVABLE_OPTION = "langgraph_sqlalchemy_always_observable"

# A connection checkout slower than this is reported as a span event (a pool at capacity, or
# a new connection being opened).
_CONNECTION_WAIT_EVENT_SECONDS = 0.001

# Pools whose server some call of this process has reached (see RetryPolicy.first_contact_
# seconds). Keyed by pool: dispose() replaces an engine's pool, and with it what we know.
_REACHED: weakref.WeakSet[Any] = weakref.WeakSet()

# Every event an engine offers, connection and dialect events alike (statements, transactions,
# execution options, connects, errors), read from SQLAlchemy's own event classes. A listener of
# any of them sends every call the observable way.
_CONNECTION_EVENTS = tuple(
    name for name in dir(ConnectionEvents) if not name.startswith("_") and name != "dispatch"
)
_DIALECT_EVENTS = tuple(
    name for name in dir(DialectEvents) if not name.startswith("_") and name != "dispatch"
)
# Pool events, but for connect and first_connect: the dialect itself listens to those on
# every engine, and they fire while a new connection is opened inside the checkout, the same
# way on both paths. A listener of any other (checkout, checkin, reset ...) watches the
# engine's connections, and whoever attached it gets the observable path too.
_POOL_EVENTS = tuple(
    name
    for name in dir(PoolEvents)
    if not name.startswith("_") and name not in ("dispatch", "connect", "first_connect")
)
_connection_listeners = operator.attrgetter(*_CONNECTION_EVENTS)
_dialect_listeners = operator.attrgetter(*_DIALECT_EVENTS)
_pool_listeners = operator.attrgetter(*_POOL_EVENTS)
# SQLAlchemy's engine logger (echo sets its level; so may a host's logging configuration).
_ENGINE_LOGGER = logging.getLogger("sqlalchemy.engine.Engine")


def unobserved(engine: Engine) -> bool:
    """Whether a statement sent straight on the driver connection changes nothing anyone sees.

    Not with ``echo``, the ``sqlalchemy.engine`` logger enabled at INFO (or finer) by the host,
    a listener of any connection, dialect or pool event on the engine, its pool or their
    classes (the pool's connect events aside, see ``_POOL_EVENTS``), a
    ``schema_translate_map``, a driver other than asyncpg, or the engine's
    ``langgraph_sqlalchemy_always_observable`` execution option.
    """
    if engine.echo or engine.dialect.driver != "asyncpg":
        return False
    if _ENGINE_LOGGER.isEnabledFor(logging.INFO):
        return False
    if engine.logging_name and logging.getLogger(
        f"sqlalchemy.engine.Engine.{engine.logging_name}"
    ).isEnabledFor(logging.INFO):
        return False
    if (
        any(_connection_listeners(engine.dispatch))
        or any(_dialect_listeners(engine.dialect.dispatch))
        or any(_pool_listeners(engine.pool.dispatch))
    ):
        return False
    options = engine.get_execution_options()
    return not (options.get("schema_translate_map") or options.get(OBSERVABLE_OPTION))


def _groupable(engine: Engine) -> bool:
    """Whether a write may go out in a group: the group sends the SQL compiled once with
    ``exec_driver_sql``, which neither applies a ``schema_translate_map`` (the statement would
    land in the untranslated tables) nor fires ``before_execute`` / ``after_execute``. With
    either, the write runs on its own, as :meth:`BoundStatement.execute` runs it."""
    if engine.get_execution_options().get("schema_translate_map"):
        return False
    return not (engine.dispatch.before_execute or engine.dispatch.after_execute)


def _never_reached(pool: Pool) -> bool:
    """Whether no call of ours has reached this pool's server, and the pool holds no
    connection (a host that has been using the engine has, and then a refused connection
    means the server went away, not a wrong address)."""
    if pool in _REACHED:
        return False
    return not (isinstance(pool, QueuePool) and pool.checkedin() + pool.checkedout() > 0)


def server_address(engine: AsyncEngine) -> str:
    """The server address of ``engine`` for messages: host and port, or the socket path."""
    url = engine.url
    host = url.query.get("host") if url.host is None else url.host
    if isinstance(host, tuple):
        host = ",".join(host)
    if host is None:
        return "the default local socket"
    if str(host).startswith("/"):
        return f"socket directory {host}"
    return f"{host}:{url.port or 5432}"


class Database:
    """Transactions, retries and error translation for one engine or host connection."""

    def __init__(
        self,
        bind: AsyncEngine | AsyncConnection,
        *,
        retry: RetryPolicy | None = None,
        group_commit: bool = False,
    ) -> None:
        """``group_commit``: concurrent writes of one kind share a round trip and a commit
        (see :mod:`.group_commit`); engine-bound only (a host connection is one connection)."""
        if isinstance(bind, AsyncEngine):
            self.engine: AsyncEngine | None = bind
            self.connection: AsyncConnection | None = None
            # An option view of the same pool for single statements (see the module docstring).
            self._autocommit_engine = bind.execution_options(isolation_level="AUTOCOMMIT")
            # Behind a transaction-mode pooler only an explicit transaction pins one server
            # connection for every protocol message of a statement (asyncpg prepares it, may
            # introspect its types, then binds it; outside a transaction PgBouncer may hand
            # those to different server connections: "prepared statement ... does not exist").
            # Engines from create_engine(pgbouncer=True) say so; for other engines the first
            # such error turns autocommit off (see _attempts()).
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
        self.group_commit = (
            GroupCommit() if group_commit and isinstance(bind, AsyncEngine) else None
        )
        # One asyncpg connection runs one statement at a time; calls sharing a host connection
        # queue here instead of failing with "another operation is in progress".
        self._connection_lock = asyncio.Lock() if self.connection is not None else None
        url = self.bind.engine.url if isinstance(self.bind, AsyncConnection) else self.bind.url
        self.span_attributes: dict[str, Any] = {"db.namespace": url.database or ""}
        if url.host:
            self.span_attributes["server.address"] = url.host
            self.span_attributes["server.port"] = url.port or 5432

    @property
    def bind(self) -> AsyncEngine | AsyncConnection:
        if self.engine is not None:
            return self.engine
        assert self.connection is not None
        return self.connection

    @property
    def dialect_name(self) -> str:
        return self.bind.dialect.name

    # --- the two ways in --------------------------------------------------------------------

    async def fetch(self, statement: BoundStatement, *, op: str) -> Rows:
        """Run one idempotent statement on its own and return all its rows.

        The saver's and the store's hot calls come here. When nothing could observe the
        difference (:func:`unobserved`), the statement's compiled SQL goes straight to the
        asyncpg connection under an ``AsyncConnection`` (``get_raw_connection()``,
        ``driver_connection``): checkout, pre-ping and return are the pool's and SQLAlchemy's
        as usual; SQLAlchemy's execution layer, which nobody is watching, is skipped.
        ``benchmarks/layers.py`` measures what that saves. A statement that fails there is
        translated from the driver's error and never sent a second time (transient failures
        aside, which are retried like any others).
        """
        if self.engine is None:
            return await self._run_on_host_connection(statement.execute, op=op)
        engine = self._autocommit_engine
        if (
            self.group_commit is not None
            and not statement.statement.returns_rows
            and self._autocommit_single_statements
            and _groupable(self.engine.sync_engine)
            and (form := statement.driver_form(engine.dialect)) is not None
        ):

            async def attempts(work: Callable[[AsyncConnection], Awaitable[None]]) -> None:
                await self._attempts(lambda autocommit: self._once(work, autocommit), op=op)

            if await self.group_commit.submit(*form, attempts) is not RUN_ALONE:
                return ()
        if (
            self._autocommit_single_statements
            and unobserved(self.engine.sync_engine)
            and (form := statement.driver_form(engine.dialect)) is not None
        ):
            sql, values = form
            tried = False

            def direct(autocommit: bool) -> Awaitable[Rows]:
                # Only the first attempt takes the shortcut. A retry follows a lost connection,
                # and SQLAlchemy's Connection, on meeting one, invalidates every connection of
                # the pool opened before it (they died with the same server or reaper), which
                # the shortcut, outside SQLAlchemy's error handling, cannot do. A pooler that
                # turned up (autocommit off) also means the ordinary way from now on.
                nonlocal tried
                if tried or not autocommit:
                    return self._once(statement.execute, autocommit)
                tried = True
                return self._on_driver(sql, values)

            return await self._attempts(direct, op=op, direct=True)
        return await self._attempts(
            lambda autocommit: self._once(statement.execute, autocommit), op=op
        )

    async def run(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        op: str,
        single_statement: bool = False,
    ) -> T:
        """Run ``work`` in one transaction and return what it returns.

        ``work`` must be idempotent (it may run more than once) and must read everything it
        needs before returning: the connection goes back to the pool right after.
        ``single_statement=True`` promises that ``work`` issues exactly one statement, which
        then runs on an AUTOCOMMIT connection, without BEGIN and COMMIT.
        """
        if self.connection is not None:
            return await self._run_on_host_connection(work, op=op)
        return await self._attempts(
            lambda autocommit: self._once(work, autocommit and single_statement), op=op
        )

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
            async with self._autocommit_engine.connect() as conn:
                yield conn
        except LangGraphSQLAlchemyError:
            raise
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            raise translate(exc, op) from driver_exception(exc)

    # --- engine-bound calls ---------------------------------------------------------------

    async def _attempts(
        self,
        once: Callable[[bool], Awaitable[T]],
        *,
        op: str,
        direct: bool = False,
    ) -> T:
        """Run ``once(autocommit)`` until it succeeds or the retry policy gives up.

        ``autocommit`` says whether a single statement may run outside a transaction (not
        behind a transaction-mode pooler); ``direct``: ``once`` sends on the driver itself.
        """
        assert self.engine is not None
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            autocommit = self._autocommit_single_statements
            try:
                result = await once(autocommit)
            except LangGraphSQLAlchemyError:
                raise
            except Exception as exc:
                if not is_driver_error(exc):
                    raise  # a bug or bad input inside work: the caller's to see, unchanged
                if autocommit and sqlstate(exc) == UNKNOWN_PREPARED_STATEMENT:
                    self._leave_autocommit(op)
                    continue  # the statement never ran (its Bind failed): safe to run again
                if direct and not is_transient(exc):
                    # Failed on a healthy connection (bad data, a constraint): the driver's
                    # verdict is final, and the statement is not sent a second time.
                    raise translate(exc, op) from driver_exception(exc)
                await self._retry_or_raise(exc, op, attempt, started)
                continue
            _REACHED.add(self.engine.sync_engine.pool)
            return result

    async def _once(self, work: Callable[[AsyncConnection], Awaitable[T]], autocommit: bool) -> T:
        """One attempt on a connection of its own.

        Not ``async with engine.connect()``: its exit closes the connection in a task of its
        own (so that a cancellation cannot abandon the close halfway), which costs a task and
        a loop iteration per call. Closing an AUTOCOMMIT connection after a statement that
        succeeded does no I/O, so nothing can interrupt it; every other exit goes through
        :func:`_release_after_failure`, which does take that care.
        """
        assert self.engine is not None
        engine = self._autocommit_engine if autocommit else self.engine
        checkout = time.perf_counter()
        conn = await engine.connect()
        _report_wait(checkout)
        try:
            if autocommit:
                result = await work(conn)
            else:
                await conn.begin()
                result = await work(conn)
                await conn.commit()
        except BaseException as exc:
            await _release_after_failure(conn, exc)
            raise
        await conn.close()
        return result

    async def _on_driver(self, sql: str, values: tuple[Any, ...]) -> Rows:
        """``sql`` on the asyncpg connection of a pooled connection, outside any transaction.

        From a ``QueuePool`` (every async engine's default) the connection is checked out
        bare (``AsyncEngine.raw_connection()``): no transaction of SQLAlchemy's is ever open
        on it, so giving it back to a pool with room does no I/O and needs none of
        SQLAlchemy's greenlet. Where the return would have to close it (an overflow
        connection given back to a full pool), or after a failure that may have killed it, it
        is closed here first, on the loop, with asyncpg's own ``close()`` (which lets the
        cancel request of a cancelled statement reach the server and stop it there), and the
        pool gets it back invalidated. Any other pool (``NullPool`` closes every connection on
        its return) gets an ``AsyncConnection``, whose close runs inside the greenlet.
        """
        assert self.engine is not None
        pool = self.engine.sync_engine.pool
        if not isinstance(pool, QueuePool):
            return await self._on_driver_of_connection(sql, values)
        checkout = time.perf_counter()
        raw = await self.engine.raw_connection()
        _report_wait(checkout)
        driver: Any = raw.driver_connection
        try:
            rows: Rows = await driver.fetch(sql, *values)
        except BaseException as exc:
            await _finish(
                _give_back(raw, driver, pool, failure=exc),
                pass_on_cancel=not isinstance(exc, asyncio.CancelledError),
            )
            raise
        if _has_room(pool):
            raw.close()  # into the pool's queue: no I/O
        else:
            await _finish(_give_back(raw, driver, pool, failure=None))
        return rows

    async def _on_driver_of_connection(self, sql: str, values: tuple[Any, ...]) -> Rows:
        """:meth:`_on_driver` for pools other than ``QueuePool``: the asyncpg connection under
        an ``AsyncConnection`` at the engine's own isolation level (SQLAlchemy begins nothing
        on it, as it executes nothing), closed or invalidated inside the greenlet."""
        assert self.engine is not None
        checkout = time.perf_counter()
        conn = await self.engine.connect()
        _report_wait(checkout)
        try:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            rows: Rows = await driver.fetch(sql, *values)
        except BaseException as exc:
            await _release_after_failure(conn, exc)
            raise
        await conn.close()
        return rows

    def _leave_autocommit(self, op: str) -> None:
        self._autocommit_single_statements = False
        logger.warning(
            "%s: a prepared statement vanished between two protocol messages; this engine "
            "seems to sit behind PgBouncer in transaction mode. Single statements now run in "
            "explicit transactions. Create the engine with "
            "langgraph_sqlalchemy.engine.create_engine(url, pgbouncer=True) to say so up front.",
            op,
        )

    async def _retry_or_raise(
        self, exc: Exception, op: str, attempt: int, started: float
    ) -> None:
        """After attempt ``attempt`` failed with ``exc``: wait before the next one, or raise."""
        assert self.engine is not None
        if not is_transient(exc):
            raise translate(exc, op) from driver_exception(exc)
        first_contact = _never_reached(self.engine.sync_engine.pool)
        if first_contact:
            # Never reached in this process: most likely a wrong address or a server that is
            # not running. A short budget, and the address in the message.
            elapsed = time.monotonic() - started
            delay = self.retry.backoff(attempt)
            if (
                attempt >= self.retry.max_attempts
                or elapsed + delay > self.retry.first_contact_seconds
            ):
                raise DatabaseUnavailableError(
                    f"{op}: could not reach PostgreSQL at {server_address(self.engine)} "
                    f"({attempt} attempt{'s' if attempt > 1 else ''} in {elapsed:.1f}s; "
                    f"{describe(exc)}); is the server running, and are the host, port and "
                    "socket path right?"
                ) from exc
        elif attempt >= self.retry.max_attempts:
            raise translate(exc, op, exhausted=True) from driver_exception(exc)
        else:
            delay = self.retry.backoff(attempt)
        logger.warning(
            "%s: transient database error (attempt %d of %d), retrying in %.2fs: %s",
            op, attempt, self.retry.max_attempts, delay, describe(exc),
        )
        event: dict[str, Any] = {
            "attempt": attempt,
            "delay_s": delay,
            "error.type": type(exc).__qualname__,
        }
        code = sqlstate(exc)
        if code is not None:
            event["db.response.status_code"] = code
        telemetry.record_event("db.client.retry", event)
        await asyncio.sleep(delay)

    # --- connection-bound calls -------------------------------------------------------------

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
                if not is_driver_error(exc):
                    raise
                raise translate(exc, op) from driver_exception(exc)


async def _release_after_failure(conn: AsyncConnection, exc: BaseException) -> None:
    """Give back a connection whose call failed or was cancelled, whatever happens meanwhile.

    After a cancellation the statement may still be running on that socket, so the connection
    is invalidated rather than returned as if idle; otherwise ``close()`` rolls back whatever
    was open. Runs to completion in a task of its own even if the caller is cancelled again,
    and never replaces the caller's exception with its own.
    """

    async def release() -> None:
        try:
            if _connection_may_be_dead(exc):
                await conn.invalidate()
            await conn.close()
        except Exception:
            logger.debug("releasing a connection after a failed call failed", exc_info=True)
            try:
                await conn.invalidate()
            except Exception:
                logger.debug("invalidating it failed too", exc_info=True)

    # A caller cancelled in the first place re-raises that cancellation itself.
    await _finish(release(), pass_on_cancel=not isinstance(exc, asyncio.CancelledError))


def _has_room(pool: QueuePool) -> bool:
    """Whether a connection given back now stays in the pool (its queue is not full; a
    ``pool_size`` of 0 means no limit), so that the return does no I/O."""
    size = pool.size()
    return size <= 0 or pool.checkedin() < size


async def _give_back(
    raw: PoolProxiedConnection, driver: Any, pool: QueuePool, failure: BaseException | None
) -> None:
    """Return a bare pooled connection whose return may need I/O (see ``Database._on_driver``).

    After a failure that may have killed it, and whenever the pool has no room for it, the
    asyncpg connection is closed here, gracefully (a cancelled statement's cancel request
    goes out and is answered first; at most two seconds, as SQLAlchemy's own invalidation
    allows), and the pool gets it back invalidated: it opens a new one when it needs one.
    Otherwise it goes back as it is.
    """
    healthy = failure is None or not _connection_may_be_dead(failure)
    if healthy and _has_room(pool):
        raw.close()
        return
    try:
        await driver.close(timeout=2)
    except BaseException:
        logger.debug("closing a connection gracefully failed; terminating it", exc_info=True)
        driver.terminate()
    raw.invalidate(failure if isinstance(failure, Exception) else None)
    raw.close()


async def _finish(work: Awaitable[None], *, pass_on_cancel: bool = True) -> None:
    """Run ``work`` to completion in a task of its own, even if the caller is cancelled
    meanwhile; that cancellation is raised once it is done (unless ``pass_on_cancel`` is
    False: the caller is already on its way out with one)."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if not task.cancelled() and task.exception() is not None:
        logger.debug("giving a connection back failed", exc_info=task.exception())
    if cancelled and pass_on_cancel:
        raise asyncio.CancelledError()


def _report_wait(checkout: float) -> None:
    """A span event for a checkout (started at ``checkout``) slow enough to matter."""
    waited = time.perf_counter() - checkout
    if waited >= _CONNECTION_WAIT_EVENT_SECONDS:
        telemetry.record_event(
            "db.client.connection.wait", {"db.client.connection.wait_time": waited}
        )


def _connection_may_be_dead(exc: BaseException) -> bool:
    """Whether the connection must not go back to the pool after ``exc``.

    A cancelled statement may still be running on the socket; a lost connection (which a
    statement sent straight on the driver leaves SQLAlchemy unaware of) is dead. A
    serialization failure or deadlock is transient too, but leaves a healthy connection.
    """
    if isinstance(exc, asyncio.CancelledError):
        return True
    return is_transient(exc) and sqlstate(exc) not in ("40001", "40P01")
