"""LangGraph's Postgres persistence on SQLAlchemy Core + asyncpg, with Alembic migrations.

    from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore  # async code
    from langgraph_sqlalchemy import SQLAlchemySaver, SQLAlchemyStore  # sync code

All read and write the very tables of ``langgraph-checkpoint-postgres``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    DatabaseError,
    DatabaseUnavailableError,
    InvalidInputError,
    LangGraphSQLAlchemyError,
    MigrationError,
    SchemaMismatchError,
    VectorExtensionError,
)

if TYPE_CHECKING:
    from .checkpoint.saver import AsyncSQLAlchemySaver
    from .store.store import AsyncSQLAlchemyStore
    from .sync.saver import SQLAlchemySaver
    from .sync.store import SQLAlchemyStore

__version__ = "0.1.0"

__all__ = [
    "AsyncSQLAlchemySaver",
    "AsyncSQLAlchemyStore",
    "DatabaseError",
    "DatabaseUnavailableError",
    "InvalidInputError",
    "LangGraphSQLAlchemyError",
    "MigrationError",
    "SQLAlchemySaver",
    "SQLAlchemyStore",
    "SchemaMismatchError",
    "VectorExtensionError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: the saver pulls in LangGraph's serializers and the store its
    # embedding machinery; the CLI and the migrations need neither.
    if name == "AsyncSQLAlchemySaver":
        from .checkpoint.saver import AsyncSQLAlchemySaver

        return AsyncSQLAlchemySaver
    if name == "AsyncSQLAlchemyStore":
        from .store.store import AsyncSQLAlchemyStore

        return AsyncSQLAlchemyStore
    if name == "SQLAlchemySaver":
        from .sync.saver import SQLAlchemySaver

        return SQLAlchemySaver
    if name == "SQLAlchemyStore":
        from .sync.store import SQLAlchemyStore

        return SQLAlchemyStore
    raise AttributeError(f"module 'langgraph_sqlalchemy' has no attribute {name!r}")
