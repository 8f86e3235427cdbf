"""Sync twins of async methods: run the coroutine on the object's own event loop.

The saver and the store are async (asyncpg connections belong to the loop that opened them), but
LangGraph calls the sync API from worker threads (``graph.invoke`` in a thread, sync tools).
Those calls are handed to the loop the object lives on (:func:`submit`). Called on that loop
itself, blocking for the result would deadlock, so it raises instead.

A call handed over carries the caller's context variables with it: the OpenTelemetry span the
caller is in (a web request's, ``graph.invoke``'s), and anything else kept in a ``ContextVar``,
is current while the coroutine runs on the other loop, so the operation's span is a child of
the caller's, as it is for a call awaited on the caller's own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar, cast

__all__ = ["LoopBridge", "submit"]

T = TypeVar("T")


def submit(
    coro: Coroutine[Any, Any, T],
    loop: asyncio.AbstractEventLoop,
    context: contextvars.Context | None = None,
) -> concurrent.futures.Future[T]:
    """Run ``coro`` as a task of ``loop`` (running in another thread); its future.

    As ``asyncio.run_coroutine_threadsafe``, except for the context the task runs in, which
    is stated here rather than left to how that function happens to schedule its task: a copy
    of the calling thread's context, or ``context`` (an empty ``contextvars.Context()`` for
    work that outlives the caller, such as a background sweeper). Cancelling the future
    cancels the task; the task's outcome (result, exception, cancellation) becomes the
    future's.
    """
    if context is None:
        context = contextvars.copy_context()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        # Runs on the loop, in ``context`` (call_soon_threadsafe's context=); create_task
        # gives the task a copy of the context current here.
        if future.cancelled():
            coro.close()  # cancelled before it started: never awaited, closed quietly
            return
        try:
            task = loop.create_task(coro)
        except BaseException as exc:
            coro.close()
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return
        task.add_done_callback(lambda done: _settle(future, done))
        future.add_done_callback(lambda f: _cancel_soon(loop, task) if f.cancelled() else None)

    try:
        loop.call_soon_threadsafe(start, context=context)
    except BaseException:
        coro.close()  # the loop is closed: never awaited, closed so no warning leaks
        raise
    return future


def _settle(future: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    # The future stays pending while the task runs (so that the caller can still cancel it)
    # and takes the task's outcome at the end.
    if task.cancelled():
        future.cancel()
        return
    if not future.set_running_or_notify_cancel():
        return  # the caller cancelled it meanwhile; the task's outcome has nobody to go to
    exc = task.exception()
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(task.result())


def _cancel_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    # A closed loop raises RuntimeError: its tasks were cancelled when it stopped.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(task.cancel)


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
        future = submit(coro, loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted while waiting (Ctrl+C in the main thread): the call must not go on
            # alone. Once it is over, cancelling changes nothing.
            future.cancel()
            raise

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
                # Each hop in the context of the thread iterating, as it is at that moment.
                more, item = submit(step(), loop).result()
                if not more:
                    return
                yield item
        finally:
            # Closing is handed over without waiting for it: this generator may be finalized
            # by the garbage collector on any thread, the loop's own included.
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(close(), loop)
