"""Hot-path statements compiled once per dialect and sent as their SQL text.

``conn.execute(select(...))`` finds a statement's SQL in SQLAlchemy's compiled cache, but to look
it up it first walks the whole expression tree to build the cache key, on every call; then it
builds a cursor result around the rows. For the checkpoint read (three correlated subqueries)
that costs more CPU than asyncpg spends on the round trip, and a graph step makes several such
calls. :class:`PrecompiledStatement` keeps each statement's compiled SQL and parameter order per
dialect (built from the same Core statement, with the same bind processors applied) and runs it:

* on an autocommit connection (every engine-bound saver call that is one statement) nobody
  watches: straight on the pooled asyncpg connection, the same prepared statement SQLAlchemy
  would have used, about half the CPU of the full path;
* otherwise with ``exec_driver_sql``: a host's transaction, cursor-execute event listeners
  (tracing, ``echo``) and error wrapping see the statement exactly as before, minus the walk.

A failure on the direct path is not interpreted here: the statement (idempotent, like everything
:class:`~langgraph_sqlalchemy.database.Database` runs) is sent again through SQLAlchemy, which
then raises its usual wrapped error, invalidates a dead connection and the pool behind it, and
lets ``Database.run`` decide about retrying.

It falls back to the ordinary ``execute`` whenever the compiled text would not be final: a
dialect with named parameters, parameters rendered at execution time ("post-compile"), or a
connection with a ``schema_translate_map``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, Executable
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement

__all__ = ["BoundStatement", "PrecompiledStatement"]

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Form:
    sql: str
    # Per positional parameter: its name and the type's bind processor (None: passed as is).
    names: tuple[str, ...]
    processors: tuple[_Processor, ...]
    # Values fixed in the statement itself (JSON keys, constants), already processed.
    constants: Mapping[str, Any]
    # INSERT, UPDATE or DELETE without RETURNING: the driver returns no rows for it.
    rowless: bool

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            self.constants[name]
            if name not in params
            else (processor(params[name]) if processor is not None else params[name])
            for name, processor in zip(self.names, self.processors, strict=True)
        )


def _direct_driver(sync: Connection, options: Mapping[str, Any]) -> Any | None:
    """The asyncpg connection, when sending on it directly changes nothing observable.

    Only in autocommit (no transaction of SQLAlchemy's to begin first), on a live connection,
    with no cursor-execute listeners and no ``echo`` on the engine.
    """
    if options.get("isolation_level") != "AUTOCOMMIT":
        return None
    if sync.invalidated or sync.closed or sync.engine.echo:
        return None
    dispatch = sync.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
        return None
    driver = sync.connection.driver_connection
    if driver is None or type(driver).__module__.split(".")[0] != "asyncpg":
        return None
    return driver


def _rows(result: CursorResult[Any]) -> Sequence[Sequence[Any]]:
    return result.all() if result.returns_rows else ()


class PrecompiledStatement:
    """A Core statement whose compiled SQL is kept per dialect (see the module docstring)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._forms: weakref.WeakKeyDictionary[Dialect, _Form | None] = (
            weakref.WeakKeyDictionary()
        )

    def _form(self, dialect: Dialect) -> _Form | None:
        try:
            return self._forms[dialect]
        except KeyError:
            pass
        form = self._compile(dialect)
        self._forms[dialect] = form
        return form

    def _compile(self, dialect: Dialect) -> _Form | None:
        assert isinstance(self.statement, ClauseElement)
        compiled: Any = self.statement.compile(dialect=dialect)
        names = getattr(compiled, "positiontup", None)
        if not dialect.positional or names is None:
            return None
        if compiled.literal_execute_params or compiled.post_compile_params:
            return None
        processors = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        constants: dict[str, Any] = {}
        for name, processor in zip(names, processors, strict=True):
            bind = compiled.binds[name]
            if not bind.required:
                value = bind.effective_value
                constants[name] = processor(value) if processor is not None else value
        rowless = (
            compiled.isinsert or compiled.isupdate or compiled.isdelete
        ) and not compiled.effective_returning
        return _Form(str(compiled), tuple(names), processors, constants, bool(rowless))

    def bind(self, params: Mapping[str, Any]) -> BoundStatement:
        """The statement with its parameters, for :meth:`Database.fetch
        <langgraph_sqlalchemy.database.Database.fetch>`."""
        return BoundStatement(self, params)

    def driver_form(
        self, dialect: Dialect, params: Mapping[str, Any]
    ) -> tuple[str, tuple[Any, ...]] | None:
        """SQL text and positional values for the driver, or None if only SQLAlchemy can
        render this statement (see the module docstring)."""
        form = self._form(dialect)
        return None if form is None else (form.sql, form.values(params))

    def rowless(self, dialect: Dialect) -> bool:
        """Whether the statement returns no rows (DML without RETURNING): then
        :meth:`Database.fetch <langgraph_sqlalchemy.database.Database.fetch>` may send it
        in one round trip with others of its kind."""
        form = self._form(dialect)
        return form is not None and form.rowless

    async def execute(
        self, conn: AsyncConnection, params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """Run the statement on ``conn`` and return all its rows (empty for DML)."""
        sync = conn.sync_connection
        form = self._form(conn.dialect)
        options = sync.get_execution_options() if sync is not None else {}
        if form is None or sync is None or options.get("schema_translate_map"):
            return _rows(await conn.execute(self.statement, dict(params)))
        values = form.values(params)
        driver = _direct_driver(sync, options)
        if driver is not None:
            try:
                rows: Sequence[Sequence[Any]] = await driver.fetch(form.sql, *values)
                return rows
            except asyncio.CancelledError:
                # The query may still be running on that socket: the connection must not go
                # back to the pool as if it were idle.
                await conn.invalidate()
                raise
            except Exception:
                pass  # sent again below, through SQLAlchemy (see the module docstring)
        return _rows(await conn.exec_driver_sql(form.sql, values))


@dataclass(frozen=True)
class BoundStatement:
    """A precompiled statement and its parameters: one single-statement database call."""

    statement: PrecompiledStatement
    params: Mapping[str, Any]

    def driver_form(self, dialect: Dialect) -> tuple[str, tuple[Any, ...]] | None:
        return self.statement.driver_form(dialect, self.params)

    def rowless(self, dialect: Dialect) -> bool:
        return self.statement.rowless(dialect)

    async def execute(self, conn: AsyncConnection) -> Sequence[Sequence[Any]]:
        return await self.statement.execute(conn, self.params)
