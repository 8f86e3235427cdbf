"""Threads for the retention tests: written by real graphs or by ``aput``, then aged.

"Aging" a thread moves both clocks the sweep reads back in time: its activity row and the
``ts`` of each of its checkpoints (the fallback for what upstream wrote), as if it had last been
written on 2020-01-01 (and last pruned then, if a ``keep_latest`` sweep ever pruned it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.base.id import uuid6
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemySaver

LONG_AGO = "2020-01-01T00:00:00+00:00"
TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_thread_activity")


def checkpoint(values: dict[str, Any], *, ts: str | None = None) -> Checkpoint:
    return Checkpoint(
        v=4,
        id=str(uuid6(clock_seq=-1)),
        ts=ts or datetime.now(timezone.utc).isoformat(),
        channel_values=dict(values),
        channel_versions={k: f"{i + 1:032}.5" for i, k in enumerate(values)},
        versions_seen={},
        updated_channels=None,
    )


async def write_thread(
    saver: Any, thread_id: str, checkpoints: int = 3, *, ts: str | None = None,
    **configurable: Any,
) -> Any:
    """``checkpoints`` puts (each with a blob value and a task's writes) on the root namespace;
    ``configurable`` goes into every call's config (e.g. ``checkpoint_ttl``)."""
    base = {"thread_id": thread_id, "checkpoint_ns": "", **configurable}
    stored: Any = None
    for step in range(checkpoints):
        versions = {"step": f"{step + 1:032}.5", "items": f"{step + 1:032}.5"}
        cp = checkpoint({"step": step, "items": list(range(step + 1))}, ts=ts)
        cp["channel_versions"] = versions
        parent = {"checkpoint_id": stored["configurable"]["checkpoint_id"]} if stored else {}
        stored = await saver.aput(
            {"configurable": {**base, **parent}}, cp, {"step": step}, versions
        )
        written = {"configurable": {**base, **stored["configurable"]}}
        await saver.aput_writes(written, [("items", [step])], f"task-{step}")
    return stored


async def write_threads(saver: AsyncSQLAlchemySaver, thread_ids: Sequence[str], **kw: Any) -> None:
    gate = asyncio.Semaphore(8)

    async def one(thread_id: str) -> None:
        async with gate:
            await write_thread(saver, thread_id, **kw)

    await asyncio.gather(*(one(t) for t in thread_ids))


async def age(engine: AsyncEngine, thread_ids: Sequence[str] | None = None) -> None:
    """Make threads look last written on 2020-01-01 (all of them when ``thread_ids`` is None)."""
    where = "" if thread_ids is None else " WHERE thread_id = ANY(:ids)"
    params: dict[str, Any] = {} if thread_ids is None else {"ids": list(thread_ids)}
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE checkpoint_thread_activity SET last_activity = CAST(:ts AS timestamptz), "
                "swept_at = CASE WHEN swept_at IS NULL THEN NULL ELSE CAST(:ts AS timestamptz) "
                f"END{where}"
            ),
            {**params, "ts": datetime(2020, 1, 1, tzinfo=timezone.utc)},
        )
        await conn.execute(
            text(
                "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{ts}', to_jsonb("
                f"CAST(:ts AS text))){where}"
            ),
            {**params, "ts": LONG_AGO},
        )


async def backdate(engine: AsyncEngine, thread_id: str, seconds: float = 60) -> None:
    """Move only the activity row back, past the resolution within which writes skip it."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE checkpoint_thread_activity "
                "SET last_activity = last_activity - make_interval(secs => :s) "
                "WHERE thread_id = :t"
            ),
            {"s": seconds, "t": thread_id},
        )


async def rows_of(engine: AsyncEngine, thread_id: str) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table: int(
                (
                    await conn.execute(
                        text(f"SELECT count(*) FROM {table} WHERE thread_id = :t"),
                        {"t": thread_id},
                    )
                ).scalar_one()
            )
            for table in TABLES
        }


async def rows_by_thread(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """Per thread, how many rows each table holds."""
    found: dict[str, dict[str, int]] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            result = await conn.execute(
                text(f"SELECT thread_id, count(*) FROM {table} GROUP BY thread_id")
            )
            for thread_id, count in result:
                found.setdefault(thread_id, dict.fromkeys(TABLES, 0))[table] = int(count)
    return found


async def activity_of(engine: AsyncEngine, thread_id: str) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT last_activity, ttl_minutes, swept_at FROM checkpoint_thread_activity "
                    "WHERE thread_id = :t"
                ),
                {"t": thread_id},
            )
        ).first()
