"""``AsyncSQLAlchemySaver``: LangGraph's checkpoint saver on a host's SQLAlchemy ``AsyncEngine``.

It reads and writes the very rows of ``langgraph-checkpoint-postgres``'s ``AsyncPostgresSaver``
(one database can serve both, alternately). This class is thin on purpose: it validates input,
serializes, and hands each call to :class:`~langgraph_sqlalchemy.database.Database`, which runs it
on its own pooled connection in one transaction (retrying transient failures). There is no
instance-wide lock: concurrent calls on one saver run in parallel, and ``alist`` holds a
connection only while it fetches one page.

Thread retention (``ttl=``, :meth:`AsyncSQLAlchemySaver.asweep_ttl`) lives in :mod:`.retention`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db import Database, RetryPolicy
from ..errors import InvalidInputError
from ..input_errors import InvalidInputTypeError, MissingKeyError
from ..loop_bridge import LoopBridge
from ..schema import get_tables
from ..sweeper import TTLSweeper
from ..telemetry import traced, traced_iterator
from ..ttl_bounds import check_sweep_interval
from .configs import names_no_thread, read_target, text_id
from .delta_history import load_delta_channel_history
from .prune import PRUNE_STRATEGIES, prune_threads
from .repository import ListFilter, PageKey, repository_for
from .retention import (
    DEFAULT_BATCH_SIZE,
    RetentionPolicy,
    SweepProgress,
    ThreadTTLConfig,
    parse_ttl_config,
    sweep_threads,
    thread_ttl_of,
)
from .serialization import (
    CheckpointRow,
    blob_rows,
    clean_metadata,
    dump_json,
    load_checkpoint_tuple,
    one_row_per_idx,
    split_channel_values,
    stored_metadata,
    write_rows,
)
from .thread_activity import RecentTouches, TTLUpdate

__all__ = ["AsyncSQLAlchemySaver"]

def _config_ids(config: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Span attributes identifying the thread of a call's config (recorded on opt-in only)."""
    config = kwargs.get("config", config)
    configurable = config.get("configurable", {}) if isinstance(config, Mapping) else {}
    return {
        "langgraph.thread_id": configurable.get("thread_id"),
        "langgraph.checkpoint_ns": configurable.get("checkpoint_ns"),
    }


def _thread_ids(thread_id: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"langgraph.thread_id": thread_id}


logger = logging.getLogger("langgraph_sqlalchemy")


class _SweeperStopped(Exception):
    """Raised between two batches of a background sweep that stop_ttl_sweeper() ended."""

# Rows per alist round trip: big enough that a full-history listing costs few round trips, small
# enough that a page (with its blobs) is a bounded amount of memory.
LIST_PAGE_SIZE = 100


