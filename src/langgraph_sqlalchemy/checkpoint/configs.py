"""Reading thread, namespace and checkpoint ids out of a ``RunnableConfig``.

Upstream indexes ``config["configurable"]["thread_id"]`` directly, so a malformed config surfaces
as a bare ``KeyError: 'thread_id'``. Here it is an :class:`InvalidInputError` (a ``ValueError``)
that says which key is missing and for which call, raised before anything touches the database;
it is also a ``KeyError`` (a config that is not a dict: also a ``TypeError``), as upstream's is.

Ids are ``text`` columns, which hold valid UTF-8 only: a NUL or a lone surrogate (what
``surrogateescape`` decoding and broken UTF-16/JSON escapes leave in a ``str``) is refused here
with the reason, instead of surfacing as a driver error from inside the statement. A lone
surrogate is an :class:`~langgraph_sqlalchemy.input_errors.UnencodableTextError`, also the
``UnicodeEncodeError`` upstream's driver raises for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from ..errors import InvalidInputError
from ..input_errors import (
    InvalidInputTypeError,
    MissingKeyError,
    UnencodableTextError,
    lone_surrogate_at,
)

__all__ = [
    "Target",
    "check_text",
    "configurable_of",
    "lone_surrogate_at",
    "read_target",
    "surrogate_reason",
    "text_id",
]


@dataclass(frozen=True)
class Target:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str | None


def configurable_of(config: RunnableConfig | None, op: str) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise InvalidInputTypeError(f"{op}: config must be a dict, got {type(config).__name__}")
    configurable = config.get("configurable")
    if configurable is None:
        raise MissingKeyError(
            f"{op}: config has no 'configurable' dict; pass "
            "{'configurable': {'thread_id': ...}}"
        )
    if not isinstance(configurable, Mapping):
        # Upstream indexes it by key, which fails with TypeError for a list or a string.
        raise InvalidInputTypeError(
            f"{op}: config['configurable'] must be a dict, got {type(configurable).__name__}; "
            "pass {'configurable': {'thread_id': ...}}"
        )
    return configurable


def names_no_thread(config: RunnableConfig | None, op: str) -> bool:
    """Whether ``config`` says ``thread_id: None``: for a read, a thread that cannot exist.

    Upstream binds the None into ``thread_id = NULL``, which matches no row, so its reads
    find nothing rather than fail; ours answer the same (writes still refuse it).
    """
    if config is None:
        return False
    configurable = configurable_of(config, op)
    return "thread_id" in configurable and configurable["thread_id"] is None


def surrogate_reason(text: str, at: int) -> str:
    return (
        f"holds a lone surrogate {text[at]!r} at index {at}: that is not valid UTF-8, "
        "which PostgreSQL text and JSONB require"
    )


def text_id(value: Any, what: str, op: str) -> str:
    """Ids as text, as upstream's callers pass them (``str(uuid)`` and ints included)."""
    if value is None or isinstance(value, (bytes, bytearray, Mapping, list, tuple)):
        raise InvalidInputError(f"{op}: {what} must be a string, got {value!r}")
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        # A text column cannot hold NUL; say so instead of failing inside the driver.
        raise InvalidInputError(f"{op}: {what} must not contain NUL characters: {text!r}")
    check_text(text, f"{op}: {what}")
    return text


def check_text(text: str, what: str) -> None:
    """Refuse a lone surrogate in ``text`` (``what`` names it in the message)."""
    at = lone_surrogate_at(text)
    if at is not None:
        raise UnencodableTextError(f"{what} {surrogate_reason(text, at)}", text, at)


def read_target(
    config: RunnableConfig | None,
    op: str,
    *,
    require_ns: bool = False,
    require_checkpoint_id: bool = False,
) -> Target:
    configurable = configurable_of(config, op)
    if "thread_id" not in configurable:
        raise MissingKeyError(
            f"{op}: config['configurable'] has no 'thread_id'; every checkpoint belongs to a "
            "thread, e.g. {'configurable': {'thread_id': '1'}}"
        )
    thread_id = text_id(configurable["thread_id"], "thread_id", op)
    if require_ns and "checkpoint_ns" not in configurable:
        raise MissingKeyError(
            f"{op}: config['configurable'] has no 'checkpoint_ns' (use '' for the root graph)"
        )
    ns_value = configurable.get("checkpoint_ns")
    checkpoint_ns = "" if ns_value is None else text_id(ns_value, "checkpoint_ns", op)
    raw_id = configurable.get("checkpoint_id")
    if require_checkpoint_id and not raw_id:
        raise MissingKeyError(f"{op}: config['configurable'] has no 'checkpoint_id'")
    checkpoint_id = text_id(raw_id, "checkpoint_id", op) if raw_id else None
    return Target(thread_id, checkpoint_ns, checkpoint_id)
