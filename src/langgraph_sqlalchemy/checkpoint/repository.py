"""The checkpoint tables' statements, built with SQLAlchemy Core and run on a given connection.

:class:`CheckpointRepository` never opens, commits or retries a transaction: the saver runs each
method inside :meth:`Database.run`, which owns the transaction. Every statement is built from the
same ``Table`` objects with values as bound parameters; the hot ones (the checkpoint read, a
list page, a put, a task's writes) are built once and kept as
:class:`~langgraph_sqlalchemy.db.statements.Statement`, compiled once per dialect. Row sets
travel as arrays expanded with ``unnest`` rather than as multi-row ``VALUES``: one compiled
statement then fits any number of rows, and a put stays one round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.serde.types import TASKS
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    TableValuedAlias,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, Insert, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import NullType

from ..db.statements import BoundStatement, Statement
from ..schema import Tables, get_tables
from .serialization import BlobRow, WriteRow, load_json
from .thread_activity import KEEP_TTL, TTLUpdate, touch_activity

__all__ = ["CheckpointRepository", "ListFilter", "PageKey", "repository_for"]

_TEXT_ARRAY = ARRAY(Text)


def text_array(values: Sequence[str]) -> ColumnElement[Any]:
    return literal(list(values), _TEXT_ARRAY)


def unnest(*arrays: tuple[str, ColumnElement[Any]], name: str) -> TableValuedAlias:
    """``unnest(a, b, ...) AS name(col_a, col_b, ...)``: parallel arrays as rows."""
    return (
        func.unnest(*(array for _, array in arrays))
        .table_valued(*(column for column, _ in arrays))
        .render_derived(name=name)
    )


@dataclass(frozen=True)
class ListFilter:
    thread_id: str | None
    checkpoint_ns: str | None
    checkpoint_id: str | None
    metadata_json: str | None
    before_id: str | None


# (checkpoint_id, thread_id, checkpoint_ns) of the last row of the previous page.
PageKey = tuple[str, str, str]


class CheckpointRepository:
    """The statements of one schema's checkpoint tables (see :func:`repository_for`)."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.checkpoints = tables.checkpoints
        self.blobs = tables.checkpoint_blobs
        self.writes = tables.checkpoint_writes
        self._page_statements: dict[tuple[bool, ...], Statement[Select[Any]]] = {}

    # --- reads ------------------------------------------------------------------------------------

    def _tuple_select(self) -> Select[Any]:
        """A checkpoint row with its blobs, writes and parent's pending sends, in one query.

        The three collections are correlated aggregate subqueries, so one round trip returns
        any number of complete tuples; nothing is fetched per checkpoint afterwards.
        """
        c, b, w = self.checkpoints, self.blobs, self.writes
        versions = (
            func.jsonb_each_text(c.c.checkpoint["channel_versions"])
            .table_valued("key", "value")
            .render_derived(name="cv")
        )
        # One primary-key probe per channel version. A plain join here is planned as a hash
        # join over every blob of the thread (the planner guesses 100 rows for
        # jsonb_each_text), rebuilt for each checkpoint: quadratic in the thread's length.
        # LIMIT keeps the lateral subquery from being flattened into that join (as a parameter
        # it does not keep Postgres off the generic plan: pg_prepared_statements shows it used).
        blob = (
            select(b.c.type, b.c.blob)
            .where(
                b.c.thread_id == c.c.thread_id,
                b.c.checkpoint_ns == c.c.checkpoint_ns,
                b.c.channel == versions.c.key,
                b.c.version == versions.c.value,
            )
            .limit(1)
            .correlate(c, versions)
            .lateral("blob")
        )
        blobs = (
            select(
                func.array_agg(tuple_(versions.c.key, blob.c.type, blob.c.blob), type_=NullType())
            )
            .select_from(versions.join(blob, true()))
            .scalar_subquery()
        )
        writes = (
            select(
                func.array_agg(
                    tuple_(w.c.task_id, w.c.channel, w.c.type, w.c.blob, w.c.task_path, w.c.idx),
                    type_=NullType(),
                )
            )
            .where(
                w.c.thread_id == c.c.thread_id,
                w.c.checkpoint_ns == c.c.checkpoint_ns,
                w.c.checkpoint_id == c.c.checkpoint_id,
            )
            .scalar_subquery()
        )
        sw = w.alias("sends")
        sends = case(
            (
                and_(
                    c.c.checkpoint["v"].astext.cast(Integer) < 4,
                    c.c.parent_checkpoint_id.is_not(None),
                ),
                select(
                    func.array_agg(
                        aggregate_order_by(
                            tuple_(sw.c.type, sw.c.blob), sw.c.task_path, sw.c.task_id, sw.c.idx
                        ),
                        type_=NullType(),
                    )
                )
                .where(
                    sw.c.thread_id == c.c.thread_id,
                    sw.c.checkpoint_ns == c.c.checkpoint_ns,
                    sw.c.checkpoint_id == c.c.parent_checkpoint_id,
                    sw.c.channel == TASKS,
                )
                .scalar_subquery(),
            ),
            else_=None,
        )
        return select(
            c.c.thread_id,
            c.c.checkpoint_ns,
            c.c.checkpoint_id,
            c.c.parent_checkpoint_id,
            # As text, decoded by orjson in the saver, not by the engine's json_deserializer.
            cast(c.c.checkpoint, Text),
            cast(c.c.metadata, Text),
            blobs,
            writes,
            sends.label("pending_sends"),
        )

    @functools.cached_property
    def _select_by_id(self) -> Statement[Select[Any]]:
        c = self.checkpoints
        return Statement(
            self._tuple_select().where(
                c.c.thread_id == bindparam("thread_id", type_=Text),
                c.c.checkpoint_ns == bindparam("checkpoint_ns", type_=Text),
                c.c.checkpoint_id == bindparam("checkpoint_id", type_=Text),
            )
        )

    @functools.cached_property
    def _select_latest(self) -> Statement[Select[Any]]:
        # "= (SELECT max(...))" rather than "ORDER BY ... LIMIT $n": with the row count a
        # parameter, Postgres never adopts a generic plan for the prepared statement and plans
        # this whole query again on every call, which costs more than running it.
        c = self.checkpoints
        thread_id = bindparam("thread_id", type_=Text)
        checkpoint_ns = bindparam("checkpoint_ns", type_=Text)
        newest = (
            select(func.max(c.c.checkpoint_id))
            .where(c.c.thread_id == thread_id, c.c.checkpoint_ns == checkpoint_ns)
            .scalar_subquery()
        )
        return Statement(
            self._tuple_select().where(
                c.c.thread_id == thread_id,
                c.c.checkpoint_ns == checkpoint_ns,
                c.c.checkpoint_id == newest,
            )
        )

    def select_checkpoint_tuple(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> BoundStatement:
        """The checkpoint by id, or the newest of (thread, ns): zero or one row for
        :meth:`CheckpointRow.from_result`."""
        params = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
        if checkpoint_id:
            params["checkpoint_id"] = checkpoint_id
            return self._select_by_id.bind(params)
        return self._select_latest.bind(params)

    def _page_statement(self, shape: tuple[bool, ...]) -> Statement[Select[Any]]:
        """The page query for one combination of filters, built once and kept.

        Statements are built from bound parameters only, so the few shapes a program uses
        are each compiled once. The page size stays a parameter: a page is big enough that
        planning it each time (a custom plan) costs nothing noticeable.
        """
        known = self._page_statements.get(shape)
        if known is not None:
            return known
        has_thread, has_ns, has_id, has_filter, has_before, has_after = shape
        c = self.checkpoints
        stmt = self._tuple_select()
        if has_thread:
            stmt = stmt.where(c.c.thread_id == bindparam("thread_id", type_=Text))
        if has_ns:
            stmt = stmt.where(c.c.checkpoint_ns == bindparam("checkpoint_ns", type_=Text))
        if has_id:
            stmt = stmt.where(c.c.checkpoint_id == bindparam("checkpoint_id", type_=Text))
        if has_filter:
            stmt = stmt.where(
                c.c.metadata.contains(cast(bindparam("metadata_json", type_=Text), JSONB))
            )
        if has_before:
            stmt = stmt.where(c.c.checkpoint_id < bindparam("before_id", type_=Text))
        if has_after:
            last_id = bindparam("after_id", type_=Text)
            stmt = stmt.where(
                # The first conjunct lets the primary key index seek; the second is the exact
                # keyset condition for rows sharing the last checkpoint id.
                c.c.checkpoint_id <= last_id,
                or_(
                    c.c.checkpoint_id < last_id,
                    tuple_(c.c.thread_id, c.c.checkpoint_ns)
                    < tuple_(
                        bindparam("after_thread", type_=Text), bindparam("after_ns", type_=Text)
                    ),
                ),
            )
        stmt = stmt.order_by(
            c.c.checkpoint_id.desc(), c.c.thread_id.desc(), c.c.checkpoint_ns.desc()
        ).limit(bindparam("page_limit", type_=Integer))
        page = self._page_statements[shape] = Statement(stmt)
        return page

    def select_checkpoint_page(
        self, where: ListFilter, *, after: PageKey | None, limit: int
    ) -> BoundStatement:
        """One page of ``alist``: newest first, continuing below ``after`` (keyset pagination).

        Rows are ordered by checkpoint id, then thread and namespace so that listing across
        threads has a total order to resume from; within one thread and namespace the primary
        key index serves the order directly.
        """
        params: dict[str, Any] = {"page_limit": limit}
        shape = (
            where.thread_id is not None,
            where.checkpoint_ns is not None,
            where.checkpoint_id is not None,
            where.metadata_json is not None,
            where.before_id is not None,
            after is not None,
        )
        for name in ("thread_id", "checkpoint_ns", "checkpoint_id", "metadata_json", "before_id"):
            value = getattr(where, name)
            if value is not None:
                params[name] = value
        if after is not None:
            params["after_id"], params["after_thread"], params["after_ns"] = after
        return self._page_statement(shape).bind(params)

    # --- writes -----------------------------------------------------------------------------------

    def _build_upsert_checkpoint(self, *, with_blobs: bool, track_activity: bool = True) -> Insert:
        c, b = self.checkpoints, self.blobs
        stmt = insert(c).values(
            thread_id=bindparam("thread_id", type_=Text),
            checkpoint_ns=bindparam("checkpoint_ns", type_=Text),
            checkpoint_id=bindparam("checkpoint_id", type_=Text),
            parent_checkpoint_id=bindparam("parent_checkpoint_id", type_=Text),
            # JSON is encoded by the saver (orjson) and cast here, so the host engine's
            # json_serializer never sees our documents and nothing is encoded twice.
            checkpoint=cast(bindparam("checkpoint_json", type_=Text), JSONB),
            metadata=cast(bindparam("metadata_json", type_=Text), JSONB),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.c.thread_id, c.c.checkpoint_ns, c.c.checkpoint_id],
            set_={"checkpoint": stmt.excluded.checkpoint, "metadata": stmt.excluded.metadata},
        )
        if track_activity:
            # The thread's last activity rides along as one more CTE: same statement, same
            # round trip (see thread_activity.touch_activity).
            activity = self.tables.checkpoint_thread_activity
            stmt = stmt.add_cte(touch_activity(activity).cte("touched_activity"))
        if not with_blobs:
            return stmt
        rows = unnest(
            ("channel", bindparam("blob_channels", type_=_TEXT_ARRAY)),
            ("version", bindparam("blob_versions", type_=_TEXT_ARRAY)),
            ("type", bindparam("blob_types", type_=_TEXT_ARRAY)),
            ("blob", bindparam("blob_values", type_=ARRAY(BYTEA))),
            name="new_blobs",
        )
        insert_blobs = (
            insert(b)
            .from_select(
                ["thread_id", "checkpoint_ns", "channel", "version", "type", "blob"],
                select(
                    bindparam("thread_id", type_=Text),
                    bindparam("checkpoint_ns", type_=Text),
                    rows.c.channel,
                    rows.c.version,
                    rows.c.type,
                    rows.c.blob,
                ),
            )
            .on_conflict_do_nothing(
                index_elements=[b.c.thread_id, b.c.checkpoint_ns, b.c.channel, b.c.version]
            )
            .cte("inserted_blobs")
        )
        return stmt.add_cte(insert_blobs)

    @functools.cached_property
    def _upsert_checkpoint(self) -> Statement[Insert]:
        return Statement(self._build_upsert_checkpoint(with_blobs=False), returns_rows=False)

    @functools.cached_property
    def _upsert_checkpoint_and_blobs(self) -> Statement[Insert]:
        return Statement(self._build_upsert_checkpoint(with_blobs=True), returns_rows=False)

    @functools.cached_property
    def _upsert_checkpoint_untracked(self) -> Statement[Insert]:
        return Statement(
            self._build_upsert_checkpoint(with_blobs=False, track_activity=False),
            returns_rows=False,
        )

    @functools.cached_property
    def _upsert_checkpoint_and_blobs_untracked(self) -> Statement[Insert]:
        return Statement(
            self._build_upsert_checkpoint(with_blobs=True, track_activity=False),
            returns_rows=False,
        )

    def upsert_checkpoint(
        self,
        *,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        parent_checkpoint_id: str | None,
        checkpoint_json: str,
        metadata_json: str,
        blobs: Sequence[BlobRow],
        track_activity: bool = True,
        thread_ttl: TTLUpdate = KEEP_TTL,
    ) -> BoundStatement:
        """The checkpoint row and its new blobs in ONE statement (atomic, one round trip).

        Blobs are write-once per (thread, ns, channel, version): the blob insert is a
        data-modifying CTE with ``ON CONFLICT DO NOTHING`` attached to the checkpoint upsert.
        The checkpoint upsert replaces ``checkpoint`` and ``metadata`` but keeps the parent.
        ``track_activity``: the thread's activity row is touched in the same statement, with
        ``thread_ttl`` applied to its own TTL.
        """
        params: dict[str, Any] = {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": parent_checkpoint_id,
            "checkpoint_json": checkpoint_json,
            "metadata_json": metadata_json,
        }
        if blobs:
            params["blob_channels"] = [r[0] for r in blobs]
            params["blob_versions"] = [r[1] for r in blobs]
            params["blob_types"] = [r[2] for r in blobs]
            params["blob_values"] = [r[3] for r in blobs]
        if not track_activity:
            if blobs:
                return self._upsert_checkpoint_and_blobs_untracked.bind(params)
            return self._upsert_checkpoint_untracked.bind(params)
        params.update(thread_ttl.params())
        if blobs:
            return self._upsert_checkpoint_and_blobs.bind(params)
        return self._upsert_checkpoint.bind(params)

    def _build_insert_writes(self, *, replace: bool, track_activity: bool = True) -> Insert:
        w = self.writes
        new = unnest(
            ("idx", bindparam("idx", type_=ARRAY(Integer))),
            ("channel", bindparam("channels", type_=_TEXT_ARRAY)),
            ("type", bindparam("types", type_=_TEXT_ARRAY)),
            ("blob", bindparam("blobs", type_=ARRAY(BYTEA))),
            name="new_writes",
        )
        stmt = insert(w).from_select(
            [
                "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path",
                "idx", "channel", "type", "blob",
            ],
            select(
                bindparam("thread_id", type_=Text),
                bindparam("checkpoint_ns", type_=Text),
                bindparam("checkpoint_id", type_=Text),
                bindparam("task_id", type_=Text),
                bindparam("task_path", type_=Text),
                new.c.idx,
                new.c.channel,
                new.c.type,
                new.c.blob,
            ),
        )
        key = [w.c.thread_id, w.c.checkpoint_ns, w.c.checkpoint_id, w.c.task_id, w.c.idx]
        if replace:
            stmt = stmt.on_conflict_do_update(
                index_elements=key,
                set_={
                    "channel": stmt.excluded.channel,
                    "type": stmt.excluded.type,
                    "blob": stmt.excluded.blob,
                },
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=key)
        if track_activity:
            activity = self.tables.checkpoint_thread_activity
            stmt = stmt.add_cte(touch_activity(activity).cte("touched_activity"))
        return stmt

    @functools.cached_property
    def _insert_writes_first_wins(self) -> Statement[Insert]:
        return Statement(self._build_insert_writes(replace=False), returns_rows=False)

    @functools.cached_property
    def _upsert_writes_latest_wins(self) -> Statement[Insert]:
        return Statement(self._build_insert_writes(replace=True), returns_rows=False)

    @functools.cached_property
    def _insert_writes_first_wins_untracked(self) -> Statement[Insert]:
        return Statement(
            self._build_insert_writes(replace=False, track_activity=False), returns_rows=False
        )

    @functools.cached_property
    def _upsert_writes_latest_wins_untracked(self) -> Statement[Insert]:
        return Statement(
            self._build_insert_writes(replace=True, track_activity=False), returns_rows=False
        )

    def insert_writes(
        self,
        *,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        task_id: str,
        task_path: str,
        rows: Sequence[WriteRow],
        replace: bool,
        track_activity: bool = True,
        thread_ttl: TTLUpdate = KEEP_TTL,
    ) -> BoundStatement:
        """A task's writes in one statement; ``replace``: latest wins, else first wins.

        ``track_activity``: the thread's activity row is touched in the same statement.
        """
        params: dict[str, Any] = {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
            "task_id": task_id,
            "task_path": task_path,
            "idx": [r[0] for r in rows],
            "channels": [r[1] for r in rows],
            "types": [r[2] for r in rows],
            "blobs": [r[3] for r in rows],
        }
        if not track_activity:
            stmt = (
                self._upsert_writes_latest_wins_untracked
                if replace
                else self._insert_writes_first_wins_untracked
            )
            return stmt.bind(params)
        params.update(thread_ttl.params())
        stmt = self._upsert_writes_latest_wins if replace else self._insert_writes_first_wins
        return stmt.bind(params)

    # --- thread-level maintenance -----------------------------------------------------------------

    async def delete_threads(self, conn: AsyncConnection, thread_ids: Sequence[str]) -> None:
        """Every row of the threads, all namespaces, in one (atomic) statement."""
        ids = any_(text_array(thread_ids))
        stmt = (
            delete(self.writes)
            .where(self.writes.c.thread_id == ids)
            .add_cte(
                delete(self.checkpoints)
                .where(self.checkpoints.c.thread_id == ids)
                .cte("deleted_checkpoints")
            )
            .add_cte(
                delete(self.blobs).where(self.blobs.c.thread_id == ids).cte("deleted_blobs")
            )
        )
        await conn.execute(stmt)

    async def copy_thread(
        self, conn: AsyncConnection, source: str, target: str, *, track_activity: bool = True
    ) -> None:
        """Every row of ``source`` again under ``target``, in one statement.

        Existing target rows win (``DO NOTHING``), so running it twice is harmless.

        ``track_activity``: the copy is a write to ``target`` and records it as one (last
        activity now, the source's own TTL unless the target has one). Without that row a
        sweep would judge the copy by its checkpoints' ``ts``, which are the source's, and
        remove a copy of an old thread at the next sweep.
        """
        c, b, w = self.checkpoints, self.blobs, self.writes
        dst = literal(target, Text)
        copy_checkpoints = (
            insert(c)
            .from_select(
                [
                    "thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id",
                    "type", "checkpoint", "metadata",
                ],
                select(
                    dst, c.c.checkpoint_ns, c.c.checkpoint_id, c.c.parent_checkpoint_id,
                    c.c.type, c.c.checkpoint, c.c.metadata,
                ).where(c.c.thread_id == source),
            )
            .on_conflict_do_nothing()
            .cte("copied_checkpoints")
        )
        copy_blobs = (
            insert(b)
            .from_select(
                ["thread_id", "checkpoint_ns", "channel", "version", "type", "blob"],
                select(
                    dst, b.c.checkpoint_ns, b.c.channel, b.c.version, b.c.type, b.c.blob
                ).where(b.c.thread_id == source),
            )
            .on_conflict_do_nothing()
            .cte("copied_blobs")
        )
        stmt = (
            insert(w)
            .from_select(
                [
                    "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx",
                    "channel", "type", "blob", "task_path",
                ],
                select(
                    dst, w.c.checkpoint_ns, w.c.checkpoint_id, w.c.task_id, w.c.idx,
                    w.c.channel, w.c.type, w.c.blob, w.c.task_path,
                ).where(w.c.thread_id == source),
            )
            .on_conflict_do_nothing()
            .add_cte(copy_checkpoints)
            .add_cte(copy_blobs)
        )
        if track_activity:
            stmt = stmt.add_cte(self._copied_activity(source, target).cte("copied_activity"))
        await conn.execute(stmt)

    def _copied_activity(self, source: str, target: str) -> Insert:
        """The target's activity row for :meth:`copy_thread` (only when the source has
        checkpoints: an empty copy writes nothing, so it records nothing either)."""
        a, c = self.tables.checkpoint_thread_activity, self.checkpoints
        source_ttl = (
            select(a.c.ttl_minutes).where(a.c.thread_id == source).scalar_subquery()
        )
        row = select(literal(target, Text), func.now(), source_ttl).where(
            exists().where(c.c.thread_id == source)
        )
        stmt = insert(a).from_select(["thread_id", "last_activity", "ttl_minutes"], row)
        return stmt.on_conflict_do_update(
            index_elements=[a.c.thread_id],
            set_={
                "last_activity": stmt.excluded.last_activity,
                "ttl_minutes": func.coalesce(a.c.ttl_minutes, stmt.excluded.ttl_minutes),
            },
        )

    async def delete_for_runs(self, conn: AsyncConnection, run_ids: Sequence[str]) -> int:
        """Checkpoints whose ``metadata.run_id`` is one of ``run_ids``, with their writes.

        Blobs go too when no surviving checkpoint of their thread and namespace refers to them;
        a surviving checkpoint whose parent went is left without a parent, as prune does.
        Runs in the caller's transaction (several statements that must commit together).
        """
        c, w = self.checkpoints, self.writes
        deleted = (
            await conn.execute(
                delete(c)
                .where(c.c.metadata["run_id"].astext == any_(text_array(run_ids)))
                .returning(
                    c.c.thread_id,
                    c.c.checkpoint_ns,
                    c.c.checkpoint_id,
                    cast(c.c.checkpoint["channel_versions"], Text),
                )
            )
        ).all()
        if not deleted:
            return 0
        gone = unnest(
            ("thread_id", text_array([r[0] for r in deleted])),
            ("checkpoint_ns", text_array([r[1] for r in deleted])),
            ("checkpoint_id", text_array([r[2] for r in deleted])),
            name="gone",
        )
        await conn.execute(
            delete(w).where(
                w.c.thread_id == gone.c.thread_id,
                w.c.checkpoint_ns == gone.c.checkpoint_ns,
                w.c.checkpoint_id == gone.c.checkpoint_id,
            )
        )
        await conn.execute(
            update(c)
            .where(
                c.c.thread_id == gone.c.thread_id,
                c.c.checkpoint_ns == gone.c.checkpoint_ns,
                c.c.parent_checkpoint_id == gone.c.checkpoint_id,
            )
            .values(parent_checkpoint_id=None)
        )
        freed = freed_blob_keys(
            (thread_id, ns, versions_json) for thread_id, ns, _id, versions_json in deleted
        )
        await self.delete_unreferenced_blobs(conn, freed)
        return len(deleted)

    async def delete_unreferenced_blobs(
        self, conn: AsyncConnection, freed: Sequence[tuple[str, str, str, str]]
    ) -> None:
        """Delete the (thread, ns, channel, version) blobs no checkpoint of theirs refers to."""
        if not freed:
            return
        c, b = self.checkpoints, self.blobs
        keys = unnest(
            ("thread_id", text_array([k[0] for k in freed])),
            ("checkpoint_ns", text_array([k[1] for k in freed])),
            ("channel", text_array([k[2] for k in freed])),
            ("version", text_array([k[3] for k in freed])),
            name="freed",
        )
        still_referenced = exists().where(
            c.c.thread_id == keys.c.thread_id,
            c.c.checkpoint_ns == keys.c.checkpoint_ns,
            c.c.checkpoint["channel_versions"].op("->>", return_type=String)(keys.c.channel)
            == keys.c.version,
        )
        await conn.execute(
            delete(b).where(
                b.c.thread_id == keys.c.thread_id,
                b.c.checkpoint_ns == keys.c.checkpoint_ns,
                b.c.channel == keys.c.channel,
                b.c.version == keys.c.version,
                ~still_referenced,
            )
        )


@functools.lru_cache(maxsize=64)
def repository_for(schema: str | None) -> CheckpointRepository:
    """One repository per schema, shared by every saver on it: the hot statements are built
    once per process, not once per saver (hosts often create a saver per request)."""
    return CheckpointRepository(get_tables(schema))


def freed_blob_keys(
    deleted: Iterable[tuple[str, str, str | None]],
) -> list[tuple[str, str, str, str]]:
    """Distinct (thread, ns, channel, version) referenced by deleted checkpoints."""
    keys: set[tuple[str, str, str, str]] = set()
    for thread_id, ns, versions_json in deleted:
        for channel, version in (load_json(versions_json) if versions_json else {}).items():
            keys.add((thread_id, ns, channel, str(version)))
    return sorted(keys)

