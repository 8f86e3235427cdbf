"""Namespaces: validating labels, storing them as one text column, and matching them in SQL.

A namespace is stored as its labels joined by ``"."`` (upstream's ``prefix`` column). Labels
cannot contain ``"."``, so the join is reversible. Matching always happens on whole labels:
a scope ``("foo",)`` never reaches ``("foobar",)``, and the LIKE metacharacters ``%``, ``_``,
``\\`` in a label are escaped so they match only themselves. ``list_namespaces`` splits the
column back into a ``text[]`` and compares labels one by one, with every label a bound value.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from langgraph.store.base import InvalidNamespaceError
from sqlalchemy import ColumnElement, Select, Table, Text, and_, collate, func, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY

from ..errors import InvalidInputError

__all__ = [
    "SEPARATOR",
    "InvalidNamespaceLabelError",
    "list_namespaces_statement",
    "namespace_from_prefix",
    "namespace_prefix_clause",
    "namespace_to_prefix",
    "validate_labels",
]

SEPARATOR = "."


class InvalidNamespaceLabelError(InvalidInputError, InvalidNamespaceError):
    """A namespace label breaks upstream's rules; catchable as either library's error."""


_LIKE_ESCAPE = "\\"


def validate_labels(namespace: object, *, what: str = "namespace") -> None:
    """Upstream's label rules: a tuple of non-empty str labels without ``"."`` or NUL.

    (``"*"`` is a valid label; in list_namespaces conditions it also acts as a wildcard.)
    """
    if not isinstance(namespace, tuple):
        raise InvalidNamespaceLabelError(
            f"{what} must be a tuple of strings, got {type(namespace).__name__}"
        )
    for label in namespace:
        if not isinstance(label, str):
            raise InvalidNamespaceLabelError(
                f"invalid {what} {namespace!r}: labels must be strings, got {type(label).__name__}"
            )
        if not label:
            raise InvalidNamespaceLabelError(
                f"invalid {what} {namespace!r}: labels cannot be empty"
            )
        if SEPARATOR in label:
            raise InvalidNamespaceLabelError(
                f"invalid {what} {namespace!r}: label {label!r} contains a period ('.'), "
                "the separator namespaces are stored with"
            )
        if "\x00" in label:
            raise InvalidNamespaceLabelError(
                f"invalid {what} {namespace!r}: label {label!r} contains a NUL character, "
                "which PostgreSQL text cannot hold"
            )


def namespace_to_prefix(namespace: Sequence[str]) -> str:
    return SEPARATOR.join(namespace)


def namespace_from_prefix(prefix: str) -> tuple[str, ...]:
    return tuple(prefix.split(SEPARATOR)) if prefix else ()


def _escape_like(text: str) -> str:
    # The escape character first, so the escapes added next are not doubled.
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )


def namespace_prefix_clause(
    prefix_column: ColumnElement[str], namespace: Sequence[str]
) -> ColumnElement[bool]:
    """Rows in ``namespace`` or below it, on whole labels.

    Equality and an anchored LIKE (with the pattern fully built here, as one bound value)
    both can use the primary key / ``text_pattern_ops`` index on ``prefix``.
    """
    if not namespace:
        return true()
    path = namespace_to_prefix(namespace)
    return or_(
        prefix_column == path,
        prefix_column.like(_escape_like(path + SEPARATOR) + "%", escape=_LIKE_ESCAPE),
    )


def _labels(prefix_column: ColumnElement[str]) -> ColumnElement[list[str]]:
    # COLLATE "C" on the input gives the array a code-point order, which is how Python orders
    # the tuples InMemoryStore sorts (the database's collation may be anything).
    return func.string_to_array(collate(prefix_column, "C"), SEPARATOR, type_=ARRAY(Text))


def _condition_clause(
    labels: ColumnElement[list[str]], match_type: str, path: Sequence[str]
) -> ColumnElement[bool]:
    if match_type not in ("prefix", "suffix"):
        raise InvalidInputError(f"unknown namespace match type {match_type!r}")
    n = len(path)
    if n == 0:
        return true()
    depth = func.cardinality(labels)
    clauses: list[ColumnElement[bool]] = [depth >= n]
    for i, label in enumerate(path):
        if label == "*":
            continue
        # Postgres arrays are 1-based; a suffix counts back from the last label.
        position = i + 1 if match_type == "prefix" else depth - (n - 1 - i)
        clauses.append(labels[position] == label)
    return and_(*clauses)


def list_namespaces_statement(
    store: Table,
    *,
    conditions: Sequence[tuple[str, Sequence[str]]],
    max_depth: int | None,
    limit: int,
    offset: int,
    live_only: ColumnElement[bool] | None,
) -> Select[Any]:
    """Distinct namespaces (truncated to ``max_depth`` labels), sorted, paginated, in SQL."""
    labels = _labels(store.c.prefix)
    where: list[ColumnElement[bool]] = []
    for match_type, path in conditions:
        # A prefix's leading literal labels also as a clause on the bare column: that form can
        # use the prefix index instead of splitting every row. When the whole condition is
        # such labels (and none could hold the separator), it is the condition itself.
        leading = list(itertools.takewhile(lambda label: label != "*", path))
        if match_type == "prefix" and leading:
            where.append(namespace_prefix_clause(store.c.prefix, leading))
            if len(leading) == len(path) and all(
                isinstance(label, str) and label and SEPARATOR not in label for label in path
            ):
                continue
        where.append(_condition_clause(labels, match_type, path))
    if live_only is not None:
        where.append(live_only)
    # Distinct prefixes first: cheap on the prefix index, and far fewer than rows.
    prefixes = select(store.c.prefix).where(*where).distinct().subquery("prefixes")
    truncated = (
        _labels(prefixes.c.prefix) if max_depth is None else _labels(prefixes.c.prefix)[1:max_depth]
    )
    namespaces = select(truncated.label("namespace")).distinct().subquery("namespaces")
    # Sorted as arrays (label by label), but sent back joined again: decoding text[] into
    # lists through the driver and SQLAlchemy's ARRAY type cost more than the query itself;
    # labels cannot contain the separator, so splitting the text is exact.
    return (
        select(func.array_to_string(namespaces.c.namespace, SEPARATOR, type_=Text).label("prefix"))
        .order_by(namespaces.c.namespace)
        .limit(limit)
        .offset(offset)
    )
