"""Sync twins of async methods: run the coroutine on the object's own event loop.

The saver and the store are async (asyncpg connections belong to the loop that opened them), but
LangGraph calls the sync API from worker threads (``graph.invoke`` in a thread, sync tools).
Those calls are handed to the loop the object lives on with ``run_coroutine_threadsafe``. Called
on that loop itself, blocking for the result would deadlock, so it raises instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar, cast

__all__ = ["LoopBridge"]

T = TypeVar("T")


class LoopBridge:
    """Remembers the event loop an object serves and runs coroutines on it from other threads.

    The loop is the one running at construction, or else the one of the first async call.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def bind(self) -> None:
        """Called at the start of every async method: adopt the running loop if none yet."""
        if self.loop is None or self.loop.is_closed():
            self.loop = asyncio.get_running_loop()

    def _target_loop(self, method: str) -> asyncio.AbstractEventLoop:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self.loop:
            raise asyncio.InvalidStateError(
                f"Synchronous {self.owner}.{method}() was called on the event loop the "
                f"{self.owner} runs on, where waiting for it would block that loop forever. "
                f"Use the async method (a{method}) there, or call {method}() from another "
                "thread (e.g. via asyncio.to_thread)."
            )
        if self.loop is None or self.loop.is_closed():
            sync_class = self.owner.removeprefix("Async")
            raise asyncio.InvalidStateError(
                f"{self.owner}.{method}() has no event loop to run on: create the "
                f"{self.owner} inside a running event loop (or make one async call first) "
                "and call the sync methods from another thread while that loop runs. "
                f"Code with no event loop (a script, Flask, Django, a notebook) wants "
                f"{sync_class}, which runs one of its own."
            )
        return self.loop

    def run(self, method: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            loop = self._target_loop(method)
        except BaseException:
            coro.close()  # never awaited: close it so no "was never awaited" warning leaks
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def iterate(self, method: str, aiter: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator from another thread, one item per hop to the loop."""
        loop = self._target_loop(method)

        async def step() -> tuple[bool, T]:
            try:
                return True, await aiter.__anext__()
            except StopAsyncIteration:
                return False, cast(T, None)

        async def close() -> None:
            aclose = getattr(aiter, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                more, item = asyncio.run_coroutine_threadsafe(step(), loop).result()
                if not more:
                    return
                yield item
        finally:
            # Closing is handed over without waiting for it: this generator may be finalized
            # by the garbage collector on any thread, the loop's own included.
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(close(), loop)
