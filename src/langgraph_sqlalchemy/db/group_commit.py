"""Group commit, an opt-in of :class:`~langgraph_sqlalchemy.db.database.Database`.

Many graph runs in one process write through one saver: every step's ``aput`` and
``aput_writes`` is a single statement that returns no rows. When more of them arrive than the
pool has connections, they wait for a checkout anyway. With group commit on, statements of one
kind (the same SQL) that arrive while their group waits for its connection join that group, and
the group is sent as one ``executemany`` through the ``AsyncConnection``: one round trip and one
commit (one WAL flush) for all of them, one checkout, and SQLAlchemy's per-statement work paid
once. asyncpg runs an ``executemany`` atomically, so the group commits or fails as a whole; each
caller resumes only after the commit, exactly as if it had run alone.

Uncontended, a group has one member and runs as soon as its task starts: the cost is a task and
one event-loop iteration. If a group fails for a reason retrying will not fix (bad data in one
member), nothing of it was applied, and each member runs again on its own, so that only the one
at fault fails: that member's statement reaches the server twice. Listeners on the engine see a
group as one statement with many parameter sets (``executemany=True``).

Nothing is shared beyond the :class:`Database` that owns the groups: no process-wide state, no
connection held between groups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["RUN_ALONE", "GroupCommit"]

#: The result a member gets when its group failed as a whole and it must run on its own.
RUN_ALONE: Any = object()

# Most members in one group: bounds the statement's size and the damage of one bad member.
MAX_GROUP = 64

Values = tuple[Any, ...]
Attempts = Callable[[Callable[[AsyncConnection], Awaitable[None]]], Awaitable[None]]


class _Group:
    __slots__ = ("futures", "sql", "values")

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.values: list[Values] = []
        self.futures: list[asyncio.Future[Any]] = []


class GroupCommit:
    """The open groups of one :class:`Database`, by SQL text."""

    def __init__(self) -> None:
        self._open: dict[str, _Group] = {}
        # Strong references: the event loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, sql: str, values: Values, attempts: Attempts) -> Any:
        """Run ``sql`` with ``values`` in a group; ``RUN_ALONE`` if the caller must run it
        on its own (its group failed on something retrying would not fix).

        ``attempts(work)`` runs ``work`` on an AUTOCOMMIT connection with the retry policy
        and raises the translated error if it fails for good.
        """
        loop = asyncio.get_running_loop()
        group = self._open.get(sql)
        if group is None or len(group.values) >= MAX_GROUP:
            group = self._open[sql] = _Group(sql)
            task = loop.create_task(self._flush(group, attempts))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        future: asyncio.Future[Any] = loop.create_future()
        group.values.append(values)
        group.futures.append(future)
        # A cancelled caller cancels only its wait: if its group is already on its way, the
        # statement may still be applied (every statement here is an idempotent write).
        return await future

    async def _flush(self, group: _Group, attempts: Attempts) -> None:
        members: list[tuple[Values, asyncio.Future[Any]]] = []

        async def work(conn: AsyncConnection) -> None:
            # The connection is ours: whoever arrives from now on starts the next group.
            if self._open.get(group.sql) is group:
                del self._open[group.sql]
            if not members:
                members.extend(
                    (values, future)
                    for values, future in zip(group.values, group.futures, strict=True)
                    if not future.done()
                )
            if len(members) == 1:
                await conn.exec_driver_sql(group.sql, members[0][0])
            elif members:
                await conn.exec_driver_sql(group.sql, [values for values, _ in members])

        try:
            await attempts(work)
        except asyncio.CancelledError:
            _settle(_pairs(group), RUN_ALONE)
            raise
        except Exception as exc:
            if len(members) > 1 and not _is_final_for_all(exc):
                _settle(_pairs(group), RUN_ALONE)
            else:
                _settle(_pairs(group), exc)
        else:
            _settle(members, None)
        finally:
            # Closed whatever happened (work may never have run: no connection was lent), so
            # that nobody joins a group whose task is over.
            if self._open.get(group.sql) is group:
                del self._open[group.sql]
            _settle(_pairs(group), RUN_ALONE)


def _pairs(group: _Group) -> list[tuple[Values, asyncio.Future[Any]]]:
    return list(zip(group.values, group.futures, strict=True))


def _is_final_for_all(exc: BaseException) -> bool:
    """Whether every member would fail the same way on its own: the database stayed
    unreachable (the retry budget is spent) or the pool never lent a connection."""
    from ..errors import DatabaseUnavailableError

    return isinstance(exc, DatabaseUnavailableError)


def _settle(
    members: Sequence[tuple[Values, asyncio.Future[Any]]], outcome: BaseException | Any
) -> None:
    for _, future in members:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
