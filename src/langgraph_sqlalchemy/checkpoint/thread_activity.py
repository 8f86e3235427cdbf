"""Statements on ``checkpoint_thread_activity``: the touch every write carries, and the sweep's.

The table holds one row per thread (all its namespaces): when the saver last wrote to it, the
thread's own TTL, and when a ``keep_latest`` sweep last pruned it. Two kinds of statement use it:

* The *touch*, a CTE attached to the saver's put and put-writes statements (one statement, one
  round trip, as before). It never waits for a row lock: a thread's row that another
  transaction holds is left alone (:func:`touch_activity`). That holder is either a concurrent
  write of the same thread, which is recording the same moment, or a sweep deleting the thread,
  which must not make a graph's write wait.
* The sweep's statements (:class:`ActivityStatements`): find the threads that are due, lock
  them with ``FOR UPDATE SKIP LOCKED`` (a thread being written, or claimed by another sweeper,
  is skipped, never waited for), check them against their checkpoints' own ``ts`` (what upstream
  writes leaves nowhere else), and delete or prune them.

Timestamps are the server's (``now()``), never the client's. A sweep compares against one
``now`` taken at its start, so a thread it finds fresh and pushes forward is not due again in
the same sweep.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Double,
    Insert,
    Integer,
    Interval,
    Select,
    String,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from ..schema import Tables

__all__ = [
    "ACTIVITY_RESOLUTION",
    "KEEP_TTL",
    "ActivityStatements",
    "BatchOutcome",
    "RecentTouches",
    "TTLUpdate",
    "touch_activity",
]

_TIMESTAMP = DateTime(timezone=True)

#: How exact ``last_activity`` is. A write finds its thread's row already this recent and leaves
#: it alone (no row lock, no new row version, no WAL): a graph run's many writes cost one
#: update per second, not one each. Sweeps wait this much longer before a thread is due, so
#: that a write in flight, which took no lock because the row was recent, always finds its
#: thread still there.
ACTIVITY_RESOLUTION = timedelta(seconds=1)

# Upstream's threads get a row when a sweep first meets them, marked "never written by this
# library": what decides then is their checkpoints' ts.
_NEVER = "-infinity"


@dataclass(frozen=True)
class TTLUpdate:
    """What a write does to the thread's own TTL: keep it, or set it (None: the default)."""

    given: bool
    minutes: float | None

    def params(self) -> dict[str, Any]:
        return {"ttl_given": self.given, "ttl_minutes": self.minutes}


KEEP_TTL = TTLUpdate(False, None)


class RecentTouches:
    """The threads one saver recorded activity for in the last half second.

    Every write carrying the touch costs the server a second table in its plan (measured: about
    a tenth of a put's or a task's writes' time on the server), although within a graph run
    all but the first would find the row recent and change nothing. So a write to a thread
    this saver touched less than :data:`WINDOW` seconds ago goes without the touch, unless it
    changes the thread's TTL. Half the resolution the sweep allows for, so such a write is
    always within a second of a recorded one (and its thread is never due while it runs).
    """

    WINDOW = 0.5
    # Bounded: a saver writing to millions of threads keeps the newest few thousand.
    SIZE = 4096

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[float, TTLUpdate]] = OrderedDict()

    def needed(self, thread_id: str, ttl: TTLUpdate) -> bool:
        seen = self._seen.get(thread_id)
        if seen is None:
            return True
        at, recorded = seen
        if time.monotonic() - at >= self.WINDOW:
            return True
        return ttl.given and ttl != recorded

    def record(self, thread_id: str, ttl: TTLUpdate) -> None:
        if not ttl.given:
            seen = self._seen.get(thread_id)
            ttl = seen[1] if seen is not None else ttl
        self._seen[thread_id] = (time.monotonic(), ttl)
        self._seen.move_to_end(thread_id)
        if len(self._seen) > self.SIZE:
            self._seen.popitem(last=False)


