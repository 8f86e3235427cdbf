"""``prune``: upstream 3.2's strategies, on Core statements, a bounded number per thread.

``"delete"`` removes the threads' rows in one statement. ``"keep_latest"`` keeps, per namespace,
the newest checkpoint (``keep_last=N``: the newest N) plus, for a kept checkpoint of format < 4
whose pending sends live on its parent, that parent; it deletes the other checkpoints with their
writes, drops the namespaces of subgraph *calls* that belong to a root checkpoint being dropped,
clears parent links that would dangle, and garbage-collects the blobs only dropped checkpoints
used. Each thread is pruned in its own REPEATABLE READ transaction, so a run appending to the
thread meanwhile is neither seen nor deleted. Threads that use a ``DeltaChannel`` are refused
(their latest value is rebuilt from older checkpoints), before anything is deleted.

Statements per thread: snapshot + heads + delta re-check + writes + checkpoints + parents + blobs
(+ one for subgraph calls): never one per checkpoint. :func:`keep_latest` tells from the rows
those statements return anyway whether it removed anything, so counting the threads that were
really pruned costs no statement of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langgraph.checkpoint.serde.types import TASKS
from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Text,
    and_,
    any_,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    literal,
    select,
    text,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from ..db import Database
from .repository import CheckpointRepository, freed_blob_keys, text_array, unnest

__all__ = ["PRUNE_STRATEGIES", "delta_threads", "prune_threads"]

PRUNE_STRATEGIES = ("keep_latest", "delete")


@dataclass(frozen=True)
class _Head:
    checkpoint_ns: str
    checkpoint_id: str
    rank: int
    sends_parent: str | None
    root: str | None
    root_saved: bool


async def prune_threads(
    db: Database,
    repository: CheckpointRepository,
    thread_ids: Sequence[str],
    *,
    strategy: str,
    keep_last: int = 1,
) -> int:
    """Prune ``thread_ids``; returns how many of them lost something.

    ``"keep_latest"``: the threads it removed at least one checkpoint from (a thread already
    down to its newest checkpoints is not counted). ``"delete"``: every thread asked for, as
    the one statement removes whatever rows they have.
    """
    if strategy == "delete":

        async def delete_all(conn: AsyncConnection) -> None:
            await repository.delete_threads(conn, thread_ids)

        await db.run(delete_all, op="aprune", single_statement=True)
        return len(set(thread_ids))

    async def check(conn: AsyncConnection) -> None:
        await refuse_delta_threads(conn, repository, thread_ids)

    await db.run(check, op="aprune", single_statement=True)
    pruned = 0
    for thread_id in thread_ids:

        async def keep(conn: AsyncConnection, thread_id: str = thread_id) -> bool:
            if db.connection is None:
                # Must be the transaction's first statement; Core has no construct for it.
                # (On a host connection the host owns the transaction and its isolation.)
                await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            return await keep_latest(conn, repository, thread_id, keep_last)

        pruned += await db.run(keep, op="aprune")
    return pruned


async def refuse_delta_threads(
    conn: AsyncConnection, repository: CheckpointRepository, thread_ids: Sequence[str]
) -> None:
    """Raise if a thread uses a ``DeltaChannel`` (see :func:`delta_threads`)."""
    delta = await delta_threads(conn, repository, thread_ids)
    if delta:
        raise NotImplementedError(
            f"keep_latest can't prune threads that use a DeltaChannel: {', '.join(delta)}"
        )


async def delta_threads(
    conn: AsyncConnection, repository: CheckpointRepository, thread_ids: Sequence[str]
) -> list[str]:
    """Those of ``thread_ids`` that use a ``DeltaChannel``, sorted; one statement.

    Their checkpoints carry delta counters in metadata (or LangGraph.js's
    ``delta_writes_versioned``), or an inline ``true`` marker with a blob behind it (a
    ``_DeltaSnapshot``), which a plain ``True`` value never has.
    """
    c, b = repository.checkpoints, repository.blobs
    ids = any_(text_array(thread_ids))
    values = (
        func.jsonb_each(c.c.checkpoint["channel_values"])
        .table_valued("key", column("value", JSONB))
        .render_derived(name="v")
    )
    by_metadata = select(c.c.thread_id).where(
        c.c.thread_id == ids,
        c.c.metadata.has_key("counters_since_delta_snapshot")
        | c.c.metadata.has_key("delta_writes_versioned"),
    )
    by_snapshot = (
        select(c.c.thread_id)
        .select_from(c.join(values, literal(True)))
        .where(
            c.c.thread_id == ids,
            values.c.value == cast(literal("true", Text), JSONB),
            exists().where(
                b.c.thread_id == c.c.thread_id,
                b.c.checkpoint_ns == c.c.checkpoint_ns,
                b.c.channel == values.c.key,
                b.c.version
                == c.c.checkpoint["channel_versions"].op("->>", return_type=String)(
                    values.c.key
                ),
            ),
        )
    )
    return sorted(r[0] for r in await conn.execute(union(by_metadata, by_snapshot)))


async def _heads(
    conn: AsyncConnection, repository: CheckpointRepository, thread_id: str, keep_last: int
) -> list[_Head]:
    """The newest ``keep_last`` checkpoints of each namespace, with what pruning must know."""
    c, w = repository.checkpoints, repository.writes
    ranked = (
        select(
            c.c.checkpoint_ns,
            c.c.checkpoint_id,
            func.row_number()
            .over(partition_by=c.c.checkpoint_ns, order_by=c.c.checkpoint_id.desc())
            .label("rank"),
        )
        .where(c.c.thread_id == thread_id)
        .subquery("ranked")
    )
    k = c.alias("kept")
    root_id = k.c.metadata["parents"].op("->>", return_type=String)(literal("", Text))
    r = c.alias("root")
    sends_parent = case(
        (
            and_(
                k.c.checkpoint["v"].astext.cast(Integer) < 4,
                exists().where(
                    w.c.thread_id == thread_id,
                    w.c.checkpoint_ns == k.c.checkpoint_ns,
                    w.c.checkpoint_id == k.c.parent_checkpoint_id,
                    w.c.channel == TASKS,
                ),
            ),
            k.c.parent_checkpoint_id,
        ),
        else_=None,
    )
    stmt = (
        select(
            ranked.c.checkpoint_ns,
            ranked.c.checkpoint_id,
            ranked.c.rank,
            sends_parent,
            root_id,
            exists()
            .where(
                r.c.thread_id == thread_id,
                r.c.checkpoint_ns == "",
                r.c.checkpoint_id == root_id,
            )
            .label("root_saved"),
        )
        .select_from(
            ranked.join(
                k,
                and_(
                    k.c.thread_id == thread_id,
                    k.c.checkpoint_ns == ranked.c.checkpoint_ns,
                    k.c.checkpoint_id == ranked.c.checkpoint_id,
                ),
            )
        )
        .where(ranked.c.rank <= keep_last)
    )
    return [_Head(*row) for row in await conn.execute(stmt)]


async def keep_latest(
    conn: AsyncConnection, repository: CheckpointRepository, thread_id: str, keep_last: int
) -> bool:
    """Prune one thread (see the module docstring); whether any checkpoint went.

    Writes and blobs only ever go with a checkpoint, so "a checkpoint went" is "anything
    went". Read from what the deletes return (and from the snapshot's heads, for the
    subgraph calls), not from a count of its own.
    """
    c, b, w = repository.checkpoints, repository.blobs, repository.writes
    heads = await _heads(conn, repository, thread_id, keep_last)
    # A thread that started using a DeltaChannel after the batch check is refused here.
    await refuse_delta_threads(conn, repository, [thread_id])
    kept: dict[str, set[str]] = {}
    for head in heads:
        ids = kept.setdefault(head.checkpoint_ns, set())
        ids.add(head.checkpoint_id)
        if head.sends_parent:
            ids.add(head.sends_parent)
    # A subgraph call's namespace ("node:<task id>") goes with the root checkpoint the call
    # started from once that one is saved and dropped; a checkpointer=True subgraph's namespace
    # has no ":" and keeps its own newest checkpoints. Runs save in the background, so a call
    # can commit before its root checkpoint: those are left alone.
    calls = sorted(
        {
            h.checkpoint_ns
            for h in heads
            if h.rank == 1
            and ":" in h.checkpoint_ns
            and h.root_saved
            and h.root not in kept.get("", set())
        }
    )
    if calls:
        in_calls = any_(text_array(calls))
        await conn.execute(
            delete(w)
            .where(w.c.thread_id == thread_id, w.c.checkpoint_ns == in_calls)
            .add_cte(
                delete(c)
                .where(c.c.thread_id == thread_id, c.c.checkpoint_ns == in_calls)
                .cte("deleted_call_checkpoints")
            )
            .add_cte(
                delete(b)
                .where(b.c.thread_id == thread_id, b.c.checkpoint_ns == in_calls)
                .cte("deleted_call_blobs")
            )
        )
        for ns in calls:
            kept.pop(ns, None)
    # ``calls`` come from heads, rows of this snapshot, and the thread's row lock (or the
    # REPEATABLE READ snapshot) keeps anyone else from deleting them first: they went.
    removed_calls = bool(calls)
    if not kept:
        return removed_calls
    pairs = sorted((ns, cid) for ns, ids in kept.items() for cid in ids)
    keep_rows = unnest(
        ("checkpoint_ns", text_array([p[0] for p in pairs])),
        ("checkpoint_id", text_array([p[1] for p in pairs])),
        name="keep",
    )
    kept_key = select(keep_rows.c.checkpoint_ns, keep_rows.c.checkpoint_id)

    def is_kept(ns: ColumnElement[str], cid: ColumnElement[str]) -> ColumnElement[bool]:
        return tuple_(ns, cid).in_(kept_key)

    # Writes go by the checkpoints deleted, not by "no kept checkpoint": a run saves a superstep's
    # writes in the background, where they can commit before their checkpoint does.
    doomed = c.alias("doomed")
    await conn.execute(
        delete(w).where(
            w.c.thread_id == thread_id,
            exists().where(
                doomed.c.thread_id == thread_id,
                doomed.c.checkpoint_ns == w.c.checkpoint_ns,
                doomed.c.checkpoint_id == w.c.checkpoint_id,
                ~is_kept(doomed.c.checkpoint_ns, doomed.c.checkpoint_id),
            ),
        )
    )
    deleted = (
        await conn.execute(
            delete(c)
            .where(c.c.thread_id == thread_id, ~is_kept(c.c.checkpoint_ns, c.c.checkpoint_id))
            .returning(c.c.checkpoint_ns, cast(c.c.checkpoint["channel_versions"], Text))
        )
    ).all()
    await conn.execute(
        update(c)
        .where(
            c.c.thread_id == thread_id,
            c.c.parent_checkpoint_id.is_not(None),
            is_kept(c.c.checkpoint_ns, c.c.checkpoint_id),
            ~is_kept(c.c.checkpoint_ns, c.c.parent_checkpoint_id),
        )
        .values(parent_checkpoint_id=None)
    )
    freed = freed_blob_keys((thread_id, ns, versions) for ns, versions in deleted)
    await repository.delete_unreferenced_blobs(conn, freed)
    return removed_calls or bool(deleted)
