"""The one way this library reaches the database.

:class:`Database` decides engine-versus-connection, opens the transaction, applies the retry
policy and translates errors. Everything else (the repositories, the saver, the store) receives
an ``AsyncConnection`` from :meth:`Database.run` and never commits or retries on its own.

Engine-bound (the normal case): each call checks a connection out of the host's pool, runs in
one transaction, and returns the connection (single statements beyond what the pool can lend
wait for a connection already out instead, and may share its transaction: see
:meth:`Database.fetch`). Every write this library makes is idempotent
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
import sys
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import Pool, QueuePool
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

    def rowless(self, dialect: Dialect) -> bool:
        """True when the statement returns no rows (DML without RETURNING); such statements
        may share a round trip (see _SharedConnections)."""


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
        and shielded close cost more CPU than the round trip. When more statements come at
        once than the pool can lend connections, the rest queue for the connections already
        out and may share their round trips (:class:`_SharedConnections`). Anything unusual
        on that path (an error, a dead connection) is not interpreted there: the statement is
        run again the ordinary way, through :meth:`run`, which wraps, retries and translates.
        """
        engine = self.engine
        form = None
        if engine is not None and self._autocommit_single_statements and _unobserved(engine):
            form = statement.driver_form(engine.dialect)
        if engine is None or form is None:
            return await self.run(statement.execute, op=op, single_statement=True)
        rowless = statement.rowless(engine.dialect)
        attempt = 0
        while True:
            attempt += 1
            try:
                rows = await _fetch_on_pooled_driver(engine, *form, rowless)
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
    engine: AsyncEngine, sql: str, values: tuple[Any, ...], rowless: bool = False
) -> Rows | None:
    """``sql`` on a connection of the engine's pool, outside any transaction.

    Raises a pool timeout and transient failures of the statement (the connection is then
    discarded). Returns None when no connection could be opened or the statement failed on
    a healthy one, for the caller to run it the ordinary way (SQLAlchemy's ``Connection``
    wraps checkout errors, which the pool raises unwrapped). ``rowless``: the statement
    returns no rows, so it may share a round trip with others (see _SharedConnections).
    """
    pool = engine.sync_engine.pool
    return await _shared_connections(pool).fetch(pool, sql, values, rowless)


# Round trips a worker makes on one checkout before it returns the connection and queues for
# it again: under sustained load the pool's other users (the host, the store) still get a turn.
_ROUND_TRIPS_PER_CHECKOUT = 32
# Most queued statements of one kind sent in one round trip.
_MAX_BATCH = 64

_Held = tuple[Any, Any]  # (SQLAlchemy's pooled-connection "fairy", the asyncpg connection)
# (sql, values, the caller's future, whether the statement returns no rows)
_Request = tuple[str, tuple[Any, ...], "asyncio.Future[Rows | None]", bool]
_Waiter = tuple[tuple[Any, ...], "asyncio.Future[Rows | None]"]


