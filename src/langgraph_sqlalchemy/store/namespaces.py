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
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    collate,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY

from ..errors import InvalidInputError
from ..input_errors import UnencodableTextError, check_encodable

__all__ = [
    "SEPARATOR",
    "InvalidNamespaceLabelError",
    "InvalidNamespaceTypeError",
    "UnencodableLabelError",
    "list_namespaces_statement",
    "listing_params",
    "listing_shape",
    "namespace_from_prefix",
    "namespace_to_prefix",
    "scope_clause",
    "scope_params",
    "validate_labels",
]

SEPARATOR = "."


class InvalidNamespaceLabelError(InvalidInputError, InvalidNamespaceError):
    """A namespace label breaks upstream's rules; catchable as either library's error."""


class InvalidNamespaceTypeError(InvalidNamespaceLabelError, TypeError):
    """The namespace is not a sequence of labels (upstream fails with ``TypeError``)."""


class UnencodableLabelError(InvalidNamespaceLabelError, UnencodableTextError):
    """A label with a lone surrogate (upstream's driver raises ``UnicodeEncodeError``)."""


_LIKE_ESCAPE = "\\"


def validate_labels(namespace: object, *, what: str = "namespace") -> tuple[str, ...]:
    """The namespace as a tuple of labels, checked against upstream's label rules.

    Labels are non-empty ``str`` without ``"."`` or NUL (and, since they are stored as text,
    without lone surrogates). Any sequence of labels is accepted, as upstream's search does
    with a list; a ``str`` is refused rather than split into one label per character.
    (``"*"`` is a valid label; in list_namespaces conditions it also acts as a wildcard.)
    """
    if type(namespace) is not tuple:
        if isinstance(namespace, (str, bytes, bytearray)) or not isinstance(namespace, Sequence):
            hint = f"; did you mean ({namespace!r},)?" if isinstance(namespace, str) else ""
            raise InvalidNamespaceTypeError(
                f"{what} must be a tuple (or list) of string labels, got "
                f"{type(namespace).__name__}{hint}"
            )
        namespace = tuple(namespace)
    labels: tuple[Any, ...] = namespace
    for label in labels:
        if not isinstance(label, str):
            raise InvalidNamespaceLabelError(
                f"invalid {what} {labels!r}: labels must be strings, got {type(label).__name__}"
            )
        if not label:
            raise InvalidNamespaceLabelError(f"invalid {what} {labels!r}: labels cannot be empty")
        if SEPARATOR in label:
            raise InvalidNamespaceLabelError(
                f"invalid {what} {labels!r}: label {label!r} contains a period ('.'), "
                "the separator namespaces are stored with"
            )
        if "\x00" in label:
            raise InvalidNamespaceLabelError(
                f"invalid {what} {labels!r}: label {label!r} contains a NUL character, "
                "which PostgreSQL text cannot hold"
            )
        check_encodable(label, f"invalid {what}: label {label!r}", error=UnencodableLabelError)
    return labels


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


def scope_clause(prefix_column: ColumnElement[str], name: str) -> ColumnElement[bool]:
    """Rows in a namespace or below it, on whole labels; the namespace is bound at execution
    from :func:`scope_params` with the same ``name``.

    Equality and an anchored LIKE (the pattern fully built in Python, one bound value) both can
    use the primary key / ``text_pattern_ops`` index on ``prefix``.
    """
    return or_(
        prefix_column == bindparam(f"{name}_path", type_=Text),
        prefix_column.like(bindparam(f"{name}_pattern", type_=Text), escape=_LIKE_ESCAPE),
    )


def scope_params(namespace: Sequence[str], name: str) -> dict[str, str]:
    """The values :func:`scope_clause` ``name`` binds for ``namespace`` (non-empty)."""
    path = namespace_to_prefix(namespace)
    return {f"{name}_path": path, f"{name}_pattern": _escape_like(path + SEPARATOR) + "%"}


def _labels(prefix_column: ColumnElement[str]) -> ColumnElement[list[str]]:
    # COLLATE "C" on the input gives the array a code-point order, which is how Python orders
    # the tuples InMemoryStore sorts (the database's collation may be anything).
    return func.string_to_array(collate(prefix_column, "C"), SEPARATOR, type_=ARRAY(Text))


