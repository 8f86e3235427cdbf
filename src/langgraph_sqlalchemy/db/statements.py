"""Statements compiled once, then executed with nothing but their values.

``conn.execute(select(...), params)`` finds a statement's SQL in SQLAlchemy's compiled cache,
but every call still hashes the statement's cache key, builds and processes a parameter
dictionary and sets up the compiled execution context; for the checkpoint read (three
correlated subqueries) that is a large part of the client's work. :class:`Statement` compiles
a Core statement once per dialect through public API (``compile()`` and
``construct_expanded_state()``), keeps the SQL text, the order of its positional parameters,
their bind processors and the constants fixed in the statement, and runs it with
``AsyncConnection.exec_driver_sql``: the statement still passes through the connection's
execution machinery, so ``echo``, the ``sqlalchemy.engine`` logger, ``handle_error`` and the
cursor-execute listeners (tracing, APM agents) see it exactly once. ``exec_driver_sql`` does not
fire ``before_execute`` / ``after_execute``; with a listener of those on the engine the Core
statement runs through ``conn.execute`` instead, and they see it once too.

Only public API: from the compiled object ``Compiled.string`` and ``params`` and
``SQLCompiler.construct_expanded_state()`` (whose ``ExpandedState.positional_parameters``
gives the values in the driver's order, the constants among them); the parameters' types from
the statement's own ``BindParameter`` objects (``sqlalchemy.sql.visitors.iterate``), and their
processors from ``TypeEngine.dialect_impl().bind_processor()``. Anything these do not settle
for certain (a constant that binds of different types share and would send differently)
leaves the statement to ``conn.execute``. A test compares, for every statement, the SQL
and values this module sends with what ``conn.execute`` itself sends, so an upgrade of
SQLAlchemy that changed any of it fails there first.

This module is the only place that touches compiled forms. Statements whose text would not
be final (parameters rendered at execution time, a dialect with named parameters, a
connection with a ``schema_translate_map``) run through ``conn.execute`` unchanged.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

__all__ = ["BoundStatement", "CompiledForm", "Rows", "Statement"]

Rows = Sequence[Sequence[Any]]
E = TypeVar("E", bound=Executable)

_Processor = Callable[[Any], Any]


class _Slot:
    """A stand-in value that shows where a parameter lands among the positional values."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class CompiledForm:
    """A statement's final SQL for one dialect and how to turn parameters into its values."""

    __slots__ = ("_slots", "sql")

    def __init__(self, sql: str, slots: Sequence[tuple[str | None, Any, _Processor | None]]):
        self.sql = sql
        # Per positional parameter: (its name, or None for a constant; the constant, already
        # processed; the bind processor, None when the driver takes the value as it is).
        self._slots = tuple(slots)

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's positional values for ``params``."""
        values = []
        for name, constant, processor in self._slots:
            if name is None:
                values.append(constant)
                continue
            try:
                value = params[name]
            except KeyError:
                raise KeyError(f"no value for the statement's parameter {name!r}") from None
            values.append(value if processor is None else processor(value))
        return tuple(values)


def _compile(statement: ClauseElement, dialect: Dialect) -> CompiledForm | None:
    if not dialect.positional:
        return None
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler):
        return None  # DDL: not a statement this library runs hot
    known = compiled.params  # every parameter; None for those the caller must give
    slots = {name: _Slot(name) for name, value in known.items() if value is None}
    state = compiled.construct_expanded_state({**known, **slots}, escape_names=False)
    if state.parameter_expansion or state.statement != compiled.string:
        return None  # rendered at execution time: the text differs from call to call
    binds = _binds_of(statement)
    entries: list[tuple[str | None, Any, _Processor | None]] = []
    # The values in the driver's order: a _Slot where the caller's value goes.
    for value in state.positional_parameters:
        if isinstance(value, _Slot):
            processor = _processor([b for b in binds if b.key == value.name], dialect)
            if processor is False:
                return None
            entries.append((value.name, None, processor))
        else:
            constant = _processed_constant(binds, value, dialect)
            if constant is _UNKNOWN:
                return None
            entries.append((None, constant, None))
    return CompiledForm(compiled.string, entries)


_UNKNOWN: Any = object()