class _SharedConnections:
    """The connections one pool lends to direct statements, shared under contention.

    Uncontended, a statement checks a connection out, runs, and returns it. Once direct
    statements hold as many connections as the pool can give (``budget``), further ones queue
    here instead of in the pool, and whoever finishes a statement while some are queued keeps
    its connection and hands it to a worker task that runs the queue, then returns it. Under
    load (many graph runs on one saver) that saves each statement a checkout, a checkin, the
    pool's timed wait and two greenlet switches, together about as much CPU as asyncpg's own
    work for the statement. Every checkout still goes through the pool (events, pre-ping,
    reset-on-return).

    Queued statements that return no rows (a put, a task's writes) and share their SQL go in
    one round trip, asyncpg's ``executemany``: one implicit transaction, so one commit (one WAL
    flush) and one socket write for all of them. Each caller's statement is atomic as before
    and committed before its caller resumes; if the batch fails while the connection lives,
    nothing of it was applied and each statement is sent again on its own, so only the one at
    fault fails (and a deadlock between two batches costs a retry, not an error).
    """

    def __init__(self, budget: int, loop: asyncio.AbstractEventLoop) -> None:
        self.budget = budget
        self.loop = loop
        self.active = 0  # connections checked out (or being checked out) for direct statements
        self.pending: deque[_Request] = deque()
        # Strong references: the event loop keeps only weak ones to running tasks.
        self.workers: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        return self.active == 0 and not self.pending

    async def fetch(
        self, pool: Pool, sql: str, values: tuple[Any, ...], rowless: bool
    ) -> Rows | None:
        if self.active >= self.budget:
            future: asyncio.Future[Rows | None] = self.loop.create_future()
            self.pending.append((sql, values, future, rowless))
            return await future  # a cancelled caller cancels the future: workers skip it
        self.active += 1
        handed_over = False
        try:
            held = await _checkout(pool)
            if held is None:
                return None
            rows = await _run_on(*held, sql, values)
            if rows is None:
                return None
            if self.pending:
                self._start_worker(pool, held)
                handed_over = True
            else:
                await greenlet_spawn(held[0].close)
            return rows
        finally:
            if not handed_over:
                self.active -= 1
                self._kick(pool)

    def _start_worker(self, pool: Pool, held: _Held | None) -> None:
        """A task that serves the queue, on ``held`` or on connections it checks out; it owns
        one of the ``active`` slots (taken here when it brings no connection)."""
        if held is None:
            self.active += 1
        task = self.loop.create_task(self._serve(pool, held))
        self.workers.add(task)
        task.add_done_callback(self.workers.discard)

    def _kick(self, pool: Pool) -> None:
        """Workers for queued statements that no connection holder will reach (their holders
        failed or were cancelled instead of handing their connection over)."""
        if not self.pending:
            return
        waiting = sum(1 for _, _, future, _ in self.pending if not future.done())
        while waiting > 0 and self.active < self.budget:
            self._start_worker(pool, None)
            waiting -= 1

    def _settle_pending(self, outcome: BaseException | None) -> None:
        """Answer every queued statement: with ``outcome`` raised, or None (run it the
        ordinary way)."""
        while self.pending:
            _, _, future, _ = self.pending.popleft()
            _settle(future, outcome)

    async def _serve(self, pool: Pool, held: _Held | None) -> None:
        try:
            while held is not None or self.pending:
                if held is None:
                    try:
                        held = await _checkout(pool)
                    except sa_exc.TimeoutError as exc:
                        # The pool stayed full for its whole timeout; so did the queue.
                        self._settle_pending(exc)
                        return
                    if held is None:
                        # No connection could be opened: the next statement runs the ordinary
                        # way, which reports or retries that properly.
                        if self.pending:
                            _settle(self.pending.popleft()[2], None)
                        continue
                await self._drain(*held)
                held = None
        except asyncio.CancelledError:
            # The loop is shutting down (or someone cancelled all tasks): whatever is queued
            # goes the ordinary way on its callers' own tasks.
            self._settle_pending(None)
            raise
        except Exception:
            # Returning a connection failed (a pool event, the reset): nobody awaits this task,
            # so say so here; the queue goes the ordinary way, which meets the failure itself.
            logger.warning("direct statement worker failed", exc_info=True)
            self._settle_pending(None)
        finally:
            self.active -= 1

    async def _drain(self, fairy: Any, driver: Any) -> None:
        """Run queued statements on this connection, then give the connection up (at once if
        other workers emptied the queue in the meantime)."""
        round_trips = 0
        while self.pending and round_trips < _ROUND_TRIPS_PER_CHECKOUT:
            sql, values, future, rowless = self.pending.popleft()
            if future.done():
                continue  # its caller was cancelled while it waited
            round_trips += 1
            batch: list[_Waiter] = [(values, future)]
            if rowless:
                batch.extend(self._take_same_kind(sql))
            rows: Rows | None
            if len(batch) > 1:
                try:
                    await driver.executemany(sql, [args for args, _ in batch])
                except asyncio.CancelledError:
                    await greenlet_spawn(fairy.invalidate)
                    _settle_all(batch, None)
                    raise
                except Exception as exc:
                    if not driver.is_closed():
                        # Nothing of the batch was applied: each statement again on its own.
                        self.pending.extendleft(
                            (sql, args, waiter, False) for args, waiter in reversed(batch)
                        )
                        continue
                    await greenlet_spawn(fairy.invalidate)
                    _settle_all(batch, exc if is_transient(exc) else None)
                    return
                rows = ()
            else:
                try:
                    rows = await _run_on(fairy, driver, sql, values)
                except asyncio.CancelledError:
                    _settle(future, None)
                    raise
                except Exception as exc:  # transient: the connection is gone, the caller retries
                    _settle(future, exc)
                    return
                if rows is None:  # failed on a healthy connection, which went back to the pool
                    _settle(future, None)
                    return
            if not self.pending or round_trips == _ROUND_TRIPS_PER_CHECKOUT:
                # Back in the pool before the callers resume: a caller that disposes the
                # engine right after its last statement finds every connection checked in.
                try:
                    await greenlet_spawn(fairy.close)
                finally:
                    _settle_all(batch, rows)
                return
            _settle_all(batch, rows)
        await greenlet_spawn(fairy.close)

    def _take_same_kind(self, sql: str) -> list[_Waiter]:
        """Queued rowless statements with this SQL, taken off the queue in queue order."""
        taken: list[_Waiter] = []
        kept: deque[_Request] = deque()
        for request in self.pending:
            other_sql, args, future, rowless = request
            if future.done():
                continue
            if rowless and len(taken) < _MAX_BATCH - 1 and other_sql == sql:
                taken.append((args, future))
            else:
                kept.append(request)
        self.pending = kept
        return taken


