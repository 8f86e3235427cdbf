"""Thread retention: ``checkpointer.ttl`` of ``langgraph.json``, in the library.

A thread expires ``default_ttl`` minutes after it was last written (any namespace), or after its
own TTL: ``config["configurable"]["checkpoint_ttl"]`` (minutes) on a run sets it for the thread.
A sweep then removes expired threads whole (``strategy="delete"``) or prunes them to their newest
checkpoint per namespace (``"keep_latest"``, as ``aprune`` does).

What "last written" means: the saver records it in ``checkpoint_thread_activity`` on every put
and put-writes. Upstream never does, so for a thread that upstream wrote the checkpoints' own
``ts`` count as well, and the later of the two decides:

1. Threads with checkpoints but no activity row get one, marked "never written here" (short
   statements of a bounded number of rows, so that a first write of ours to such a thread waits
   for one of them at most).
2. Due rows are taken in batches, locked ``FOR UPDATE SKIP LOCKED`` and checked against their
   checkpoints' ``ts``; each batch is one statement (:meth:`ActivityStatements.delete_due_batch`)
   for ``delete``, one short transaction per thread for ``keep_latest``.

A sweep counts the threads it removed (``keep_latest``: those it removed a checkpoint from; a
thread already down to its newest checkpoints is marked swept, not counted). :func:`plan_sweep`
says what a sweep now would do, reading only (the command line's ``sweep --dry-run``).

Several sweepers (replicas) may run at once: a thread is claimed by one of them, and the others
pass it by. A write that is in flight when its thread comes up keeps the thread (its row is
locked, so the sweep skips it); one that committed earlier makes it not due.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..database import Database
from ..errors import InvalidInputError
from ..ttl_bounds import MAX_TTL_MINUTES, check_sweep_interval, check_ttl
from .prune import delta_threads, keep_latest, refuse_delta_threads
from .repository import CheckpointRepository
from .thread_activity import KEEP_TTL, ActivityStatements, BatchOutcome, TTLUpdate

__all__ = [
    "CHECKPOINT_TTL_KEY",
    "MAX_TTL_MINUTES",
    "RetentionPolicy",
    "SweepPlan",
    "SweepProgress",
    "ThreadTTLConfig",
    "expired_threads",
    "parse_ttl_config",
    "plan_sweep",
    "sweep_threads",
    "thread_ttl_of",
]

logger = logging.getLogger("langgraph_sqlalchemy")

#: The run-config key (``config["configurable"][...]``) that sets a thread's own TTL, in minutes.
CHECKPOINT_TTL_KEY = "checkpoint_ttl"

STRATEGIES = ("delete", "keep_latest")

# Threads per delete statement: a batch of 10-checkpoint threads is a few thousand rows, which
# a write to one of those (expired) threads never waits for, and other threads' writes never
# wait for at all. Large enough that a 100k-thread sweep is a few hundred round trips.
DEFAULT_BATCH_SIZE = 200
# Untracked threads adopted per statement (see the module docstring, step 1).
_ADOPT_PAGE = 1000


class ThreadTTLConfig(TypedDict, total=False):
    """``checkpointer.ttl`` of ``langgraph.json``: the platform's keys and meaning."""

    strategy: Literal["delete", "keep_latest"]
    default_ttl: float | None  # minutes after a thread's last write; None: only per-thread TTLs
    sweep_interval_minutes: float | None  # start_ttl_sweeper()'s interval (default 5)
    sweep_limit: int | None  # threads examined per sweep at most (default: all that are due)


@dataclass(frozen=True)
class RetentionPolicy:
    strategy: str = "delete"
    default_ttl: float | None = None
    sweep_interval_minutes: float | None = None
    sweep_limit: int | None = None


