"""``get_delta_channel_history`` in one statement: a recursive walk up the parent chain.

For each requested channel the walk collects the channel's writes on every ancestor of the
target (the target's own writes are pending for the next step, so they are excluded) and stops
at the nearest ancestor that stores a value for it: a non-empty blob or a non-null inline value.
A blob wins over an inline reading, because a ``_DeltaSnapshot`` leaves an inline ``true`` marker
in front of its blob. This is upstream 3.2's contract (``BasePostgresSaver`` stage 1 + stage 2),
but the walk runs inside PostgreSQL as a recursive CTE, so the history costs one round trip however
long the chain is, instead of one per page of 1024 ancestors plus one for the rows.

The recursion carries, per visited checkpoint, the channels still looking for a seed
(``remaining``) and the ones that were looking when it arrived there (``visit``): a channel's
chain is every row whose ``visit`` holds it, its seed the row where it leaves ``remaining``.
Ancestors always have smaller ids (time-ordered uuid6, which ``get_tuple`` relies on too), and the
walk insists on it, so a corrupt parent cycle cannot make it loop.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.checkpoint.base import DeltaChannelHistory, PendingWrite, writes_sort_key
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import (
    CompoundSelect,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ..db import Database, Statement
from .configs import Target
from .repository import CheckpointRepository
from .serialization import load_json

__all__ = ["load_delta_channel_history"]


@functools.lru_cache(maxsize=128)
def _history_statement(
    repository: CheckpointRepository, *, newest: bool
) -> Statement[CompoundSelect[Any]]:
    """The walk for one schema, built once: thread, namespace, target and channels are bound
    parameters (``newest``: the target is the namespace's newest checkpoint)."""
    c, b, w = repository.checkpoints, repository.blobs, repository.writes
    thread_id = bindparam("thread_id", type_=Text)
    ns = bindparam("checkpoint_ns", type_=Text)
    if not newest:
        target_id: Any = bindparam("checkpoint_id", type_=Text)
    else:
        latest = c.alias("newest")
        target_id = (
            select(latest.c.checkpoint_id)
            .where(latest.c.thread_id == thread_id, latest.c.checkpoint_ns == ns)
            .order_by(latest.c.checkpoint_id.desc())
            .limit(1)
            .scalar_subquery()
        )
    anchor = select(
        c.c.checkpoint_id,
        c.c.parent_checkpoint_id,
        literal(0, Integer).label("depth"),
        cast(literal([], ARRAY(Text)), ARRAY(Text)).label("visit"),
        bindparam("channels", type_=ARRAY(Text)).label("remaining"),
    ).where(c.c.thread_id == thread_id, c.c.checkpoint_ns == ns, c.c.checkpoint_id == target_id)
    walk = anchor.cte("walk", recursive=True)

    p = c.alias("ancestor")
    pending = func.unnest(walk.c.remaining).table_valued("ch").render_derived(name="pending")
    channel = pending.c.ch
    inline = p.c.checkpoint["channel_values"].op("->", return_type=JSONB)(channel)
    version = p.c.checkpoint["channel_versions"].op("->>", return_type=String)(channel)
    stored = or_(
        func.coalesce(func.jsonb_typeof(inline), "null") != "null",
        exists().where(
            b.c.thread_id == thread_id,
            b.c.checkpoint_ns == ns,
            b.c.channel == channel,
            b.c.version == version,
            b.c.type != "empty",
        )
        # Two levels down from the walk's FROM: correlate explicitly, or SQLAlchemy would give
        # this EXISTS a FROM of its own and look at every checkpoint.
        .correlate_except(b),
    )
    still_remaining = func.coalesce(
        select(func.array_agg(channel, type_=ARRAY(Text)))
        .select_from(pending)
        .where(~stored)
        .scalar_subquery(),
        cast(literal([], ARRAY(Text)), ARRAY(Text)),
    )
    step = (
        select(
            p.c.checkpoint_id,
            p.c.parent_checkpoint_id,
            (walk.c.depth + 1).label("depth"),
            walk.c.remaining.label("visit"),
            still_remaining.label("remaining"),
        )
        .select_from(
            walk.join(
                p,
                and_(
                    p.c.thread_id == thread_id,
                    p.c.checkpoint_ns == ns,
                    p.c.checkpoint_id == walk.c.parent_checkpoint_id,
                    p.c.checkpoint_id < walk.c.checkpoint_id,
                ),
            )
        )
        .where(func.cardinality(walk.c.remaining) > 0)
    )
    walk = walk.union_all(step)

    writes = (
        select(
            literal("w", Text).label("kind"),
            walk.c.depth,
            w.c.channel,
            w.c.task_id,
            w.c.task_path,
            w.c.idx,
            cast(null(), Text).label("version"),
            w.c.type,
            w.c.blob,
            cast(null(), Text).label("inline"),
        )
        .select_from(
            walk.join(
                w,
                and_(
                    w.c.thread_id == thread_id,
                    w.c.checkpoint_ns == ns,
                    w.c.checkpoint_id == walk.c.checkpoint_id,
                ),
            )
        )
        .where(walk.c.depth >= 1, w.c.channel == func.any(walk.c.visit))
    )

    s = c.alias("seeded")
    visited = func.unnest(walk.c.visit).table_valued("ch").render_derived(name="visited")
    seed_version = s.c.checkpoint["channel_versions"].op("->>", return_type=String)(
        visited.c.ch
    )
    sb = b.alias("seed_blob")
    seeds = (
        select(
            literal("s", Text).label("kind"),
            walk.c.depth,
            visited.c.ch,
            cast(null(), Text),
            cast(null(), Text),
            cast(null(), Integer),
            seed_version,
            sb.c.type,
            sb.c.blob,
            cast(
                s.c.checkpoint["channel_values"].op("->", return_type=JSONB)(visited.c.ch), Text
            ),
        )
        .select_from(
            walk.join(visited, literal(True))
            .join(
                s,
                and_(
                    s.c.thread_id == thread_id,
                    s.c.checkpoint_ns == ns,
                    s.c.checkpoint_id == walk.c.checkpoint_id,
                ),
            )
            .outerjoin(
                sb,
                and_(
                    sb.c.thread_id == thread_id,
                    sb.c.checkpoint_ns == ns,
                    sb.c.channel == visited.c.ch,
                    sb.c.version == seed_version,
                    sb.c.type != "empty",
                ),
            )
        )
        .where(walk.c.depth >= 1, visited.c.ch != func.all(walk.c.remaining))
    )
    return Statement(union_all(writes, seeds))


async def load_delta_channel_history(
    db: Database,
    repository: CheckpointRepository,
    serde: SerializerProtocol,
    target: Target,
    channels: Sequence[str],
) -> Mapping[str, DeltaChannelHistory]:
    stmt = _history_statement(repository, newest=not target.checkpoint_id)
    params = {
        "thread_id": target.thread_id,
        "checkpoint_ns": target.checkpoint_ns,
        "channels": list(channels),
    }
    if target.checkpoint_id:
        params["checkpoint_id"] = target.checkpoint_id

    rows = await db.fetch(stmt.bind(params), op="aget_delta_channel_history")
    writes_by_channel: dict[str, list[tuple[int, tuple[str, str, int], PendingWrite]]] = {}
    seeds: dict[str, Any] = {}
    for kind, depth, channel, task_id, task_path, idx, _version, type_, blob, inline in rows:
        if kind == "w":
            value = serde.loads_typed((type_ or "", blob or b""))
            writes_by_channel.setdefault(channel, []).append(
                (depth, writes_sort_key(task_path, task_id, idx), (task_id, channel, value))
            )
        elif blob is not None or type_ is not None:
            seeds[channel] = serde.loads_typed((type_, blob or b""))
        elif inline is not None:
            seeds[channel] = load_json(inline)
    result: dict[str, DeltaChannelHistory] = {}
    for channel in channels:
        # Oldest ancestor first; within one checkpoint in the order live execution applied them.
        ordered = sorted(writes_by_channel.get(channel, ()), key=lambda e: (-e[0], e[1]))
        entry: DeltaChannelHistory = {"writes": [e[2] for e in ordered]}
        if channel in seeds:
            entry["seed"] = seeds[channel]
        result[channel] = entry
    return result