def touch_activity(activity: Table) -> Insert:
    """``last_activity = now()`` for the statement's ``:thread_id``, as a CTE-able insert.

    Binds ``thread_id``, ``ttl_given`` and ``ttl_minutes`` (:class:`TTLUpdate`). A new thread
    gets its row (a concurrent first write of the same thread waits for the other's insert, the
    one wait left, and only at a thread's very first write). An existing row is updated only
    when it is older than :data:`ACTIVITY_RESOLUTION` or its TTL changes, and only if this
    transaction can lock it at once (``FOR UPDATE SKIP LOCKED``); otherwise nothing happens
    and nobody waits. Upstream's writes never come here, so none of this touches them.
    """
    a = activity
    thread_id = bindparam("thread_id", type_=Text)
    ttl_given = bindparam("ttl_given", type_=Boolean)
    ttl_minutes = bindparam("ttl_minutes", type_=Double)
    present = a.alias("present")
    stale = a.alias("stale")
    recent = func.now() - literal(ACTIVITY_RESOLUTION, Interval)
    row = select(thread_id, func.now(), ttl_minutes).where(
        or_(
            ~exists().where(present.c.thread_id == thread_id),
            # The conditions come before the lock: a recent row is not even locked.
            exists(
                select(stale.c.thread_id)
                .where(
                    stale.c.thread_id == thread_id,
                    or_(
                        stale.c.last_activity < recent,
                        and_(ttl_given, stale.c.ttl_minutes.is_distinct_from(ttl_minutes)),
                    ),
                )
                .with_for_update(skip_locked=True)
            ),
        )
    )
    stmt = insert(a).from_select(["thread_id", "last_activity", "ttl_minutes"], row)
    return stmt.on_conflict_do_update(
        index_elements=[a.c.thread_id],
        set_={
            "last_activity": stmt.excluded.last_activity,
            "ttl_minutes": case((ttl_given, stmt.excluded.ttl_minutes), else_=a.c.ttl_minutes),
        },
    )


@dataclass(frozen=True)
class BatchOutcome:
    """One sweep batch: threads examined, removed, and found fresh by their checkpoints."""

    examined: int
    removed: int
    refreshed: int
    last_thread: str | None


