"""The TTL sweeper: a background task deleting expired items every few minutes.

Expired rows are invisible with ``omit_expired`` (and revived by a read refresh without it);
either way they take space until swept. One sweep is one ``DELETE ... WHERE expires_at <
now()`` served by the partial ``expires_at`` index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["TTLSweeper"]

logger = logging.getLogger("langgraph_sqlalchemy")


class TTLSweeper:
    """Runs ``sweep()`` every ``interval_minutes`` until stopped."""

    def __init__(self, sweep: Callable[[], Awaitable[int]]) -> None:
        self._sweep = sweep
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, interval_minutes: float) -> asyncio.Task[None]:
        if self._task is not None and not self._task.done():
            return self._task
        if interval_minutes <= 0:
            raise ValueError(f"sweep interval must be positive, got {interval_minutes!r} minutes")
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._loop(interval_minutes * 60.0), name="langgraph_sqlalchemy.ttl_sweeper"
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
                logger.exception("store TTL sweep failed; retrying at the next interval")
            else:
                if deleted:
                    logger.info("store TTL sweep deleted %d expired items", deleted)

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
