"""``SQLAlchemyStore``: the long-term memory store for sync code, as upstream's ``PostgresStore``.

It owns an engine and an ``AsyncSQLAlchemyStore`` on a private event loop thread. Sync calls from
any number of threads are handed to that loop, where concurrent ones still coalesce into one
batch (``AsyncBatchedBaseStore``); the async methods work from any other event loop.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, cast, overload

from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    NOT_PROVIDED,
    BaseStore,
    Item,
    NamespacePath,
    NotProvided,
    Op,
    Result,
    SearchItem,
    TTLConfig,
)
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from ..database import RetryPolicy
from ..store.store import AsyncSQLAlchemyStore
from .owned_engine import OwnedEngine

__all__ = ["SQLAlchemyStore"]

T = TypeVar("T")
V = TypeVar("V")


class _CoreAttribute(Generic[V]):
    """An attribute of the async store on the loop thread, read and assigned through the
    sync one, so that there is one value: the one the async store reads at every call."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _CoreAttribute[V]: ...

    @overload
    def __get__(self, instance: SQLAlchemyStore, owner: type[Any]) -> V: ...

    def __get__(
        self, instance: SQLAlchemyStore | None, owner: type[Any]
    ) -> V | _CoreAttribute[V]:
        if instance is None:
            return self
        return cast("V", getattr(instance._core, self.name))

    def __set__(self, instance: SQLAlchemyStore, value: V) -> None:
        setattr(instance._core, self.name, value)