def parse_ttl_config(ttl: ThreadTTLConfig | Mapping[str, Any] | None) -> RetentionPolicy | None:
    """The saver's ``ttl=`` checked: a clear :class:`InvalidInputError` for anything wrong."""
    if ttl is None:
        return None
    if not isinstance(ttl, Mapping):
        raise InvalidInputError(
            f"ttl must be a dict like langgraph.json's checkpointer.ttl, got {type(ttl).__name__}"
        )
    unknown = set(ttl) - set(ThreadTTLConfig.__annotations__)
    if unknown:
        raise InvalidInputError(
            f"unknown checkpointer ttl keys: {sorted(map(str, unknown))}; expected some of "
            f"{sorted(ThreadTTLConfig.__annotations__)}"
        )
    strategy = ttl.get("strategy", "delete")
    if strategy not in STRATEGIES:
        raise InvalidInputError(
            f"ttl strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r}"
        )
    default = ttl.get("default_ttl")
    interval = ttl.get("sweep_interval_minutes")
    limit = ttl.get("sweep_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"sweep_limit must be a positive integer, got {limit!r}")
    return RetentionPolicy(
        strategy=str(strategy),
        default_ttl=check_ttl(default, what="default_ttl"),
        sweep_interval_minutes=None if interval is None else check_sweep_interval(interval),
        sweep_limit=limit,
    )


def thread_ttl_of(config: Mapping[str, Any], op: str) -> TTLUpdate:
    """What a write's config says about its thread's own TTL.

    No ``checkpoint_ttl`` key: unchanged. A number of minutes: the thread's TTL from now on.
    ``None``: back to the sweeper's ``default_ttl``.
    """
    configurable = config.get("configurable")
    if not isinstance(configurable, Mapping) or CHECKPOINT_TTL_KEY not in configurable:
        return KEEP_TTL
    what = f"{op}: config['configurable']['{CHECKPOINT_TTL_KEY}']"
    return TTLUpdate(True, check_ttl(configurable[CHECKPOINT_TTL_KEY], what=what))


#: ``progress(examined, due)`` after each batch: threads looked at so far, and how many were
#: due when the sweep began (threads falling due during the sweep can make ``examined`` larger).
SweepProgress = Callable[[int, int], Awaitable[None] | None]


async def _server_now(db: Database, statements: ActivityStatements) -> datetime:
    async def read(conn: AsyncConnection) -> datetime:
        value: datetime = (await conn.execute(statements.server_now())).scalar_one()
        return value

    return await db.run(read, op="asweep_ttl", single_statement=True)


async def _adopt_untracked(db: Database, statements: ActivityStatements) -> int:
    """Step 1 of the module docstring; returns how many threads got a row."""
    adopted = 0
    after = ""
    while True:

        async def page(conn: AsyncConnection, after: str = after) -> list[str]:
            result = await conn.execute(
                statements.untracked_threads(), {"after": after, "page": _ADOPT_PAGE}
            )
            return list(result.scalars())

        thread_ids = await db.run(page, op="asweep_ttl", single_statement=True)
        if not thread_ids:
            return adopted

        async def adopt(conn: AsyncConnection, thread_ids: list[str] = thread_ids) -> None:
            await conn.execute(statements.adopt(thread_ids))

        await db.run(adopt, op="asweep_ttl", single_statement=True)
        adopted += len(thread_ids)
        if len(thread_ids) < _ADOPT_PAGE:
            return adopted
        after = thread_ids[-1]


async def _report(progress: SweepProgress | None, examined: int, due: int) -> None:
    if progress is None:
        return
    outcome = progress(examined, due)
    if inspect.isawaitable(outcome):
        await outcome


async def sweep_threads(
    db: Database,
    repository: CheckpointRepository,
    policy: RetentionPolicy,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: SweepProgress | None = None,
) -> int:
    """One sweep; returns how many threads it removed (``keep_latest``: pruned)."""
    # Checked here too, not only by asweep_ttl: a batch of 0 would end the sweep having
    # examined nothing, and a negative one reach the server as a LIMIT it refuses.
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(
            f"sweep_threads: batch_size must be an int >= 1, got {batch_size!r}"
        )
    statements = ActivityStatements(repository.tables)
    if policy.default_ttl is not None:
        # Untracked threads have no TTL of their own: only a default can make them due.
        await _adopt_untracked(db, statements)
    now = await _server_now(db, statements)
    params: dict[str, Any] = {"now": now, "default_ttl": policy.default_ttl}

    async def count(conn: AsyncConnection) -> int:
        return int((await conn.execute(statements.count_due(), params)).scalar_one())

    due = await db.run(count, op="asweep_ttl", single_statement=True)
    if due == 0:
        await _report(progress, 0, 0)
        return 0
    if policy.strategy == "keep_latest":
        return await _prune_due(db, repository, statements, params, policy, due, progress)
    return await _delete_due(db, statements, params, policy, batch_size, due, progress)


async def _delete_due(
    db: Database,
    statements: ActivityStatements,
    params: Mapping[str, Any],
    policy: RetentionPolicy,
    batch_size: int,
    due: int,
    progress: SweepProgress | None,
) -> int:
    removed = examined = 0
    after = ""
    while policy.sweep_limit is None or examined < policy.sweep_limit:
        batch = batch_size
        if policy.sweep_limit is not None:
            batch = min(batch, policy.sweep_limit - examined)

        async def delete_batch(
            conn: AsyncConnection, after: str = after, batch: int = batch
        ) -> BatchOutcome:
            row = (
                await conn.execute(
                    statements.delete_due_batch(), {**params, "after": after, "batch": batch}
                )
            ).one()
            return BatchOutcome(int(row[0]), int(row[1]), int(row[2]), row[3])

        outcome = await db.run(delete_batch, op="asweep_ttl", single_statement=True)
        examined += outcome.examined
        removed += outcome.removed
        await _report(progress, examined, due)
        if outcome.examined < batch or outcome.last_thread is None:
            return removed
        after = outcome.last_thread
    return removed


async def _prune_due(
    db: Database,
    repository: CheckpointRepository,
    statements: ActivityStatements,
    params: Mapping[str, Any],
    policy: RetentionPolicy,
    due: int,
    progress: SweepProgress | None,
) -> int:
    pruned = examined = 0
    refused: list[str] = []
    after = ""
    while policy.sweep_limit is None or examined < policy.sweep_limit:
        page_size = DEFAULT_BATCH_SIZE
        if policy.sweep_limit is not None:
            page_size = min(page_size, policy.sweep_limit - examined)

        async def page(
            conn: AsyncConnection, after: str = after, page_size: int = page_size
        ) -> list[str]:
            result = await conn.execute(
                statements.due_threads(), {**params, "after": after, "page": page_size}
            )
            return list(result.scalars())

        thread_ids = await db.run(page, op="asweep_ttl", single_statement=True)
        for thread_id in thread_ids:
            outcome = await _prune_one(db, repository, statements, params, thread_id)
            examined += 1
            pruned += outcome == "pruned"
            if outcome == "refused":
                refused.append(thread_id)
        await _report(progress, examined, due)
        if len(thread_ids) < page_size:
            break
        after = thread_ids[-1]
    if refused:
        logger.warning(
            "checkpoint TTL sweep (keep_latest) left %d thread(s) that use a DeltaChannel, "
            "which keep_latest cannot prune: %s; they are looked at again one TTL later",
            len(refused),
            ", ".join(refused[:20]) + (" ..." if len(refused) > 20 else ""),
        )
    return pruned


async def _prune_one(
    db: Database,
    repository: CheckpointRepository,
    statements: ActivityStatements,
    params: Mapping[str, Any],
    thread_id: str,
) -> str:
    """One due thread pruned to its newest checkpoint per namespace, in one transaction.

    The thread's row is locked first (skipped if anyone holds it) and stays locked, so a
    second sweeper passes it by; writes meanwhile skip recording themselves and are not seen
    by the REPEATABLE READ snapshot, so prune neither sees nor deletes them (as ``aprune``).
    """

    async def work(conn: AsyncConnection) -> str:
        if db.connection is None:
            # Must be the transaction's first statement; Core has no construct for it. (On a
            # host connection the host owns the transaction and its isolation.)
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        row = (
            await conn.execute(statements.lock_due_thread(), {**params, "thread_id": thread_id})
        ).first()
        if row is None:
            return "skipped"
        cutoff, fresh = row
        if fresh:
            await conn.execute(
                statements.move_to_cutoff(), {"thread": thread_id, "cutoff": cutoff}
            )
            return "refreshed"
        try:
            await refuse_delta_threads(conn, repository, [thread_id])
        except NotImplementedError:
            outcome = "refused"
        else:
            # A thread with nothing older than its newest checkpoints is still marked (not
            # due again for one TTL) but not counted: the sweep did no work on it.
            removed = await keep_latest(conn, repository, thread_id, 1)
            outcome = "pruned" if removed else "unchanged"
        await conn.execute(statements.mark_pruned(), {"thread": thread_id, "now": params["now"]})
        return outcome

    return await db.run(work, op="asweep_ttl")


@dataclass(frozen=True)
class SweepPlan:
    """What one sweep now would do, found without changing anything (:func:`plan_sweep`)."""

    #: The threads it would remove (``keep_latest``: prune), in the order it takes them,
    #: within ``sweep_limit``.
    threads: list[str]
    #: Threads expired in all, whatever ``sweep_limit`` lets one sweep reach.
    expired: int
    #: ``keep_latest``: expired threads within the limit that use a ``DeltaChannel``, which
    #: the sweep leaves alone (and logs).
    left_alone: list[str]


async def plan_sweep(
    db: Database, repository: CheckpointRepository, policy: RetentionPolicy
) -> SweepPlan:
    """What :func:`sweep_threads` with ``policy`` would do now, reading only.

    The sweep looks at due threads in thread order, ``sweep_limit`` of them at most, and
    removes those its checkpoints do not show written since; so does the plan, on the same
    statements' conditions. ``keep_latest`` counts only threads with something to prune
    (more checkpoints than namespaces; one kept for a format-<4 checkpoint's pending sends can
    make that an overstatement) and sets apart the ``DeltaChannel`` ones. Writes that happen
    between the plan and the sweep can change the outcome, as they would change one sweep's.
    """
    statements = ActivityStatements(repository.tables)
    now = await _server_now(db, statements)
    keep = policy.strategy == "keep_latest"

    async def read(conn: AsyncConnection) -> SweepPlan:
        stmt = statements.sweep_candidates(
            with_untracked=policy.default_ttl is not None, keep_latest=keep
        )
        rows = [
            (str(thread_id), bool(goes))
            for thread_id, goes in await conn.execute(
                stmt, {"now": now, "default_ttl": policy.default_ttl}
            )
        ]
        expired = [thread_id for thread_id, goes in rows if goes]
        delta = set(await delta_threads(conn, repository, expired)) if keep and expired else set()
        reached = rows if policy.sweep_limit is None else rows[: policy.sweep_limit]
        return SweepPlan(
            threads=[t for t, goes in reached if goes and t not in delta],
            expired=len(expired) - len(delta),
            left_alone=[t for t, goes in reached if goes and t in delta],
        )

    return await db.run(read, op="plan_sweep")


async def expired_threads(
    db: Database, repository: CheckpointRepository, policy: RetentionPolicy
) -> list[str]:
    """The threads a sweep now would remove (``keep_latest``: prune), without changing any.

    Within ``sweep_limit``, as the sweep; :func:`plan_sweep` has the rest of the picture.
    """
    return (await plan_sweep(db, repository, policy)).threads