def _binds_of(statement: ClauseElement) -> list[BindParameter[Any]]:
    """Every ``BindParameter`` of the statement, including those of FROM items that only
    its columns refer to (a DELETE ... USING unnest(...) is rendered from its WHERE clause's
    columns, whose table a plain traversal does not visit)."""
    binds: list[BindParameter[Any]] = []
    seen: set[int] = set()
    pending: list[ClauseElement] = [statement]
    while pending:
        for element in visitors.iterate(pending.pop()):
            if id(element) in seen:
                continue
            seen.add(id(element))
            if isinstance(element, BindParameter):
                binds.append(element)
            table = getattr(element, "table", None)
            if isinstance(table, ClauseElement) and id(table) not in seen:
                pending.append(table)
    return binds


def _bind_processor(bind: BindParameter[Any], dialect: Dialect) -> _Processor | None:
    return bind.type.dialect_impl(dialect).bind_processor(dialect)


def _processor(candidates: Sequence[BindParameter[Any]], dialect: Dialect) -> Any:
    """The bind processor of a named parameter (its binds all have one type), or False when
    the statement's binds do not say for certain."""
    if not candidates or len({repr(b.type) for b in candidates}) != 1:
        return False
    return _bind_processor(candidates[0], dialect)


def _processed_constant(binds: Sequence[BindParameter[Any]], value: Any, dialect: Dialect) -> Any:
    """A constant of the statement (a JSON key, a literal) as the driver receives it.

    The constant's bind is found by its value; if binds of different types hold that value
    and would send it differently, the answer is ``_UNKNOWN``.
    """
    constants = [b for b in binds if not b.required and b.callable is None]
    candidates = [b for b in constants if b.value is value] or [
        b for b in constants if b.value == value
    ]
    outcomes = []
    for bind in candidates:
        processor = _bind_processor(bind, dialect)
        outcomes.append(value if processor is None else processor(value))
    if not outcomes or any(outcome != outcomes[0] for outcome in outcomes[1:]):
        return _UNKNOWN
    return outcomes[0]


class Statement(Generic[E]):
    """A Core statement, compiled once per dialect (see the module docstring)."""

    __slots__ = ("__weakref__", "_forms", "returns_rows", "statement")

    def __init__(self, statement: E, *, returns_rows: bool = True) -> None:
        """``returns_rows=False``: a write without RETURNING, which
        :mod:`~langgraph_sqlalchemy.db.group_commit` may send together with others."""
        if not isinstance(statement, ClauseElement):
            raise TypeError(f"expected a Core statement, got {type(statement).__name__}")
        self.statement: E = statement
        self.returns_rows: bool = returns_rows
        self._forms: weakref.WeakKeyDictionary[Dialect, CompiledForm | None] = (
            weakref.WeakKeyDictionary()
        )

    def form(self, dialect: Dialect) -> CompiledForm | None:
        """The compiled form for ``dialect``, or None if only ``conn.execute`` can run it."""
        try:
            return self._forms[dialect]
        except KeyError:
            pass
        assert isinstance(self.statement, ClauseElement)
        form = self._forms[dialect] = _compile(self.statement, dialect)
        return form

    def bind(self, params: Mapping[str, Any]) -> BoundStatement:
        """This statement with its parameters: one database call's worth of work."""
        return BoundStatement(self, params)


class BoundStatement:
    """A :class:`Statement` and the parameters of one call."""

    __slots__ = ("params", "statement")

    def __init__(self, statement: Statement[Any], params: Mapping[str, Any]) -> None:
        self.statement = statement
        self.params = params

    def driver_form(self, dialect: Dialect) -> tuple[str, tuple[Any, ...]] | None:
        """The final SQL and positional values, or None when only SQLAlchemy can render it."""
        form = self.statement.form(dialect)
        return None if form is None else (form.sql, form.values(self.params))

    async def execute(self, conn: AsyncConnection) -> Rows:
        """Run it on ``conn`` through SQLAlchemy and return every row (none for plain DML).

        ``exec_driver_sql`` when it is equivalent; ``conn.execute`` of the Core statement when
        only that is: a ``schema_translate_map``, or a ``before_execute`` / ``after_execute``
        listener, which ``exec_driver_sql`` does not fire (SQLAlchemy documents it so; the
        cursor-level events, the log and ``handle_error`` see both alike).
        """
        form = self.statement.form(conn.dialect)
        sync = conn.sync_connection
        if (
            form is None
            or sync is None
            or sync.get_execution_options().get("schema_translate_map")
            or sync.dispatch.before_execute
            or sync.dispatch.after_execute
        ):
            result = await conn.execute(self.statement.statement, dict(self.params))
        else:
            result = await conn.exec_driver_sql(form.sql, form.values(self.params))
        return result.all() if result.returns_rows else ()
