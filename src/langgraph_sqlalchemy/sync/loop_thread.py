"""A private event loop in a daemon thread: where the sync classes run the async core.

asyncpg connections belong to the event loop that opened them, and sync callers (scripts, Flask
and Django views, Streamlit, notebooks, LangGraph's own worker threads) have no loop to lend. So
each sync object starts a loop of its own in a thread of its own and hands every call to it
(:func:`~langgraph_sqlalchemy.loop_bridge.submit`); any number of threads may wait on it at once.
A call runs in a copy of its caller's context, so that the caller's OpenTelemetry span is the
parent of the call's; work that outlives its caller (the engine and the object, made when it
opens; a TTL sweeper) starts in an empty context instead, as a thread of its own would.

The thread is a daemon so that a forgotten ``close()`` cannot keep the interpreter from exiting;
the owner closes it at exit instead (``weakref.finalize`` runs at interpreter exit, while daemon
threads still run), which lets the engine say goodbye to the server rather than drop its sockets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import os
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
)
from typing import Any, TypeVar

from ..loop_bridge import submit

__all__ = ["LoopThread"]

logger = logging.getLogger("langgraph_sqlalchemy")

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread until :meth:`close`.

    ``owner`` names the object in error messages (``SQLAlchemySaver.get_tuple() ...``).
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.loop = asyncio.new_event_loop()
        self._pid = os.getpid()
        # Re-entrant: a garbage collection inside a locked section may finalize an abandoned
        # iterator of this loop, whose cleanup takes the lock again on the same thread.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._calls = 0  # calls handed to the loop and not finished yet
        self._closing = False
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name=f"{owner}-event-loop", daemon=True
        )
        self._thread.start()
        started.wait()

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _serve(self, started: threading.Event) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            try:
                _cancel_remaining_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                # Executor threads (DNS lookups while connecting, sync embedding functions) are
                # ours too: none may outlive the object.
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    # --- handing work to the loop --------------------------------------------------------------

    def _forked(self) -> bool:
        # Checked before taking the lock: a fork may have copied it in the locked state.
        return os.getpid() != self._pid

    def _fork_error(self, method: str) -> RuntimeError:
        return RuntimeError(
            f"{self.owner}.{method}() was called in process {os.getpid()}, but this "
            f"{self.owner} was created in process {self._pid} before a fork, and its event loop "
            f"thread does not exist here. Create the {self.owner} in each process that uses it "
            "(for example in a web server's post-fork hook, or without preloading the "
            "application)."
        )

    def _refusal(self, method: str) -> BaseException | None:
        name = f"{self.owner}.{method}()"
        if threading.current_thread() is self._thread:
            return asyncio.InvalidStateError(
                f"{name} was called on the {self.owner}'s own event loop thread (from code it "
                "runs, such as an embedding function), where waiting for it would block that "
                f"loop forever. Use the async method there (await a{method}(...))."
            )
        if self._closing:
            return RuntimeError(f"{name}: this {self.owner} is closed")
        return None

    def _submit(
        self,
        coro: Coroutine[Any, Any, T],
        method: str,
        *,
        counted: bool = True,
        context: contextvars.Context | None = None,
    ) -> concurrent.futures.Future[T]:
        if self._forked():
            coro.close()
            raise self._fork_error(method)
        with self._lock:
            refusal = self._refusal(method)
            if refusal is not None:
                coro.close()  # never awaited: close it so no "was never awaited" warning leaks
                raise refusal
            if counted:
                # Counted until the coroutine itself has finished on the loop, not until its
                # future is done: a call cancelled from its thread (Ctrl+C) has a cancelled
                # future at once, while on the loop it still gives its connection back (a
                # graceful close that lets the server cancel the statement), which close()
                # must wait for before it disposes of the engine.
                self._calls += 1
            work = self._counted(coro) if counted else coro
            try:
                future = submit(work, self.loop, context)
            except BaseException:
                work.close()
                coro.close()  # never started: no "was never awaited" warning either
                if counted:
                    self._calls -= 1
                raise
        return future

    async def _counted(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await coro
        finally:
            self._call_done()

    def _call_done(self) -> None:
        with self._idle:
            self._calls -= 1
            if self._calls == 0:
                self._idle.notify_all()

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        method: str,
        *,
        context: contextvars.Context | None = None,
    ) -> T:
        """Run ``coro`` on the loop and wait for its result (from any thread but the loop's).

        ``coro`` runs in a copy of the caller's context, or in ``context`` when given.
        """
        future = self._submit(coro, method, context=context)
        try:
            return future.result()
        except BaseException:
            # Interrupted while waiting (Ctrl+C in a script): the call must not go on alone.
            future.cancel()
            raise

    async def arun(self, coro: Coroutine[Any, Any, T], method: str) -> T:
        """Await ``coro`` from any event loop: on another one, it runs on this one meanwhile.

        Cancelling the awaiting task cancels the call on this loop too.
        """
        if _running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(self._submit(coro, method))

    def spawn(self, coro: Coroutine[Any, Any, T], method: str) -> concurrent.futures.Future[T]:
        """Start a long-lived task (not waited for by :meth:`close`); its future.

        It runs in an empty context: it outlives the call that started it, and its spans
        belong to no caller's trace.
        """
        return self._submit(coro, method, counted=False, context=contextvars.Context())

    def iterate(self, items: AsyncIterator[T], method: str, *, chunk: int) -> Iterator[T]:
        """Drive an async iterator from a sync caller, up to ``chunk`` items per hop.

        Only one chunk is held here at a time, so a long listing is never all in memory.
        """
        finished = False
        try:
            while True:
                batch = self.run(_next_chunk(items, chunk), method)
                yield from batch
                if len(batch) < chunk:
                    finished = True
                    return
        finally:
            if not finished:
                self._close_later(items)

    async def aiterate(
        self, items: AsyncIterator[T], method: str, *, chunk: int
    ) -> AsyncGenerator[T, None]:
        """:meth:`iterate` for a caller on another event loop."""
        finished = False
        try:
            while True:
                batch = await self.arun(_next_chunk(items, chunk), method)
                for item in batch:
                    yield item
                if len(batch) < chunk:
                    finished = True
                    return
        finally:
            if not finished:
                self._close_later(items)

    def _close_later(self, items: AsyncIterator[Any]) -> None:
        # An abandoned iterator is closed on its loop without waiting: this may run in a
        # garbage collection on any thread, the loop's own included. If the loop is going
        # away, its shutdown closes the generator instead.
        aclose = getattr(items, "aclose", None)
        if aclose is None:
            return
        if self._forked():
            return
        with self._lock:
            if self._closing or self.loop.is_closed():
                return
            asyncio.run_coroutine_threadsafe(aclose(), self.loop)

    # --- shutting down -------------------------------------------------------------------------

    def close(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Refuse new calls, wait for those in progress, run ``cleanup`` on the loop, stop the
        loop and join the thread. Idempotent; safe from any thread, the loop's own included
        (then nothing is waited for)."""
        if self._forked():
            self._closing = True  # the thread and its loop live in the parent only
            return
        with self._idle:
            already = self._closing
            self._closing = True
            if not self._thread.is_alive():
                return
            if threading.current_thread() is self._thread:
                if not already:
                    self.loop.create_task(_shutdown(self.loop, cleanup))
                return
            if not already:
                self._idle.wait_for(lambda: self._calls == 0)
        if already:
            self._thread.join()
            return
        done = asyncio.run_coroutine_threadsafe(_shutdown(self.loop, cleanup), self.loop)
        try:
            done.result()
        finally:
            self._thread.join()


async def _next_chunk(items: AsyncIterator[T], chunk: int) -> list[T]:
    batch: list[T] = []
    while len(batch) < chunk:
        try:
            batch.append(await items.__anext__())
        except StopAsyncIteration:
            break
    return batch


async def _shutdown(
    loop: asyncio.AbstractEventLoop, cleanup: Callable[[], Awaitable[None]] | None
) -> None:
    try:
        if cleanup is not None:
            await cleanup()
    finally:
        loop.stop()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still scheduled (a store's batching task, an abandoned call) and let it
    finish, as ``asyncio.run`` does on exit."""
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "a task of a closing event loop failed: %r", task.exception(), exc_info=False
            )
