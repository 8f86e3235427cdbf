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

A filter is parsed once into a :class:`ParsedFilter`: its *shape* (paths, operators, value
kinds) and its *values*. Statements are built and cached per shape, with the values as named
bind parameters, so a search repeated with other values reuses its compiled statement.

Filter keys are data: they only ever reach SQL as bound values (``value -> :key`` or
``value #> :path``), never as identifiers or text.

Every equality on a scalar outside arrays is also stated as one containment test,
``value @> :doc``, which the GIN ``jsonb_path_ops`` index on ``store.value`` answers (revision
0006): the equalities alone make Postgres read and decode every row of the namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, bindparam, collate, func, or_, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import Text

from ..errors import InvalidInputError
from ..input_errors import InvalidInputTypeError
from .values import check_json_value

__all__ = ["ParsedFilter", "filter_clause", "parse_filter"]

_ORDERING = {"$gt", "$gte", "$lt", "$lte"}
_OPERATORS = {"$eq", "$ne"} | _ORDERING

Path = tuple[str, ...]
# One condition of the conjunction a filter is: (kind, path, detail). Kinds: "eq" / "ne"
# (a bound JSON value), "null" / "notnull", "object", "array" (detail: its length), and
# "<op>:<type>" for the ordering operators (a bound JSON number or boolean, or text).
Atom = tuple[str, Path, Any]

_PARAM = "filter_{}"
_CONTAINS_PARAM = "filter_contains"


@dataclass(frozen=True)
class ParsedFilter:
    """A validated filter: ``shape`` is hashable and free of values; ``params`` binds them."""

    shape: tuple[Atom, ...]
    params: Mapping[str, Any]


def parse_filter(filter: object) -> ParsedFilter | None:
    """Validate ``filter`` (``InvalidInputError``, a ``ValueError``, on anything unsupported);
    None when there is nothing to filter on."""
    if not filter:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidInputError(f"filter must be a dict, got {type(filter).__name__}")
    check_json_value(filter, what="search filter")
    parts = _Parts()
    for key, expected in filter.items():
        parts.add((_key(key),), expected, under_array=False)
    params = {_PARAM.format(i): value for i, value in enumerate(parts.values)}
    if parts.contains:
        parts.atoms.append(("contains", (), None))
        params[_CONTAINS_PARAM] = parts.contains
    return ParsedFilter(tuple(parts.atoms), params)


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidInputError(f"filter keys must be strings, got {key!r}")
    return key


def _json_native(value: Any) -> Any:
    """A filter value as the JSON it stands for.

    A ``datetime``, ``date``, ``UUID`` (anything orjson encodes that JSON has no type for)
    becomes the text a stored value of that type became when it was put, so that it matches
    it (and orders ISO timestamps correctly); dicts, lists and JSON scalars stay as they are.
    """
    if value is None or isinstance(value, (str, bool, int, float, Mapping, list, tuple)):
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidInputTypeError(
            f"filter value {value!r} of type {type(value).__name__} has no JSON form"
        ) from exc


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float))


class _Parts:
    """A filter taken apart: its atoms, the values they bind (in order), and the containment
    document its scalar equalities add up to."""

    def __init__(self) -> None:
        self.atoms: list[Atom] = []
        self.values: list[Any] = []
        self.contains: dict[str, Any] = {}

    def add(self, path: Path, expected: Any, *, under_array: bool) -> None:
        expected = _json_native(expected)
        if isinstance(expected, Mapping):
            if any(isinstance(k, str) and k.startswith("$") for k in expected):
                for op, operand in expected.items():
                    self._operator(path, op, operand, under_array=under_array)
                return
            self.atoms.append(("object", path, None))
            for k, v in expected.items():
                self.add((*path, _key(k)), v, under_array=under_array)
            return
        if isinstance(expected, (list, tuple)):
            self.atoms.append(("array", path, len(expected)))
            for i, v in enumerate(expected):
                self.add((*path, str(i)), v, under_array=True)
            return
        self._equal(path, expected, under_array=under_array)

    def _bound(self, kind: str, path: Path, value: Any) -> None:
        self.atoms.append((kind, path, None))
        self.values.append(value)

    def _operator(self, path: Path, op: object, operand: Any, *, under_array: bool) -> None:
        if op not in _OPERATORS:
            raise InvalidInputError(
                f"unsupported filter operator {op!r}; supported: {', '.join(sorted(_OPERATORS))}"
            )
        operand = _json_native(operand)
        if op == "$eq":
            self._equal(path, operand, under_array=under_array)
        elif op == "$ne":
            if operand is None:
                self.atoms.append(("notnull", path, None))
            else:
                self._bound("ne", path, operand)
        elif isinstance(operand, bool):
            self._bound(f"{op}:boolean", path, operand)
        elif isinstance(operand, (int, float)):
            self._bound(f"{op}:number", path, operand)
        elif isinstance(operand, str):
            self._bound(f"{op}:string", path, operand)
        else:
            raise InvalidInputError(
                f"filter operator {op} needs a number or a string, got {operand!r}"
            )

    def _equal(self, path: Path, expected: Any, *, under_array: bool) -> None:
        if expected is None:
            self.atoms.append(("null", path, None))
            return
        self._bound("eq", path, expected)
        # Containment treats arrays as sets, so only equalities reached through object keys
        # alone translate; the exact condition above stays in force for everything.
        if not under_array and _is_scalar(expected):
            self._contain(path, expected)

    def _contain(self, path: Path, value: Any) -> None:
        """Add ``path: value`` to the containment document."""
        node = self.contains
        for label in path[:-1]:
            child = node.setdefault(label, {})
            if not isinstance(child, dict):  # an equality already fixed this key to a scalar
                return
            node = child
        node.setdefault(path[-1], value)