def _tuple_order(prefix_column: ColumnElement[str]) -> ColumnElement[str]:
    """A text whose code-point order is the label-by-label (tuple) order of the namespaces,
    as InMemoryStore sorts them; the prefix text alone is not ("a-c" < "a.b", yet
    ("a", "b") < ("a-c",)).

    The separator becomes ``\\x01\\x02`` and a ``\\x01`` inside a label ``\\x01\\x03``, so the
    separator sorts below every character a label can hold (NUL cannot be in text) and the
    end of a namespace below everything. Sorting these texts costs far less than sorting
    ``text[]`` values, and no array is built per row.
    """
    escaped = func.replace(
        func.replace(prefix_column, "\x01", "\x01\x03"), SEPARATOR, "\x01\x02", type_=Text
    )
    return collate(escaped, "C")


Condition = tuple[str, Sequence[str]]


def listing_shape(conditions: Sequence[Condition], max_depth: int | None) -> tuple[Any, ...]:
    """What the statement of a listing depends on: condition types, lengths and wildcard
    positions, and ``max_depth``; the labels themselves are bound values."""
    wildcards = tuple(
        (match_type, tuple(label == "*" for label in path)) for match_type, path in conditions
    )
    return (wildcards, max_depth)


def listing_params(conditions: Sequence[Condition]) -> dict[str, Any]:
    """The values :func:`list_namespaces_statement` binds for ``conditions``."""
    params: dict[str, Any] = {"list_limit": 0, "list_offset": 0}
    for j, (match_type, path) in enumerate(conditions):
        leading = _leading_labels(path)
        if match_type == "prefix" and leading:
            params.update(scope_params(leading, f"list_scope_{j}"))
        for i, label in enumerate(path):
            if label != "*":
                params[f"list_label_{j}_{i}"] = label
    return params


def _leading_labels(path: Sequence[str]) -> list[str]:
    return list(itertools.takewhile(lambda label: label != "*", path))


def _condition_clause(
    labels: ColumnElement[list[str]], j: int, match_type: str, path: Sequence[str]
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
        clauses.append(labels[position] == bindparam(f"list_label_{j}_{i}", type_=Text))
    return and_(*clauses)


def list_namespaces_statement(
    store: Table,
    *,
    conditions: Sequence[Condition],
    max_depth: int | None,
    live_only: ColumnElement[bool] | None,
) -> Select[Any]:
    """Distinct namespaces (truncated to ``max_depth`` labels), sorted, paginated, in SQL.

    Labels, limit and offset are bound at execution (:func:`listing_params`, plus
    ``list_limit`` / ``list_offset``): one statement serves every listing of the same shape.
    Labels must have been validated (non-empty, no separator).
    """
    labels = _labels(store.c.prefix)
    where: list[ColumnElement[bool]] = []
    for j, (match_type, path) in enumerate(conditions):
        # A prefix's leading literal labels also as a clause on the bare column: that form can
        # use the prefix index instead of splitting every row. When the whole condition is
        # such labels, it is the condition itself.
        leading = _leading_labels(path)
        if match_type == "prefix" and leading:
            where.append(scope_clause(store.c.prefix, f"list_scope_{j}"))
            if len(leading) == len(path):
                continue
        where.append(_condition_clause(labels, j, match_type, path))
    if live_only is not None:
        where.append(live_only)
    # Distinct prefixes first: far fewer than rows. COLLATE "C": byte equality, the cheapest.
    prefixes = (
        select(collate(store.c.prefix, "C").label("prefix"))
        .where(*where)
        .distinct()
        .subquery("prefixes")
    )
    namespaces: Any = prefixes
    if max_depth is not None:
        truncated = func.array_to_string(
            _labels(prefixes.c.prefix)[1:max_depth], SEPARATOR, type_=Text
        )
        namespaces = select(truncated.label("prefix")).distinct().subquery("namespaces")
    return (
        select(namespaces.c.prefix)
        .order_by(_tuple_order(namespaces.c.prefix))
        # 64-bit: upstream takes any int, and a page past 2**31 is simply empty.
        .limit(bindparam("list_limit", type_=BigInteger))
        .offset(bindparam("list_offset", type_=BigInteger))
    )