class SQLAlchemyStore(BaseStore):
    """A LangGraph ``BaseStore`` for sync code, on an engine and event loop of its own.

    ``SQLAlchemyStore(url, index=..., ttl=...)`` opens it (``conn``: where upstream's
    ``PostgresStore`` takes a psycopg connection or pool, the database URL) and :meth:`close`
    (or ``with``) closes it; :meth:`from_conn_string` is the same as a context manager, as
    upstream. ``index``, ``ttl``, ``deserializer``, ``schema`` and ``retry`` mean what they
    mean for :class:`AsyncSQLAlchemyStore`; ``pool_config``, ``pgbouncer`` and any
    ``create_async_engine`` keyword configure the engine.

    ``ttl_config``, ``index_config`` and ``embeddings`` are read at every call, as upstream
    reads them: assigning them (or changing ``ttl_config`` in place) takes effect on the next
    call. ``schema`` is fixed at construction.
    """

    supports_ttl: bool = True
    ttl_config: _CoreAttribute[TTLConfig | None] = _CoreAttribute()
    index_config: _CoreAttribute[dict[str, Any] | None] = _CoreAttribute()
    embeddings: _CoreAttribute[Embeddings | None] = _CoreAttribute()

    def __init__(
        self,
        conn: str | URL,
        *,
        index: Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
        deserializer: Callable[[bytes], dict[str, Any]] | None = None,
        schema: str | None = None,
        retry: RetryPolicy | None = None,
        pool_config: Mapping[str, Any] | None = None,
        pgbouncer: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        def build(engine: AsyncEngine) -> AsyncSQLAlchemyStore:
            # On the loop thread: the store's batching task starts on the loop running here.
            return AsyncSQLAlchemyStore(
                engine,
                index=index,
                ttl=ttl,
                deserializer=deserializer,
                schema=schema,
                retry=retry,
            )

        self._owned = OwnedEngine(
            type(self).__name__,
            conn,
            build,
            close_core=_stop_sweeper,
            pool_config=pool_config,
            pgbouncer=pgbouncer,
            engine_kwargs=engine_kwargs,
        )
        self._core = self._owned.core

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str | URL,
        *,
        pipeline: bool = False,
        pool_config: Mapping[str, Any] | None = None,
        index: Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
        deserializer: Callable[[bytes], dict[str, Any]] | None = None,
        schema: str | None = None,
        retry: RetryPolicy | None = None,
        pgbouncer: bool = False,
        **engine_kwargs: Any,
    ) -> Iterator[SQLAlchemyStore]:
        """A store for ``conn_string``, closed on exit (its TTL sweeper stopped first).

        ``pipeline`` is accepted for upstream's sake and changes nothing: a batch here is
        already one statement or one transaction on a pooled connection.
        """
        del pipeline
        store = cls(
            conn_string,
            index=index,
            ttl=ttl,
            deserializer=deserializer,
            schema=schema,
            retry=retry,
            pool_config=pool_config,
            pgbouncer=pgbouncer,
            **engine_kwargs,
        )
        try:
            yield store
        finally:
            store.close()

    @property
    def schema(self) -> str | None:
        """The Postgres schema the tables are in (None: unqualified). Fixed at construction."""
        return self._core.schema

    # --- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the TTL sweeper, wait for calls in progress, close the engine's connections and
        stop the loop thread. Idempotent; later calls raise ``RuntimeError``. A store never
        closed is closed when it is garbage collected or at interpreter exit."""
        self._owned.close()

    def __enter__(self) -> SQLAlchemyStore:
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

    def _run(self, method: str, coro: Coroutine[Any, Any, T]) -> T:
        return self._owned.thread.run(coro, method)

    async def _arun(self, method: str, coro: Coroutine[Any, Any, T]) -> T:
        return await self._owned.thread.arun(coro, method)

    def setup(self) -> None:
        """Migrate the schema to head and, with an index configured, create the vector layer.

        Idempotent and safe to run from several processes at once.
        """
        self._run("setup", self._core.setup())

    # --- TTL -------------------------------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Delete expired items now; returns how many were deleted."""
        return self._run("sweep_ttl", self._core.sweep_ttl())

    def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> concurrent.futures.Future[None]:
        """Sweep expired items every ``sweep_interval_minutes`` (default: the TTLConfig's, else
        5) on the store's loop until stopped; as upstream, returns a future that finishes when
        the sweeper stops, and cancelling it stops the sweeper."""
        return self._owned.start_sweeper(self._core, sweep_interval_minutes)

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; False if it did not stop within ``timeout`` seconds."""
        return self._run("stop_ttl_sweeper", self._core.stop_ttl_sweeper(timeout))

    # --- batches ---------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._run("batch", self._core.abatch(list(ops)))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self._arun("abatch", self._core.abatch(list(ops)))

    # The single-op methods go through the core's own (not through batch) so that calls from
    # many threads at once coalesce into one batch on the loop, as the async store's do.

    def get(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        return self._run("get", self._core.aget(namespace, key, refresh_ttl=refresh_ttl))

    def search(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        return self._run(
            "search",
            self._core.asearch(
                namespace_prefix,
                query=query,
                filter=filter,
                limit=limit,
                offset=offset,
                refresh_ttl=refresh_ttl,
            ),
        )

    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        self._run("put", self._core.aput(namespace, key, value, index, ttl=ttl))

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        self._run("delete", self._core.adelete(namespace, key))

    def list_namespaces(
        self,
        *,
        prefix: NamespacePath | None = None,
        suffix: NamespacePath | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        return self._run(
            "list_namespaces",
            self._core.alist_namespaces(
                prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
            ),
        )

    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        return await self._arun("aget", self._core.aget(namespace, key, refresh_ttl=refresh_ttl))

    async def asearch(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        return await self._arun(
            "asearch",
            self._core.asearch(
                namespace_prefix,
                query=query,
                filter=filter,
                limit=limit,
                offset=offset,
                refresh_ttl=refresh_ttl,
            ),
        )

    async def aput(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        await self._arun("aput", self._core.aput(namespace, key, value, index, ttl=ttl))

    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        await self._arun("adelete", self._core.adelete(namespace, key))

    async def alist_namespaces(
        self,
        *,
        prefix: NamespacePath | None = None,
        suffix: NamespacePath | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        return await self._arun(
            "alist_namespaces",
            self._core.alist_namespaces(
                prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
            ),
        )


async def _stop_sweeper(core: AsyncSQLAlchemyStore) -> None:
    await core.stop_ttl_sweeper()


