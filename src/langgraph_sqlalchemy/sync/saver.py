"""``SQLAlchemySaver``: the checkpoint saver for sync code, as upstream's ``PostgresSaver``.

``graph.invoke``, ``graph.stream``, ``get_state``, ``get_state_history`` and ``update_state`` in a
script, a Flask or Django view, Streamlit or a notebook need a checkpointer whose sync methods
work with no event loop around. This one owns an engine and an ``AsyncSQLAlchemySaver`` on a
private event loop thread and runs every call there, from any number of threads at once; the
async methods work too, from any other event loop (``graph.ainvoke`` in ``asyncio.run``).
"""

from __future__ import annotations

import concurrent.futures
import copy
import functools
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy.engine import URL

from ..checkpoint.retention import DEFAULT_BATCH_SIZE, ThreadTTLConfig, parse_ttl_config
from ..checkpoint.saver import LIST_PAGE_SIZE, AsyncSQLAlchemySaver
from ..database import RetryPolicy
from .owned_engine import OwnedEngine

__all__ = ["SQLAlchemySaver"]

T = TypeVar("T")


class SQLAlchemySaver(BaseCheckpointSaver[str]):
    """Checkpoints in PostgreSQL for sync code, on an engine and event loop of its own.

    ``SQLAlchemySaver(url)`` opens it (``conn``: where upstream's ``PostgresSaver`` takes a
    psycopg connection or pool, the database URL, ``postgresql://`` or
    ``postgresql+asyncpg://``, run on asyncpg) and :meth:`close` (or ``with``) closes it: the
    loop thread stops, the engine's connections close. :meth:`from_conn_string` is the same as
    a context manager, as upstream.

    ``serde``, ``schema``, ``retry``, ``group_commit``, ``ttl`` and ``track_activity`` mean
    what they mean for :class:`AsyncSQLAlchemySaver` (thread retention: docs/retention.md);
    ``pool_config`` (upstream's ``{"min_size", "max_size"}``), ``pgbouncer`` and any
    ``create_async_engine`` keyword configure the engine. ``serde`` is read at every call, as
    upstream reads it: assigning ``saver.serde`` changes what the next call uses.
    """

    def __init__(
        self,
        conn: str | URL,
        *,
        serde: SerializerProtocol | None = None,
        schema: str | None = None,
        retry: RetryPolicy | None = None,
        group_commit: bool = False,
        ttl: ThreadTTLConfig | Mapping[str, Any] | None = None,
        track_activity: bool = True,
        pool_config: Mapping[str, Any] | None = None,
        pgbouncer: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        # Checked before a thread or an engine exists, so a bad ttl leaves nothing to close.
        parse_ttl_config(ttl)
        super().__init__(serde=serde)
        # Every keyword of AsyncSQLAlchemySaver but the engine goes through unchanged, here
        # and in from_conn_string: the saver on the loop thread is the one doing the work.
        build = functools.partial(
            AsyncSQLAlchemySaver,
            serde=serde,
            schema=schema,
            retry=retry,
            group_commit=group_commit,
            ttl=ttl,
            track_activity=track_activity,
        )
        self._owned = OwnedEngine(
            type(self).__name__,
            conn,
            build,
            pool_config=pool_config,
            pgbouncer=pgbouncer,
            engine_kwargs=engine_kwargs,
        )
        self._core = self._owned.core
        self.serde = self._core.serde

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str | URL,
        *,
        pipeline: bool = False,
        serde: SerializerProtocol | None = None,
        schema: str | None = None,
        retry: RetryPolicy | None = None,
        group_commit: bool = False,
        ttl: ThreadTTLConfig | Mapping[str, Any] | None = None,
        track_activity: bool = True,
        pool_config: Mapping[str, Any] | None = None,
        pgbouncer: bool = False,
        **engine_kwargs: Any,
    ) -> Iterator[SQLAlchemySaver]:
        """A saver for ``conn_string``, closed on exit.

        ``pipeline`` is accepted for upstream's sake and changes nothing: psycopg's pipeline
        mode saves round trips on one shared connection, and here every call already is one
        statement (or one transaction) on a pooled connection of its own.
        """
        del pipeline
        saver = cls(
            conn_string,
            serde=serde,
            schema=schema,
            retry=retry,
            group_commit=group_commit,
            ttl=ttl,
            track_activity=track_activity,
            pool_config=pool_config,
            pgbouncer=pgbouncer,
            **engine_kwargs,
        )
        try:
            yield saver
        finally:
            saver.close()

    @property
    def schema(self) -> str | None:
        """The Postgres schema the tables are in (None: unqualified). Fixed at construction."""
        return self._core.schema

    @property
    def ttl_config(self) -> ThreadTTLConfig | None:
        """The thread-retention configuration (None: threads never expire)."""
        return self._core.ttl_config

    @property
    def track_activity(self) -> bool:
        return self._core.track_activity

    # --- thread retention -------------------------------------------------------------------------

    def sweep_ttl(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Remove the threads that have expired now; returns how many it removed."""
        return self._run("sweep_ttl", self._core.asweep_ttl(batch_size=batch_size))

    async def asweep_ttl(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        return await self._arun("asweep_ttl", self._core.asweep_ttl(batch_size=batch_size))

    def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> concurrent.futures.Future[None]:
        """Sweep expired threads every ``sweep_interval_minutes`` (default: the ttl config's,
        else 5) on the saver's loop until stopped; returns a future that finishes when the
        sweeper stops (cancelling it stops the sweeper), as the sync store's."""
        return self._owned.start_sweeper(self._core, sweep_interval_minutes)

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; False if it did not stop within ``timeout`` seconds."""
        return self._run("stop_ttl_sweeper", self._core.stop_ttl_sweeper(timeout))

    # --- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Wait for calls in progress, close the engine's connections, stop the loop thread.

        Idempotent. Later calls raise ``RuntimeError``. A saver never closed is closed when it
        is garbage collected or at interpreter exit. Clones made by :meth:`with_allowlist`
        share the engine and the loop thread: closing one closes them all.
        """
        self._owned.close()

    def __enter__(self) -> SQLAlchemySaver:
        if self._owned.closed:
            # Entering again after an exit would hand out an object whose every call fails.
            raise RuntimeError(
                f"this {type(self).__name__} is closed; create a new one with from_conn_string()"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _saver(self) -> AsyncSQLAlchemySaver:
        """The async saver that does the work, with this saver's current ``serde``.

        Upstream reads ``self.serde`` at every call, and LangGraph's ``with_allowlist`` makes
        its clone by copying this object and assigning ``serde``: either way the next call
        must see the new serializer. Once it changed, calls go to a shallow copy of the async
        saver holding the new one (same engine, same loop), kept for the calls after.
        """
        core = self._core
        if core.serde is not self.serde:
            core = copy.copy(core)
            core.serde = self.serde
            self._core = core
        return core

    def _run(self, method: str, coro: Coroutine[Any, Any, T]) -> T:
        return self._owned.thread.run(coro, method)

    async def _arun(self, method: str, coro: Coroutine[Any, Any, T]) -> T:
        return await self._owned.thread.arun(coro, method)

    def setup(self) -> None:
        """Migrate the schema to head (idempotent; safe from many processes at once)."""
        self._run("setup", self._saver.setup())

    def get_next_version(self, current: str | None, channel: None) -> str:
        return self._saver.get_next_version(current, channel)

    # --- sync API ---------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run("get_tuple", self._saver.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first, a page at a time (never the whole history at once)."""
        # A generator of this class (not the loop thread's): it keeps the saver alive while
        # someone iterates.
        yield from self._owned.thread.iterate(
            self._saver.alist(config, filter=filter, before=before, limit=limit),
            "list",
            chunk=LIST_PAGE_SIZE,
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._run("put", self._saver.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._run("put_writes", self._saver.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._run("delete_thread", self._saver.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run("delete_for_runs", self._saver.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run("copy_thread", self._saver.acopy_thread(source_thread_id, target_thread_id))

    def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        self._run("prune", self._saver.aprune(thread_ids, strategy=strategy, keep_last=keep_last))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._run(
            "get_delta_channel_history",
            self._saver.aget_delta_channel_history(config=config, channels=channels),
        )

    # --- async API (from any event loop: the work runs on this saver's) ---------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._arun("aget_tuple", self._saver.aget_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = self._owned.thread.aiterate(
            self._saver.alist(config, filter=filter, before=before, limit=limit),
            "alist",
            chunk=LIST_PAGE_SIZE,
        )
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._arun(
            "aput", self._saver.aput(config, checkpoint, metadata, new_versions)
        )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._arun(
            "aput_writes", self._saver.aput_writes(config, writes, task_id, task_path)
        )

    async def adelete_thread(self, thread_id: str) -> None:
        await self._arun("adelete_thread", self._saver.adelete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._arun("adelete_for_runs", self._saver.adelete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._arun(
            "acopy_thread", self._saver.acopy_thread(source_thread_id, target_thread_id)
        )

    async def aprune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        await self._arun(
            "aprune", self._saver.aprune(thread_ids, strategy=strategy, keep_last=keep_last)
        )

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._arun(
            "aget_delta_channel_history",
            self._saver.aget_delta_channel_history(config=config, channels=channels),
        )

