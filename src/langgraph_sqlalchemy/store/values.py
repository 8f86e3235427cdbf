"""Checking and encoding item values before anything of a batch reaches the database.

JSONB cannot hold a NUL character in a string (or key), nor NaN or ±Infinity, and no text can
hold a lone surrogate (not UTF-8); Postgres or the driver would reject the statement halfway
through a batch. Values are checked up front so a batch with one bad value fails as a whole
with a clear :class:`InvalidInputError`, before any write. A value that is not a dict, or
holds something JSON cannot represent, is also a ``TypeError``, as upstream raises there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidInputError
from ..input_errors import InvalidInputTypeError, check_encodable

__all__ = ["check_json_value", "check_value_type", "encode_value"]


def check_json_value(value: Any, *, what: str) -> None:
    """Raise :class:`InvalidInputError` if ``value`` holds something JSONB cannot store."""
    # An explicit stack instead of recursion: deeply nested values must not hit the
    # interpreter's recursion limit here.
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        current, path = stack.pop()
        if isinstance(current, str):
            if "\x00" in current:
                raise InvalidInputError(
                    f"{what}: the string at {path or '<root>'} contains a NUL character "
                    "(\\x00), which PostgreSQL JSONB cannot store"
                )
            check_encodable(current, f"{what}: the string at {path or '<root>'}")
        elif isinstance(current, float):
            if not math.isfinite(current):
                raise InvalidInputError(
                    f"{what}: {current!r} at {path or '<root>'} is not a JSON number "
                    "(JSONB cannot store NaN or Infinity)"
                )
        elif isinstance(current, Mapping):
            for key, item in current.items():
                if isinstance(key, str):
                    if "\x00" in key:
                        raise InvalidInputError(
                            f"{what}: the key {key!r} at {path or '<root>'} contains a NUL "
                            "character, which PostgreSQL JSONB cannot store"
                        )
                    check_encodable(key, f"{what}: the key {key!r} at {path or '<root>'}")
                stack.append((item, f"{path}.{key}" if path else str(key)))
        elif isinstance(current, (list, tuple)):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(current))


def check_value_type(value: Any, *, what: str) -> None:
    """Item values are dicts (any ``Mapping``); upstream's ``dict(value)`` raises ``TypeError``
    (or ``ValueError``) for anything else, and :class:`InvalidInputTypeError` is both."""
    if not isinstance(value, Mapping):
        raise InvalidInputTypeError(
            f"{what}: values must be dicts (JSON objects), got {type(value).__name__}"
        )


def encode_value(value: Any, *, what: str) -> str:
    """The JSON text of an item value (a mapping), checked for what JSONB cannot hold."""
    check_value_type(value, what=what)
    check_json_value(value, what=what)
    try:
        # Non-string keys become strings, as json.dumps (what upstream uses) does.
        return orjson.dumps(dict(value), option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:
        try:
            # orjson refuses integers beyond 64 bits, which JSON and JSONB accept.
            return json.dumps(dict(value), allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError):
            raise InvalidInputTypeError(
                f"{what}: value is not JSON serializable: {exc}"
            ) from exc
