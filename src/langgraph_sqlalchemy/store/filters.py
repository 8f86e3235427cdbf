"""Search filters as SQL clauses on ``store.value``, with every value bound.

The semantics are InMemoryStore's (LangGraph's reference store), not upstream's:

* a plain value is equality of JSON values of the same type (``1`` equals ``1.0``, never
  ``"1"`` or ``true``); ``None`` also matches a missing key, as ``dict.get`` does;
* a dict without ``$`` keys matches an object holding at least those keys, recursively; a list
  matches a list of the same length element by element;
* ``$eq`` / ``$ne`` compare whole JSON values (``$ne`` matches a missing key);
* ``$gt $gte $lt $lte`` compare numbers as numbers and strings as strings in code-point order
  (upstream compares the text of both, so ``10 < 9``); a value of another type never matches;
* any other ``$`` operator is a ``ValueError``.

Filter keys are data: they only ever reach SQL as elements of a bound ``text[]`` path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, collate, func, or_, true
from sqlalchemy.dialects.postgresql import JSONB

from ..errors import InvalidInputError
from .values import check_json_value

__all__ = ["filter_clause"]

_ORDERING = {"$gt", "$gte", "$lt", "$lte"}
_OPERATORS = {"$eq", "$ne"} | _ORDERING

Path = tuple[str, ...]


def filter_clause(
    value_column: ColumnElement[Any], filter: Mapping[str, Any] | None
) -> ColumnElement[bool]:
    """The clause selecting rows whose value matches ``filter`` (``TRUE`` for no filter)."""
    if not filter:
        return true()
    if not isinstance(filter, Mapping):
        raise InvalidInputError(f"filter must be a dict, got {type(filter).__name__}")
    check_json_value(filter, what="search filter")
    return and_(*(_match(value_column, (_key(k),), v) for k, v in filter.items()))


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidInputError(f"filter keys must be strings, got {key!r}")
    return key


def _at(value_column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
    # ``value #> text[]``: the whole path is one bound array, whatever its labels contain.
    # A top-level key alone as ``value -> key`` (bound too): stored values are always
    # objects, so it means the same, and costs the server less per row than a path lookup.
    if len(path) == 1:
        return value_column[path[0]]
    return value_column[path]


def _jsonb(value: Any) -> ColumnElement[Any]:
    return bindparam(None, value, type_=JSONB)


def _is_null(node: ColumnElement[Any]) -> ColumnElement[bool]:
    # SQL NULL: the key is missing; JSON null: present and null. dict.get sees both as None.
    return or_(node.is_(None), _typeof(node) == "null")


def _typeof(node: ColumnElement[Any]) -> ColumnElement[str]:
    return func.jsonb_typeof(node)


def _match(value_column: ColumnElement[Any], path: Path, expected: Any) -> ColumnElement[bool]:
    node = _at(value_column, path)
    if isinstance(expected, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in expected):
            return and_(
                true(),
                *(_operator(value_column, path, op, operand) for op, operand in expected.items()),
            )
        return and_(
            _typeof(node) == "object",
            *(_match(value_column, (*path, _key(k)), v) for k, v in expected.items()),
        )
    if isinstance(expected, (list, tuple)):
        n = len(expected)
        return and_(
            _typeof(node) == "array",
            # Exactly n elements: the last one exists and the next does not (no
            # jsonb_array_length, which raises on a non-array before AND can rule it out).
            _at(value_column, (*path, str(n - 1))).is_not(None) if n else true(),
            _at(value_column, (*path, str(n))).is_(None),
            *(_match(value_column, (*path, str(i)), v) for i, v in enumerate(expected)),
        )
    if expected is None:
        return _is_null(node)
    return node == _jsonb(expected)


def _operator(
    value_column: ColumnElement[Any], path: Path, op: object, operand: Any
) -> ColumnElement[bool]:
    if op not in _OPERATORS:
        raise InvalidInputError(
            f"unsupported filter operator {op!r}; supported: {', '.join(sorted(_OPERATORS))}"
        )
    node = _at(value_column, path)
    if op == "$eq":
        return _is_null(node) if operand is None else node == _jsonb(operand)
    if op == "$ne":
        if operand is None:
            return and_(node.is_not(None), _typeof(node) != "null")
        return or_(node.is_(None), node != _jsonb(operand))
    return _ordering(value_column, path, str(op), operand)


def _ordering(
    value_column: ColumnElement[Any], path: Path, op: str, operand: Any
) -> ColumnElement[bool]:
    node = _at(value_column, path)
    if isinstance(operand, bool):
        kind, left, right = "boolean", node, _jsonb(operand)
    elif isinstance(operand, (int, float)):
        # jsonb compares two numbers numerically; the type check keeps strings out.
        kind, left, right = "number", node, _jsonb(operand)
    elif isinstance(operand, str):
        # Code-point order, as Python compares str, whatever the database collation is.
        kind = "string"
        left = collate(value_column[path].astext, "C")
        right = bindparam(None, operand)
    else:
        raise InvalidInputError(f"filter operator {op} needs a number or a string, got {operand!r}")
    compare = {
        "$gt": left > right,
        "$gte": left >= right,
        "$lt": left < right,
        "$lte": left <= right,
    }[op]
    return and_(_typeof(node) == kind, compare)
