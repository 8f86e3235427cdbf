"""The library's exceptions.

Database errors are translated once, where a call leaves :mod:`langgraph_sqlalchemy.database`,
and always chained (``raise ... from exc``) so the driver's own message and SQLSTATE stay one
``__cause__`` away. Bad input raises :class:`InvalidInputError`, which is also a ``ValueError`` so
code written against upstream's ``ValueError`` keeps catching it.
"""

from __future__ import annotations

__all__ = [
    "DatabaseError",
    "DatabaseUnavailableError",
    "InvalidInputError",
    "LangGraphSQLAlchemyError",
    "MigrationError",
    "SchemaMismatchError",
    "VectorExtensionError",
]


class LangGraphSQLAlchemyError(Exception):
    """Base class of every exception this library raises on purpose."""


class InvalidInputError(LangGraphSQLAlchemyError, ValueError):
    """The caller passed something that cannot be stored as given; nothing was written."""


class DatabaseError(LangGraphSQLAlchemyError):
    """A statement failed for a reason that retrying will not fix; the transaction rolled back."""


class DatabaseUnavailableError(DatabaseError):
    """The database stayed unreachable through every retry of the call."""


class MigrationError(LangGraphSQLAlchemyError):
    """Migrating the schema failed or the database is not at the expected revision."""


class SchemaMismatchError(MigrationError):
    """An existing table disagrees with the configuration (e.g. other vector dimensions)."""


class VectorExtensionError(MigrationError):
    """The ``vector`` extension is missing and could not be created."""
