"""The sync classes: ``SQLAlchemySaver`` and ``SQLAlchemyStore`` for code with no event loop.

Each owns an engine and the matching async class on a private event loop thread
(:mod:`.loop_thread`, :mod:`.owned_engine`) and runs every call there.
"""

from __future__ import annotations

from .saver import SQLAlchemySaver
from .store import SQLAlchemyStore

__all__ = ["SQLAlchemySaver", "SQLAlchemyStore"]