def _settle(future: asyncio.Future[Rows | None], outcome: Rows | BaseException | None) -> None:
    """Answer a queued statement's caller: rows, an error to raise, or None (run it the
    ordinary way); nothing if the caller gave up."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _settle_all(batch: Sequence[_Waiter], outcome: Rows | BaseException | None) -> None:
    for _, future in batch:
        _settle(future, outcome)


# Per pool (an engine's dispose() replaces its pool). Values must not refer to their pool.
_SHARED: weakref.WeakKeyDictionary[Pool, _SharedConnections] = weakref.WeakKeyDictionary()


def _shared_connections(pool: Pool) -> _SharedConnections:
    loop = asyncio.get_running_loop()
    shared = _SHARED.get(pool)
    if shared is not None and shared.loop is loop:
        return shared
    if shared is None or shared.idle:
        shared = _SHARED[pool] = _SharedConnections(_connection_budget(pool), loop)
        return shared
    # Busy on another event loop at this very moment (a pool must not be used so, but it
    # is not ours to refuse): no sharing, every statement checks out on its own.
    return _SharedConnections(sys.maxsize, loop)


def _connection_budget(pool: Pool) -> int:
    """How many connections direct statements may hold at once: what the pool can lend.

    A pool that never makes a checkout wait (no limit on overflow, NullPool, ...) gets no
    limit, so nothing queues here and every statement checks out on its own.
    """
    if isinstance(pool, QueuePool):
        max_overflow: int = getattr(pool, "_max_overflow", -1)
        if max_overflow >= 0:
            return max(pool.size() + max_overflow, 1)
    return sys.maxsize


async def _checkout(pool: Pool) -> _Held | None:
    """A pooled asyncpg connection with no transaction open, or None (see the caller)."""
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
    return fairy, driver


async def _run_on(fairy: Any, driver: Any, sql: str, values: tuple[Any, ...]) -> Rows | None:
    """``sql`` on a checked-out connection. On failure the connection is given up: discarded
    when it may be unusable, else returned; then a transient error is raised, any other
    failure returns None."""
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
    return rows
