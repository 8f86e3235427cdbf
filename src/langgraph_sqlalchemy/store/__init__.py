"""The long-term memory store (``AsyncSQLAlchemyStore``) and its pieces.

``vector_layer`` needs only SQLAlchemy (the CLI imports it); the store class pulls in
LangGraph and LangChain, so it is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .vector_layer import ensure_vector_layer

if TYPE_CHECKING:
    from .store import AsyncSQLAlchemyStore

__all__ = ["AsyncSQLAlchemyStore", "ensure_vector_layer"]


def __getattr__(name: str) -> Any:
    if name == "AsyncSQLAlchemyStore":
        from .store import AsyncSQLAlchemyStore

        return AsyncSQLAlchemyStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