class ActivityStatements:
    """The sweep's statements for one schema's tables (values always bound)."""

    def __init__(self, tables: Tables) -> None:
        self.activity = tables.checkpoint_thread_activity
        self.checkpoints = tables.checkpoints
        self.blobs = tables.checkpoint_blobs
        self.writes = tables.checkpoint_writes

    # --- expiry ---------------------------------------------------------------------------------

    def _cutoff(self, ttl_minutes: ColumnElement[Any]) -> ColumnElement[datetime]:
        """``:now`` minus the TTL (and the activity resolution): a thread whose last activity
        is no later is due."""
        now = bindparam("now", type_=_TIMESTAMP)
        # make_interval's seconds are fractional, so are TTLs (0.5 minutes is 30 s).
        seconds = ttl_minutes * 60.0 + ACTIVITY_RESOLUTION.total_seconds()
        return now - func.make_interval(0, 0, 0, 0, 0, 0, seconds, type_=Interval)

    def _row_ttl(self) -> ColumnElement[float]:
        default = bindparam("default_ttl", type_=Double)
        return func.coalesce(self.activity.c.ttl_minutes, default)

    def _row_cutoff(self) -> ColumnElement[datetime]:
        return self._cutoff(self._row_ttl())

    def _is_due(self) -> ColumnElement[bool]:
        a = self.activity
        # greatest() skips NULLs: a thread never pruned is judged by its last write alone.
        # No TTL at all (no default, none of its own): NULL, never due.
        return func.greatest(a.c.last_activity, a.c.swept_at) <= self._row_cutoff()

    def _written_since(self, thread_id: ColumnElement[str], cutoff: Any) -> ColumnElement[bool]:
        """A checkpoint of the thread whose own ``ts`` is later than ``cutoff``.

        LangGraph writes ``ts`` as UTC ISO-8601 text (``2025-01-31T12:00:00.123456+00:00``;
        LangGraph.js ends it in ``Z``), and such strings sort as the instants they name, so
        the comparison stays on text: a malformed ``ts`` cannot make the sweep fail on a cast
        (it only ever keeps a thread). Upstream's writes are found this way, and so is any
        write that a locked row kept from being recorded.
        """
        c = self.checkpoints
        cutoff_text = func.to_char(
            func.timezone("UTC", cutoff), 'YYYY-MM-DD"T"HH24:MI:SS.US', type_=String
        )
        return exists().where(
            c.c.thread_id == thread_id, c.c.checkpoint["ts"].astext > cutoff_text
        )

    # --- the sweep's steps -----------------------------------------------------------------------

    def server_now(self) -> Select[Any]:
        return select(func.now())

    def untracked_threads(self) -> Select[Any]:
        """A page of threads that have checkpoints but no activity row (written by upstream,
        by a saver with tracking off, or copied), in thread order from ``:after``."""
        c, a = self.checkpoints, self.activity
        return (
            select(c.c.thread_id)
            .distinct()
            .where(
                c.c.thread_id > bindparam("after", type_=Text),
                ~exists().where(a.c.thread_id == c.c.thread_id),
            )
            .order_by(c.c.thread_id)
            .limit(bindparam("page", type_=Integer))
        )

    def adopt(self, thread_ids: Sequence[str]) -> Insert:
        """Rows for untracked threads, as "never written here" (their ts decides).

        A row a writer inserted meanwhile wins (it is newer): ``DO NOTHING``.
        """
        a = self.activity
        ids = (
            func.unnest(literal(list(thread_ids), ARRAY(Text)))
            .table_valued("thread_id")
            .render_derived(name="untracked")
        )
        return (
            insert(a)
            .from_select(
                ["thread_id", "last_activity"],
                select(ids.c.thread_id, cast(literal(_NEVER, Text), _TIMESTAMP)),
            )
            .on_conflict_do_nothing(index_elements=[a.c.thread_id])
        )

    def count_due(self) -> Select[Any]:
        return select(func.count()).select_from(self.activity).where(self._is_due())

    def delete_due_batch(self) -> Select[Any]:
        """Up to ``:batch`` due threads after ``:after``, each deleted whole, in ONE statement.

        ``due`` locks the rows with ``SKIP LOCKED``: a thread whose row a write holds (the
        write is in flight) or another sweeper claimed is skipped, and no writer ever waits
        on this statement for more than its own duration. Rows a write changed and committed
        since the statement began are re-checked on their new values by ``FOR UPDATE``
        (Postgres' EvalPlanQual) and drop out. A due thread whose checkpoints say it was
        written after all (upstream, or a write whose touch was skipped) gets its row moved
        to the cutoff instead: not due again in this sweep, due in a later one once its
        checkpoints are as old. Everything else of the locked threads goes, all tables at
        once, so a killed sweep leaves whole threads only.

        Returns one row: (examined, removed, refreshed, last thread id).
        """
        a, c, b, w = self.activity, self.checkpoints, self.blobs, self.writes
        cutoff = self._row_cutoff()
        due = (
            select(a.c.thread_id, cutoff.label("cutoff"))
            .where(a.c.thread_id > bindparam("after", type_=Text), self._is_due())
            .order_by(a.c.thread_id)
            .limit(bindparam("batch", type_=Integer))
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        judged = select(
            due.c.thread_id,
            due.c.cutoff,
            self._written_since(due.c.thread_id, due.c.cutoff).label("fresh"),
        ).cte("judged")
        doomed = select(judged.c.thread_id).where(~judged.c.fresh)
        refreshed = (
            update(a)
            .where(a.c.thread_id == judged.c.thread_id, judged.c.fresh)
            .values(last_activity=judged.c.cutoff)
            .returning(a.c.thread_id)
            .cte("refreshed")
        )
        removed = (
            delete(c).where(c.c.thread_id.in_(doomed)).returning(c.c.thread_id).cte("removed")
        )
        stmt = select(
            select(func.count()).select_from(judged).scalar_subquery(),
            select(func.count(removed.c.thread_id.distinct())).scalar_subquery(),
            select(func.count()).select_from(refreshed).scalar_subquery(),
            select(func.max(judged.c.thread_id)).scalar_subquery(),
        )
        for table, name in ((w, "removed_writes"), (b, "removed_blobs"), (a, "removed_rows")):
            stmt = stmt.add_cte(delete(table).where(table.c.thread_id.in_(doomed)).cte(name))
        return stmt

    def due_threads(self) -> Select[Any]:
        """A page of due threads after ``:after`` (for ``keep_latest``, one at a time)."""
        a = self.activity
        return (
            select(a.c.thread_id)
            .where(a.c.thread_id > bindparam("after", type_=Text), self._is_due())
            .order_by(a.c.thread_id)
            .limit(bindparam("page", type_=Integer))
        )

    def lock_due_thread(self) -> Select[datetime, bool]:
        """``:thread_id`` if it is still due and nobody holds it: (cutoff, fresh) or no row."""
        a = self.activity
        cutoff = self._row_cutoff()
        return (
            select(cutoff, self._written_since(a.c.thread_id, cutoff))
            .where(a.c.thread_id == bindparam("thread_id", type_=Text), self._is_due())
            .with_for_update(skip_locked=True)
        )

    # (Statements on the table itself cannot name a parameter after one of its columns.)

    def move_to_cutoff(self) -> Update:
        """``:thread`` found written after all: not due again until ``:cutoff`` is old."""
        a = self.activity
        return (
            update(a)
            .where(a.c.thread_id == bindparam("thread", type_=Text))
            .values(last_activity=bindparam("cutoff", type_=_TIMESTAMP))
        )

    def mark_pruned(self) -> Update:
        """``:thread`` pruned (or refused) at ``:now``: not due again for one TTL."""
        a = self.activity
        return (
            update(a)
            .where(a.c.thread_id == bindparam("thread", type_=Text))
            .values(swept_at=bindparam("now", type_=_TIMESTAMP))
        )

    # --- what a sweep would do (dry run) ---------------------------------------------------------

    def sweep_candidates(self, *, with_untracked: bool, keep_latest: bool) -> Select[Any]:
        """Every thread a sweep at ``:now`` would look at, in the order it would, with whether
        it would go: rows of (thread id, goes).

        The threads are the due rows (:meth:`due_threads`, :meth:`delete_due_batch`) and, with
        a default TTL, the untracked threads, which the sweep gives a "never written here" row
        first and which are then due (they sort among the others by id, as in the sweep). One
        goes unless its checkpoints show it written since its cutoff; with no checkpoints at
        all (an activity row left by ``adelete_thread``) it only loses that row, which the
        sweep does not count; for ``keep_latest`` it must also have a namespace with more than
        the newest checkpoint. Reads only.
        """
        a, c = self.activity, self.checkpoints
        inner = c.alias("inner")
        work: ColumnElement[bool]
        if keep_latest:
            # Counts, not a comparison of ids: one scan of the thread's index, no self-join.
            work = (
                select(func.count() > func.count(inner.c.checkpoint_ns.distinct()))
                .where(inner.c.thread_id == a.c.thread_id)
                .scalar_subquery()
            )
        else:
            work = exists().where(inner.c.thread_id == a.c.thread_id)
        tracked = select(
            a.c.thread_id,
            and_(~self._written_since(a.c.thread_id, self._row_cutoff()), work).label("goes"),
        ).where(self._is_due())
        if not with_untracked:
            return tracked.order_by(a.c.thread_id)
        default_cutoff = self._cutoff(bindparam("default_ttl", type_=Double))
        cutoff_text = func.to_char(
            func.timezone("UTC", default_cutoff), 'YYYY-MM-DD"T"HH24:MI:SS.US', type_=String
        )
        old = func.coalesce(func.max(c.c.checkpoint["ts"].astext), "") <= cutoff_text
        untracked_goes = (
            and_(old, func.count() > func.count(c.c.checkpoint_ns.distinct()))
            if keep_latest
            else old
        )
        untracked = (
            select(c.c.thread_id, untracked_goes.label("goes"))
            .where(~exists().where(a.c.thread_id == c.c.thread_id))
            .group_by(c.c.thread_id)
        )
        both = union_all(tracked, untracked).subquery("candidates")
        return select(both.c.thread_id, both.c.goes).order_by(both.c.thread_id)
