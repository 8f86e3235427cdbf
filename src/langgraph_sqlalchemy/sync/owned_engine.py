"""The engine a sync object owns, and the async object on it, made and closed on its loop thread.

The sync classes are thin wrappers: everything they do is done by an ``AsyncSQLAlchemySaver`` or
``AsyncSQLAlchemyStore`` (the *core*) living on a private :class:`LoopThread`. The engine and the
core are created on that loop, because the store's batching task and asyncpg's connections
belong to the loop they start on. Closing (explicitly, on ``with`` exit, when the last reference
goes, or at interpreter exit) runs the core's cleanup, disposes of the engine, and joins the
thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..engine import create_engine, normalize_url
from .loop_thread import LoopThread

__all__ = ["OwnedEngine", "check_conn_string"]

Core = TypeVar("Core")


def check_conn_string(owner: str, conn_string: object) -> URL:
    """The asyncpg URL for ``conn_string``; a clear ``TypeError`` for what is not a URL.

    Engines are refused rather than adopted: a host's ``AsyncEngine`` hands out connections
    bound to the host's loop, and a sync ``Engine`` runs another driver.
    """
    async_twin = f"Async{owner}"
    if isinstance(conn_string, (Engine, Connection)):
        raise TypeError(
            f"{owner} takes a database URL, not a sync SQLAlchemy {type(conn_string).__name__}: "
            f"it runs asyncpg on an engine it creates on its own event loop. Use "
            f"{owner}.from_conn_string(url) (for an existing engine: "
            f"{owner}.from_conn_string(engine.url.set(drivername='postgresql+asyncpg'))), "
            f"or {async_twin}(async_engine) in async code."
        )
    if isinstance(conn_string, (AsyncEngine, AsyncConnection)):
        argument = "engine" if isinstance(conn_string, AsyncEngine) else "conn"
        raise TypeError(
            f"{owner} takes a database URL, not an {type(conn_string).__name__}: it creates its "
            "own engine on its own event loop, since asyncpg connections belong to one loop. "
            f"In async code use {async_twin}({argument}) (its sync "
            "methods work from worker threads while your loop runs); in sync code use "
            f"{owner}.from_conn_string(url)."
        )
    if type(conn_string).__module__.partition(".")[0] in ("psycopg", "psycopg_pool"):
        raise TypeError(
            f"{owner} takes a database URL, not a psycopg {type(conn_string).__name__}: it "
            "runs asyncpg on an engine it creates on its own event loop (pool_config= sizes "
            f"its pool). Pass the URL you connected with: {owner}(url) or "
            f"{owner}.from_conn_string(url)."
        )
    if not isinstance(conn_string, (str, URL)):
        raise TypeError(
            f"{owner} takes a database URL (a str or a sqlalchemy URL), got "
            f"{type(conn_string).__module__}.{type(conn_string).__qualname__}; use "
            f"{owner}.from_conn_string(url)."
        )
    return normalize_url(conn_string)


class _Sweeping(Protocol):
    """An async saver or store: what owns a TTL sweeper."""

    async def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> asyncio.Task[None]: ...

    async def stop_ttl_sweeper(self, timeout: float | None = None) -> bool: ...


async def _until_stopped(sweeping: _Sweeping, task: asyncio.Task[None]) -> None:
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # The caller cancelled the future start_sweeper returned: the sweeper stops then.
        await sweeping.stop_ttl_sweeper()
        raise


class OwnedEngine(Generic[Core]):
    """A loop thread, the engine made on it, and the core ``build(engine)`` made on it."""

    def __init__(
        self,
        owner: str,
        conn_string: object,
        build: Callable[[AsyncEngine], Core],
        *,
        close_core: Callable[[Core], Awaitable[None]] | None = None,
        pool_config: Mapping[str, Any] | None = None,
        pgbouncer: bool = False,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        url = check_conn_string(owner, conn_string)

        async def open_on_loop() -> tuple[AsyncEngine, Core]:
            engine = create_engine(
                url, pool_config=pool_config, pgbouncer=pgbouncer, **(engine_kwargs or {})
            )
            try:
                return engine, build(engine)
            except BaseException:
                await engine.dispose()
                raise

        self.thread = LoopThread(owner)
        try:
            # In an empty context, not the caller's: what starts here (the store's batching
            # task) lives as long as the object, and must not carry the span of whichever
            # request happened to create it into every later batch.
            self.engine, self.core = self.thread.run(
                open_on_loop(), "__init__", context=contextvars.Context()
            )
        except BaseException:
            self.thread.close()
            raise
        # Holds no reference to self: the finalizer runs when the last sync object sharing
        # this is collected (clones from with_allowlist included), or at interpreter exit.
        self._finalizer = weakref.finalize(
            self, _close, self.thread, self.engine, self.core, close_core
        )

    @property
    def closed(self) -> bool:
        return self.thread.closed

    def start_sweeper(
        self, sweeping: _Sweeping, sweep_interval_minutes: float | None
    ) -> concurrent.futures.Future[None]:
        """Start ``sweeping``'s TTL sweeper on the loop; a future that finishes when the
        sweeper stops, and cancelling it stops the sweeper (as upstream's sync classes)."""
        # In an empty context, as upstream's sweeper thread runs: the sweeps are not part of
        # the call (or request span) that happened to start the sweeper.
        task = self.thread.run(
            sweeping.start_ttl_sweeper(sweep_interval_minutes),
            "start_ttl_sweeper",
            context=contextvars.Context(),
        )
        return self.thread.spawn(_until_stopped(sweeping, task), "start_ttl_sweeper")

    def close(self) -> None:
        """Close now (idempotent): later calls raise, calls in progress finish first."""
        if self._finalizer.alive:
            self._finalizer()
        else:
            self.thread.close()  # waits for a close in progress on another thread


def _close(
    thread: LoopThread,
    engine: AsyncEngine,
    core: Core,
    close_core: Callable[[Core], Awaitable[None]] | None,
) -> None:
    async def cleanup() -> None:
        try:
            if close_core is not None:
                await close_core(core)
        finally:
            await engine.dispose()

    thread.close(cleanup)
