"""The checkpoint saver: :class:`AsyncSQLAlchemySaver` and the repository it runs on.

Modules: ``saver`` (the public class: validation, serde, transactions via ``Database``),
``repository`` (the Core statements), ``serialization`` (rows <-> checkpoint tuples),
``configs`` (reading ids out of a config), ``prune`` and ``delta_history`` (the two multi-step
operations).
"""

from __future__ import annotations

from .repository import CheckpointRepository
from .saver import AsyncSQLAlchemySaver

__all__ = ["AsyncSQLAlchemySaver", "CheckpointRepository"]
