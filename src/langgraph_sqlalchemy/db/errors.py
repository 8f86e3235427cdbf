"""Reading database failures: one SQLSTATE reader, one transient test, one translator.

A failure reaches us in one of three shapes: wrapped by SQLAlchemy (``DBAPIError`` with the
adapter's exception in ``orig`` and asyncpg's in its ``__cause__``), raw from asyncpg (a
statement sent on the driver connection, or a pooled connection failing its set-up queries), or
as a plain ``OSError`` from the socket while connecting. Everything here reads all three, so
the retry loop and the error messages do not depend on which path a statement took.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import exc as sa_exc

from ..errors import DatabaseError, DatabaseUnavailableError, LangGraphSQLAlchemyError

__all__ = [
    "UNDEFINED_TABLE",
    "UNKNOWN_PREPARED_STATEMENT",
    "describe",
    "driver_exception",
    "is_driver_error",
    "is_transient",
    "sqlstate",
    "translate",
]

# After these the same idempotent transaction can simply be run again. 57P01/02/03: the server
# is shutting down, crashed, or is still starting (an immediate restart, a failover,
# pg_terminate_backend from an idle reaper). 40001/40P01: serialization failure and deadlock,
# which Postgres documents as "retry the transaction". 53300: too many connections, typical
# while a restarted server's pools refill. Class 08 (connection exceptions) is matched by prefix.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "53300"})

#: invalid_sql_statement_name: the server connection does not know the prepared statement the
#: client binds (a transaction-mode pooler moved the session to another server connection).
UNKNOWN_PREPARED_STATEMENT = "26000"

#: undefined_table: the schema was never migrated here (or the vector layer never created).
UNDEFINED_TABLE = "42P01"

# What asyncpg says when the socket went away under it; some of these carry no SQLSTATE
# (asyncpg's InterfaceError family) or arrive wrapped in a plain SQLAlchemy error. The last one
# is asyncpg refusing, before sending anything, to start a statement on a connection whose
# protocol is still in another state: seen when the server's FATAL message (a terminated
# backend) has arrived but the socket's close has not been processed yet.
_LOST_CONNECTION_MARKERS = (
    "connection is closed",
    "closed in the middle of operation",
    "connection was closed",
    "unexpected connection_lost",
    "connection reset",
    "another operation",
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, then what it wraps (``orig``) and what caused it, without cycles."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        orig = getattr(current, "orig", None)
        pending.extend([orig if isinstance(orig, BaseException) else None, current.__cause__])
    return seen


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database failure in any of its shapes, or None (no server verdict)."""
    for candidate in _chain(exc):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _from_asyncpg(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] == "asyncpg"


def is_driver_error(exc: BaseException) -> bool:
    """Raised by SQLAlchemy, its DBAPI adapter, the socket or asyncpg, as opposed to a bug or
    bad input of ours.

    A statement sent on the asyncpg connection itself (the driver shortcut of
    ``Database.fetch``) fails with asyncpg's own exceptions, which no ``Connection`` wrapped in
    SQLAlchemy's.
    """
    if isinstance(exc, (sa_exc.SQLAlchemyError, OSError, asyncio.TimeoutError)):
        return True
    return type(exc).__module__.split(".")[0] in ("asyncpg", "sqlalchemy")


def _mentions_lost_connection(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _LOST_CONNECTION_MARKERS)


def is_transient(exc: BaseException) -> bool:
    """Whether running the same idempotent transaction again can succeed.

    True for a lost or refused connection (SQLSTATE class 08, socket errors, asyncpg's
    "connection is closed"), a server shutting down, restarting or still recovering (57P01,
    57P02, 57P03), too many connections (53300), a serialization failure or deadlock (40001,
    40P01) and a timeout while connecting. False for everything that would fail the same way
    again: constraint violations, bad input, permissions, syntax, and a full pool
    (``sqlalchemy.exc.TimeoutError``, which more waiting would not cure quickly).
    """
    if isinstance(exc, sa_exc.TimeoutError):
        return False
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    if code is not None:
        return code.startswith("08") or code in _TRANSIENT_SQLSTATES
    if isinstance(exc, sa_exc.DBAPIError):
        return _mentions_lost_connection(exc.orig) if exc.orig is not None else False
    # asyncpg raises plain OSErrors (refused, reset, broken pipe, TimeoutError) while
    # connecting, and SQLAlchemy passes them through unwrapped. On Python 3.10
    # asyncio.TimeoutError is not an OSError yet.
    if isinstance(exc, (OSError, asyncio.TimeoutError)):
        return True
    return _from_asyncpg(exc) and _mentions_lost_connection(exc)


def driver_exception(exc: BaseException) -> BaseException:
    """asyncpg's own exception behind ``exc``, whichever way the statement went: under
    SQLAlchemy's ``DBAPIError`` sits its asyncpg adapter's PEP 249 exception, raised from
    asyncpg's; on the driver shortcut asyncpg's comes as it is. ``exc`` itself when there is
    no driver exception behind it (a socket error, a pool timeout)."""
    current = exc
    while isinstance(current, sa_exc.StatementError) and current.orig is not None:
        current = current.orig
    cause = current.__cause__
    if cause is not None and _from_asyncpg(cause):
        return cause
    return current


def describe(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's ``[SQL: ...] [parameters: ...]`` suffix:
    parameters are user data (checkpoint blobs, store values) and may be megabytes long."""
    found = driver_exception(exc)
    detail = str(found).strip()
    return f"{type(found).__name__}: {detail}" if detail else type(found).__name__


def translate(
    exc: BaseException, op: str, *, exhausted: bool = False, hint: str | None = None
) -> LangGraphSQLAlchemyError:
    """Our exception for a driver failure of call ``op``; the caller chains ``from exc``.

    ``exhausted``: the failure was transient but the retry budget is spent. ``hint`` is added
    to the message (what the user can do about it).
    """
    if isinstance(exc, LangGraphSQLAlchemyError):
        return exc
    suffix = f"; {hint}" if hint else ""
    if exhausted:
        return DatabaseUnavailableError(
            f"{op}: the database stayed unreachable: {describe(exc)}{suffix}"
        )
    if isinstance(exc, sa_exc.TimeoutError):
        return DatabaseUnavailableError(f"{op}: no pooled connection became free: {exc}{suffix}")
    code = sqlstate(exc)
    detail = describe(exc)
    if code == UNDEFINED_TABLE and hint is None:
        suffix = "; " + _missing_table_fix(detail)
    return DatabaseError(f"{op} failed ({code or 'no SQLSTATE'}): {detail}{suffix}")


def _missing_table_fix(detail: str) -> str:
    """What to run when a table is missing, by which one (the server names it)."""
    if "store_vectors" in detail:
        return (
            "the store's vector layer is missing: call setup() on a store configured with this "
            "index, or run `langgraph-sqlalchemy vectors --dims N` (with the index's options)"
        )
    return (
        "the schema is not set up in this database: call setup() on the saver or store, or "
        "run `langgraph-sqlalchemy upgrade` (or your Alembic upgrade of our migrations)"
    )