def filter_clause(
    value_column: ColumnElement[Any], parsed: ParsedFilter | None
) -> ColumnElement[bool]:
    """The clause selecting rows whose value matches the filter (``TRUE`` for none).

    Its values are the named parameters ``parsed.params``, to be passed at execution.
    """
    if parsed is None:
        return true()
    clauses: list[ColumnElement[bool]] = []
    index = 0
    for kind, path, detail in parsed.shape:
        if kind in ("eq", "ne") or ":" in kind:
            clauses.append(_bound_atom(value_column, kind, path, _PARAM.format(index)))
            index += 1
        elif kind == "contains":
            clauses.append(value_column.contains(bindparam(_CONTAINS_PARAM, type_=JSONB)))
        else:
            clauses.append(_unbound_atom(value_column, kind, path, detail))
    return and_(*clauses)


def _at(value_column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
    # ``value #> text[]``: the whole path is one bound array, whatever its labels contain.
    # A top-level key alone as ``value -> key`` (bound too): stored values are always
    # objects, so it means the same, and costs the server less per row than a path lookup.
    if len(path) == 1:
        return value_column[path[0]]
    return value_column[path]


def _typeof(node: ColumnElement[Any]) -> ColumnElement[str]:
    return func.jsonb_typeof(node)


def _unbound_atom(
    value_column: ColumnElement[Any], kind: str, path: Path, detail: Any
) -> ColumnElement[bool]:
    node = _at(value_column, path)
    if kind == "null":
        # SQL NULL: the key is missing; JSON null: present and null. dict.get sees both as None.
        return or_(node.is_(None), _typeof(node) == "null")
    if kind == "notnull":
        return and_(node.is_not(None), _typeof(node) != "null")
    if kind == "object":
        return _typeof(node) == "object"
    assert kind == "array"
    n = int(detail)
    return and_(
        _typeof(node) == "array",
        # Exactly n elements: the last one exists and the next does not (no
        # jsonb_array_length, which raises on a non-array before AND can rule it out).
        _at(value_column, (*path, str(n - 1))).is_not(None) if n else true(),
        _at(value_column, (*path, str(n))).is_(None),
    )


def _bound_atom(
    value_column: ColumnElement[Any], kind: str, path: Path, name: str
) -> ColumnElement[bool]:
    node = _at(value_column, path)
    if kind == "eq":
        return node == bindparam(name, type_=JSONB)
    if kind == "ne":
        return or_(node.is_(None), node != bindparam(name, type_=JSONB))
    op, json_type = kind.split(":")
    left: ColumnElement[Any]
    right: ColumnElement[Any]
    if json_type == "string":
        # Code-point order, as Python compares str, whatever the database collation is.
        left = collate(value_column[path].astext, "C")
        right = bindparam(name, type_=Text)
    else:
        # jsonb compares two numbers (or two booleans) by value; the type check keeps the
        # other JSON types out.
        left, right = node, bindparam(name, type_=JSONB)
    compare = {
        "$gt": left > right,
        "$gte": left >= right,
        "$lt": left < right,
        "$lte": left <= right,
    }[op]
    return and_(_typeof(node) == json_type, compare)
