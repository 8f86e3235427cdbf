"""A background task that runs a sweep (expired store items, expired threads) periodically.

Both the store and the saver own one; it lives on the event loop that started it, and a
failed sweep (the database briefly away) waits for the next interval instead of ending it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from collections.abc import Awaitable, Callable

__all__ = ["TTLSweeper"]

logger = logging.getLogger("langgraph_sqlalchemy")


class TTLSweeper:
    """Runs ``sweep()`` every ``interval_minutes`` until stopped; ``what`` names what it
    removes in its log lines ("expired store items")."""

    def __init__(
        self, sweep: Callable[[], Awaitable[int]], *, what: str = "expired store items"
    ) -> None:
        self._sweep = sweep
        self._what = what
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, interval_minutes: float) -> asyncio.Task[None]:
        if self._task is not None and not self._task.done():
            return self._task
        if not (isinstance(interval_minutes, (int, float)) and 0 < interval_minutes < math.inf):
            raise ValueError(
                f"a sweep interval must be a positive number, got {interval_minutes!r}"
            )
        self._stop = asyncio.Event()
        # In an empty context: the sweeps are not part of the call (or the request's span)
        # that happened to start the sweeper.
        self._task = contextvars.Context().run(
            asyncio.get_running_loop().create_task,
            self._loop(interval_minutes * 60.0),
            name="langgraph_sqlalchemy.ttl_sweeper",
        )
        return self._task

    async def _loop(self, interval_seconds: float) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval_seconds)
            if self._stop.is_set():
                return
            try:
                deleted = await self._sweep()
            except Exception:
                # A failed sweep (database briefly away) must not end the sweeper.
                logger.exception(
                    "TTL sweep of %s failed; retrying at the next interval", self._what
                )
            else:
                if deleted:
                    logger.info("TTL sweep removed %d %s", deleted, self._what)

    async def stop(self, timeout: float | None = None) -> bool:
        """Stop the task; False if it did not finish within ``timeout`` seconds."""
        task = self._task
        if task is None or task.done():
            self._task = None
            return True
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
        except asyncio.TimeoutError:
            return False
        self._task = None
        return True
