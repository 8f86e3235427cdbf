"""A sync saver or store driven through the async API, so that one drop-in case runs on both.

The drop-in cases of ``test_saver_dropin.py`` and ``test_store_dropin.py`` are written against
the async classes (``await store.aput(...)``). :class:`AsAsync` lets the same case drive a sync
class (upstream's ``PostgresSaver`` / ``PostgresStore`` and ours): ``aput`` runs the object's
own *sync* ``put`` in a worker thread, as a sync caller would call it; ``alist`` collects the
sync ``list`` there. Attributes are read and assigned on the object itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["AsAsync"]

# The async name a case calls -> the sync method it stands for.
_SYNC_TWIN = {
    "setup": "setup",
    # saver
    "aget_tuple": "get_tuple",
    "aput_writes": "put_writes",
    "adelete_thread": "delete_thread",
    "adelete_for_runs": "delete_for_runs",
    "acopy_thread": "copy_thread",
    "aprune": "prune",
    "aget_delta_channel_history": "get_delta_channel_history",
    # store
    "aget": "get",
    "asearch": "search",
    "adelete": "delete",
    "alist_namespaces": "list_namespaces",
    "abatch": "batch",
    "sweep_ttl": "sweep_ttl",
    "start_ttl_sweeper": "start_ttl_sweeper",
    "stop_ttl_sweeper": "stop_ttl_sweeper",
    # both
    "aput": "put",
}


class AsAsync:
    """``target``'s sync methods as the coroutines the async API would return.

    ``conn`` is what ``type(target)`` is constructed from (a psycopg connection for upstream,
    the URL for ours), for cases that construct another instance (:meth:`remake`).
    """

    def __init__(self, target: Any, conn: Any) -> None:
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "remake_from", conn)

    def __getattr__(self, name: str) -> Any:
        target = object.__getattribute__(self, "target")
        if name == "alist":
            return self._alist
        twin = _SYNC_TWIN.get(name)
        if twin is None:
            return getattr(target, name)
        return _in_a_thread(getattr(target, twin))

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "target"), name, value)

    async def _alist(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        target = object.__getattribute__(self, "target")
        items = await asyncio.to_thread(lambda: list(target.list(*args, **kwargs)))
        for item in items:
            yield item

    def remake(self, **kwargs: Any) -> None:
        """Construct another instance of the target's class with ``kwargs`` (and close it)."""
        target = object.__getattribute__(self, "target")
        made = type(target)(object.__getattribute__(self, "remake_from"), **kwargs)
        close = getattr(made, "close", None)
        if close is not None:
            close()


def _in_a_thread(method: Callable[..., Any]) -> Callable[..., Any]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        result = await asyncio.to_thread(method, *args, **kwargs)
        if isinstance(result, concurrent.futures.Future):
            # start_ttl_sweeper's: awaitable here, as the async store's task is.
            return asyncio.wrap_future(result)
        return result

    return call
