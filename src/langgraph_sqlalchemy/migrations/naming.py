"""Names that keep our migration history apart from a host application's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph_sqlalchemy.schema import TABLE_NAMES

__all__ = ["VERSION_TABLE", "include_name_for", "include_object_for", "is_our_table"]

# Never ``alembic_version``: a host app that runs its own Alembic history in the same database
# keeps its revision untouched, and ours is tracked here.
VERSION_TABLE = "langgraph_sqlalchemy_version"

# Created at run time by the store's setup() with configured dimensions, so no revision owns it
# and autogenerate must not propose to create or drop it.
_RUNTIME_TABLES = frozenset({"store_vectors"})


def is_our_table(name: str | None) -> bool:
    """Whether ``name`` is one of this library's tables (for a host's ``include_name``)."""
    return name in TABLE_NAMES or name == VERSION_TABLE


def include_name_for(schema: str | None) -> Callable[..., bool]:
    def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        if type_ == "schema":
            return name == schema
        if type_ == "table":
            return name in TABLE_NAMES and name not in _RUNTIME_TABLES
        return True

    return include_name


def include_object_for(schema: str | None) -> Callable[..., bool]:
    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table":
            return name in TABLE_NAMES and name not in _RUNTIME_TABLES
        return True

    return include_object