class AsyncSQLAlchemySaver(BaseCheckpointSaver[str]):
    """Checkpoints in PostgreSQL through a SQLAlchemy ``AsyncEngine`` (or a host connection).

    ``AsyncSQLAlchemySaver(engine)`` shares the host's engine and pool (never disposed here);
    ``AsyncSQLAlchemySaver(conn)`` joins the host's transaction on that ``AsyncConnection``
    (each call in a savepoint; the host commits). ``schema`` places the tables in that Postgres
    schema. Call :meth:`setup` once (or run the migrations CLI) before first use.

    ``group_commit=True`` (engine-bound): when more puts and task writes arrive at once than
    the pool has connections (many graph runs in one process), those of one kind share one
    round trip and one commit (see :mod:`langgraph_sqlalchemy.db.group_commit`).

    ``ttl`` is thread retention with the keys of ``langgraph.json``'s ``checkpointer.ttl``
    (``strategy``, ``default_ttl`` in minutes, ``sweep_interval_minutes``, ``sweep_limit``):
    :meth:`asweep_ttl` removes expired threads, :meth:`start_ttl_sweeper` does so periodically.
    A run's ``config["configurable"]["checkpoint_ttl"]`` (minutes) sets its thread's own TTL.
    ``track_activity=False`` stops recording each thread's last write (the sweep then judges by
    the checkpoints' own timestamps only, as for threads upstream wrote); it is on by default.
    """

    def __init__(
        self,
        conn: AsyncEngine | AsyncConnection,
        *,
        serde: SerializerProtocol | None = None,
        schema: str | None = None,
        retry: RetryPolicy | None = None,
        group_commit: bool = False,
        ttl: ThreadTTLConfig | Mapping[str, Any] | None = None,
        track_activity: bool = True,
    ) -> None:
        retention = parse_ttl_config(ttl)
        super().__init__(serde=serde)
        self.db = Database(conn, retry=retry, group_commit=group_commit)
        self.schema = schema
        self.tables = get_tables(schema)
        self.repository = repository_for(schema)
        self._bridge = LoopBridge(type(self).__name__)
        self.ttl_config = cast(ThreadTTLConfig, dict(ttl)) if ttl is not None else None
        self._retention = retention
        self.track_activity = bool(track_activity)
        # Engine-bound only: a host's transaction may still roll a recorded touch back.
        self._recent_touches = RecentTouches() if self.db.connection is None else None
        self._sweeper = TTLSweeper(self._sweep_in_background, what="expired threads")
        self._sweeper_stopping = False

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        pipeline: bool = False,
        serde: SerializerProtocol | None = None,
        schema: str | None = None,
        pool_config: Mapping[str, Any] | None = None,
        pgbouncer: bool = False,
        ttl: ThreadTTLConfig | Mapping[str, Any] | None = None,
        track_activity: bool = True,
        retry: RetryPolicy | None = None,
        group_commit: bool = False,
        **engine_kwargs: Any,
    ) -> AsyncIterator[AsyncSQLAlchemySaver]:
        """A saver on an engine of its own for ``conn_string``, disposed on exit (its TTL
        sweeper, if started, stopped first).

        ``conn_string`` is what upstream takes, a ``postgresql://`` URI or libpq's
        keyword/value string (:mod:`langgraph_sqlalchemy.conninfo`), and runs on asyncpg.
        ``pipeline`` is accepted for upstream's callers and changes nothing: each call is
        already one statement (or one transaction).
        """
        from ..engine import create_engine

        # Checked before an engine exists, so a bad ttl leaves nothing to dispose.
        parse_ttl_config(ttl)
        engine = create_engine(
            conn_string, pool_config=pool_config, pgbouncer=pgbouncer, **engine_kwargs
        )
        try:
            saver = cls(
                engine,
                serde=serde,
                schema=schema,
                retry=retry,
                group_commit=group_commit,
                ttl=ttl,
                track_activity=track_activity,
            )
            try:
                yield saver
            finally:
                await saver.stop_ttl_sweeper()
        finally:
            await engine.dispose()

    @property
    def conn(self) -> AsyncEngine | AsyncConnection:
        """The engine or connection the saver was created on (upstream: its psycopg
        connection or pool). Fixed: create another saver for another database."""
        return self.db.bind

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the sync methods hand their work to."""
        return self._bridge.loop

    @traced("setup", "checkpoints")
    async def setup(self) -> None:
        """Migrate the schema to head (idempotent; safe from many processes at once)."""
        from .. import migrations

        self._bridge.bind()
        await migrations.upgrade(self.db.bind, schema=self.schema)

    # --- reads ------------------------------------------------------------------------------------

    def _load(self, row: CheckpointRow) -> CheckpointTuple:
        return load_checkpoint_tuple(
            self.serde, row, first_version=self.get_next_version(None, None)
        )

    @traced("aget_tuple", "checkpoints", _config_ids)
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint of ``config``, or the thread's newest in its namespace."""
        self._bridge.bind()
        if names_no_thread(config, "aget_tuple"):
            return None
        target = read_target(config, "aget_tuple")
        rows = await self.db.fetch(
            self.repository.select_checkpoint_tuple(
                target.thread_id, target.checkpoint_ns, target.checkpoint_id
            ),
            op="aget_tuple",
        )
        return self._load(CheckpointRow.from_result(rows[0])) if rows else None

    @traced_iterator("alist", "checkpoints", _config_ids)
    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first, fetched a page at a time.

        Each page is its own short database call, so a slow consumer holds no connection and
        a long history is never in memory at once.
        """
        self._bridge.bind()
        where = self._list_filter(config, filter, before)
        if names_no_thread(config, "alist"):
            return
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise InvalidInputError(f"alist: limit must be an int, got {limit!r}")
            if limit <= 0:
                return
        remaining = limit
        after: PageKey | None = None
        while True:
            page_size = LIST_PAGE_SIZE if remaining is None else min(LIST_PAGE_SIZE, remaining)
            # One row more than the page tells whether another page exists, without a last
            # query that comes back empty; not needed when the page finishes the limit.
            probe = 0 if remaining is not None and remaining <= LIST_PAGE_SIZE else 1
            page = await self.db.fetch(
                self.repository.select_checkpoint_page(
                    where, after=after, limit=page_size + probe
                ),
                op="alist",
            )
            more = len(page) > page_size
            rows = [CheckpointRow.from_result(record) for record in page[:page_size]]
            del page
            for row in rows:
                yield self._load(row)
            if remaining is not None:
                remaining -= len(rows)
                if remaining <= 0:
                    return
            if not more:
                return
            last = rows[-1]
            after = (last.checkpoint_id, last.thread_id, last.checkpoint_ns)

    @staticmethod
    def _list_filter(
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
    ) -> ListFilter:
        thread_id = checkpoint_ns = checkpoint_id = None
        if config and not names_no_thread(config, "alist"):
            target = read_target(config, "alist")
            thread_id = target.thread_id
            checkpoint_id = target.checkpoint_id
            if config["configurable"].get("checkpoint_ns") is not None:
                checkpoint_ns = target.checkpoint_ns
        metadata_json = None
        if filter:
            if not isinstance(filter, Mapping):
                raise InvalidInputError(f"alist: filter must be a dict, got {filter!r}")
            # Stored metadata had NUL stripped; the filter is matched the same way.
            metadata_json = dump_json(clean_metadata(filter), what="alist filter")
        before_id = None
        if before is not None:
            raw = before.get("configurable", {}).get("checkpoint_id")
            before_id = text_id(raw, "before checkpoint_id", "alist") if raw else None
        return ListFilter(thread_id, checkpoint_ns, checkpoint_id, metadata_json, before_id)

    # --- writes -----------------------------------------------------------------------------------

    @traced("aput", "checkpoints", _config_ids)
    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save ``checkpoint`` (child of the config's ``checkpoint_id``) in one statement."""
        self._bridge.bind()
        target = read_target(config, "aput", require_ns=True)
        thread_ttl = thread_ttl_of(config, "aput")
        # Upstream fails with TypeError / KeyError here; these are those types too.
        if not isinstance(checkpoint, Mapping):
            raise InvalidInputTypeError("aput: checkpoint must be a Checkpoint dict with an 'id'")
        if "id" not in checkpoint:
            raise MissingKeyError("aput: checkpoint must be a Checkpoint dict with an 'id'")
        checkpoint_id = text_id(checkpoint["id"], "checkpoint['id']", "aput")
        stored, blob_values = split_channel_values(checkpoint)
        blobs = blob_rows(self.serde, blob_values, new_versions)
        checkpoint_json = dump_json(stored, what="aput: checkpoint")
        metadata_json = dump_json(
            stored_metadata(config, metadata), what="aput: checkpoint metadata"
        )
        track = self._touch_needed(target.thread_id, thread_ttl)

        statement = self.repository.upsert_checkpoint(
            thread_id=target.thread_id,
            checkpoint_ns=target.checkpoint_ns,
            checkpoint_id=checkpoint_id,
            parent_checkpoint_id=target.checkpoint_id,
            checkpoint_json=checkpoint_json,
            metadata_json=metadata_json,
            blobs=blobs,
            track_activity=track,
            thread_ttl=thread_ttl,
        )
        await self.db.fetch(statement, op="aput")
        self._touched(track, target.thread_id, thread_ttl)
        return {
            "configurable": {
                # The caller's own object (an int, a UUID), as upstream returns it; stored as
                # its text.
                "thread_id": config["configurable"]["thread_id"],
                "checkpoint_ns": target.checkpoint_ns,
                "checkpoint_id": checkpoint_id,
            }
        }

    @traced("aput_writes", "checkpoint_writes", _config_ids)
    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's writes to the config's checkpoint in one statement.

        Only special channels (errors, interrupts, ...): rows upsert, the latest wins.
        Otherwise existing rows win, so a retried task cannot change what was recorded.
        """
        self._bridge.bind()
        target = read_target(config, "aput_writes", require_ns=True, require_checkpoint_id=True)
        assert target.checkpoint_id is not None
        task = text_id(task_id, "task_id", "aput_writes")
        path = text_id(task_path or "", "task_path", "aput_writes")
        thread_ttl = thread_ttl_of(config, "aput_writes")
        if not writes:
            return
        rows = write_rows(self.serde, writes)
        replace = all(channel in WRITES_IDX_MAP for _, channel, _, _ in rows)
        rows = one_row_per_idx(rows, keep_last=replace)
        track = self._touch_needed(target.thread_id, thread_ttl)
        statement = self.repository.insert_writes(
            thread_id=target.thread_id,
            checkpoint_ns=target.checkpoint_ns,
            checkpoint_id=target.checkpoint_id,
            task_id=task,
            task_path=path,
            rows=rows,
            replace=replace,
            track_activity=track,
            thread_ttl=thread_ttl,
        )
        await self.db.fetch(statement, op="aput_writes")
        self._touched(track, target.thread_id, thread_ttl)

    # --- maintenance ------------------------------------------------------------------------------

    @traced("adelete_thread", "checkpoints", _thread_ids)
    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of the thread (all namespaces), atomically."""
        self._bridge.bind()
        tid = text_id(thread_id, "thread_id", "adelete_thread")

        async def work(conn: AsyncConnection) -> None:
            await self.repository.delete_threads(conn, [tid])

        await self.db.run(work, op="adelete_thread", single_statement=True)

    @traced("adelete_for_runs", "checkpoints")
    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints of these runs (``metadata.run_id``), their writes, and the
        blobs no remaining checkpoint refers to."""
        self._bridge.bind()
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        ids = [text_id(r, "run_id", "adelete_for_runs") for r in run_ids]
        if not ids:
            return

        async def work(conn: AsyncConnection) -> None:
            await self.repository.delete_for_runs(conn, ids)

        await self.db.run(work, op="adelete_for_runs")

    @traced("acopy_thread", "checkpoints", _thread_ids)
    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and write of one thread to another (one statement)."""
        self._bridge.bind()
        source = text_id(source_thread_id, "source_thread_id", "acopy_thread")
        target = text_id(target_thread_id, "target_thread_id", "acopy_thread")
        if source == target:
            return

        async def work(conn: AsyncConnection) -> None:
            await self.repository.copy_thread(
                conn, source, target, track_activity=self.track_activity
            )

        await self.db.run(work, op="acopy_thread", single_statement=True)

    @traced("aprune", "checkpoints")
    async def aprune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        """Prune threads as upstream 3.2 does (see :mod:`.prune`).

        ``strategy="keep_latest"`` keeps each namespace's newest checkpoint (``keep_last=N``:
        the newest N); ``"delete"`` removes the threads entirely.
        """
        self._bridge.bind()
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        if keep_last is not None and (
            isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1
        ):
            raise InvalidInputError(f"aprune: keep_last must be an int >= 1, got {keep_last!r}")
        ids = [text_id(t, "thread_id", "aprune") for t in thread_ids]
        if not ids:
            return
        await prune_threads(
            self.db, self.repository, ids, strategy=strategy, keep_last=keep_last or 1
        )

    # --- thread retention ---------------------------------------------------------------------

    def _touch_needed(self, thread_id: str, thread_ttl: TTLUpdate) -> bool:
        """Whether this write carries the activity touch (see RecentTouches)."""
        if not self.track_activity:
            return False
        touches = self._recent_touches
        return touches is None or touches.needed(thread_id, thread_ttl)

    def _touched(self, track: bool, thread_id: str, thread_ttl: TTLUpdate) -> None:
        if track and self._recent_touches is not None:
            self._recent_touches.record(thread_id, thread_ttl)

    @traced("asweep_ttl", "checkpoints")
    async def asweep_ttl(
        self,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: SweepProgress | None = None,
    ) -> int:
        """Remove the threads that have expired now; returns how many it removed.

        A thread expires ``default_ttl`` minutes (its own ``checkpoint_ttl``, if a run set one)
        after its last write. ``strategy="delete"`` removes it whole, ``batch_size`` threads per
        statement; ``"keep_latest"`` prunes it to its newest checkpoint per namespace, as
        :meth:`aprune` (threads that use a ``DeltaChannel`` are left alone and logged) and
        counts only the threads it removed a checkpoint from (one already down to its newest
        counts nothing). Safe to run from many processes at once; see :mod:`.retention`.
        ``progress(examined, due)`` is called (or awaited) after every batch.
        """
        self._bridge.bind()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(
                f"asweep_ttl: batch_size must be an int >= 1, got {batch_size!r}"
            )
        return await sweep_threads(
            self.db,
            self.repository,
            self._retention or RetentionPolicy(),
            batch_size=batch_size,
            progress=progress,
        )

    async def _sweep_in_background(self) -> int:
        # TTLSweeper reports in the store's words and ends on nothing: this sweep logs for
        # itself (and a failed one, e.g. the database away for longer than the retries, just
        # waits for the next interval). A stop ends a long sweep between two batches (each is
        # whole on its own) rather than after the last.
        def stop_between_batches(examined: int, due: int) -> None:
            if self._sweeper_stopping:
                raise _SweeperStopped

        try:
            removed = await self.asweep_ttl(progress=stop_between_batches)
        except _SweeperStopped:
            return 0
        except Exception:
            logger.exception("checkpoint TTL sweep failed; retrying at the next interval")
            return 0
        if removed:
            logger.info("checkpoint TTL sweep removed %d expired thread(s)", removed)
        return 0

    async def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> asyncio.Task[None]:
        """Run :meth:`asweep_ttl` every ``sweep_interval_minutes`` (default: the ttl config's,
        else 5) in a background task on the running loop; returns the task (already running:
        the same task). The first sweep runs one interval after the start."""
        self._bridge.bind()
        if sweep_interval_minutes is None and self._retention is not None:
            sweep_interval_minutes = self._retention.sweep_interval_minutes
        interval = check_sweep_interval(
            5.0 if sweep_interval_minutes is None else sweep_interval_minutes
        )
        if not self._sweeper.running:
            self._sweeper_stopping = False
        return self._sweeper.start(interval)

    async def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper (a sweep under way stops after its current batch); False if it did
        not stop within ``timeout`` seconds."""
        self._sweeper_stopping = True
        return await self._sweeper.stop(timeout)


    @traced("aget_delta_channel_history", "checkpoint_writes", _config_ids)
    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Writes and seed per channel along the parent chain, in two round trips."""
        self._bridge.bind()
        if not channels:
            return {}
        op = "aget_delta_channel_history"
        target = read_target(config, op)
        names = [text_id(channel, "channel name", op) for channel in channels]
        return await load_delta_channel_history(
            self.db, self.repository, self.serde, target, names
        )

    def get_next_version(self, current: str | None, channel: None) -> str:
        """``<32-digit counter>.<random fraction>``; string order is numeric order.

        Legacy integer versions (older checkpoints) are accepted as ``current``. Anything else
        fails as upstream's does (a float has no ``split``: AttributeError).
        """
        if current is None:
            counter = 0
        elif isinstance(current, int):
            counter = current
        else:
            counter = int(current.split(".")[0])
        return f"{counter + 1:032}.{random.random():016}"

    # --- sync twins (for worker threads) ---------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._bridge.run("get_tuple", self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self._bridge.iterate(
            "list", self.alist(config, filter=filter, before=before, limit=limit)
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._bridge.run("put", self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._bridge.run("put_writes", self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._bridge.run("delete_thread", self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._bridge.run("delete_for_runs", self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._bridge.run("copy_thread", self.acopy_thread(source_thread_id, target_thread_id))

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        self._bridge.run(
            "prune", self.aprune(thread_ids, strategy=strategy, keep_last=keep_last)
        )

    def sweep_ttl(
        self, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: SweepProgress | None = None
    ) -> int:
        return self._bridge.run(
            "sweep_ttl", self.asweep_ttl(batch_size=batch_size, progress=progress)
        )

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._bridge.run(
            "get_delta_channel_history",
            self.aget_delta_channel_history(config=config, channels=channels),
        )
