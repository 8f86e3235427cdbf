"""What a checkpoint looks like in the tables, and back.

The row layout is upstream's (``langgraph-checkpoint-postgres`` 3.2), so that either package reads
what the other wrote:

* ``checkpoints.checkpoint`` is the checkpoint as JSON with ``channel_values`` holding only the
  values JSON keeps exactly (None, str, int, float, bool); every other value is a
  ``checkpoint_blobs`` row of ``serde.dumps_typed(value)`` keyed by the channel's version.
* ``checkpoints.metadata`` is ``get_serializable_checkpoint_metadata(config, metadata)``.
* ``checkpoint_writes`` rows carry ``serde.dumps_typed(value)`` and ``idx`` from
  ``WRITES_IDX_MAP`` for the special channels.

Where upstream crashes, values go to a blob instead (lossless): a str with NUL (JSONB cannot hold
``\\u0000``, langgraph issue #5425) and a float NaN or ±Infinity (not JSON). Metadata cannot go to
a blob, so NUL is stripped from its strings and keys at any depth (upstream strips top-level
values only) and a non-finite float in metadata is stored as null.

A str with a lone surrogate (not valid UTF-8, so neither JSONB nor text can hold it) is a channel
value like any other non-JSON one: it goes to a blob through ``serde``, as every str nested in a
list or dict always did (upstream and ``InMemorySaver`` alike). In metadata, the checkpoint
document or an id it is an :class:`~langgraph_sqlalchemy.input_errors.UnencodableTextError` (an
:class:`InvalidInputError` that is also a ``UnicodeEncodeError``) naming where it is: there is
no lossless way to keep it in JSONB, and silently replacing it would corrupt what
``alist(filter=...)`` matches on.

JSON is encoded and decoded with orjson (several times faster than the standard library on
checkpoint-sized documents). orjson handles 64-bit integers only; a document with a bigger one
(which upstream, on ``json``, stores exactly) falls back to the standard library both ways.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import TASKS, _DeltaSnapshot

from ..errors import InvalidInputError
from ..input_errors import InvalidInputTypeError, UnencodableTextError
from .configs import check_text, lone_surrogate_at, surrogate_reason, text_id

__all__ = [
    "BlobRow",
    "CheckpointRow",
    "WriteRow",
    "blob_rows",
    "clean_metadata",
    "dump_json",
    "is_inline_value",
    "load_checkpoint_tuple",
    "load_json",
    "one_row_per_idx",
    "split_channel_values",
    "stored_metadata",
    "write_rows",
]

_UINT64_LIMIT_AS_FLOAT = float(2**64)
_INT64_MIN_AS_FLOAT = -float(2**63)

# (channel, version, type, blob); blob None with type "empty" marks a version without a value.
BlobRow = tuple[str, str, str, "bytes | None"]
# (idx, channel, type, blob)
WriteRow = tuple[int, str, str, bytes]


_FLOAT_INLINE_LIMIT = 1e16


def is_inline_value(value: Any) -> bool:
    """Whether ``value`` stays in the checkpoint JSON (and reads back exactly)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        # JSONB keeps numbers as ``numeric``, which has no NaN/Infinity and no negative zero,
        # and prints 1e16 as ``10000000000000000``: such a float would read back as an int.
        # Below 1e16 every double's shortest repr carries a fraction or exponent Postgres
        # preserves, so it reads back as the same float. The others go to a blob, losslessly.
        return (
            math.isfinite(value)
            and abs(value) < _FLOAT_INLINE_LIMIT
            and not (value == 0.0 and math.copysign(1.0, value) < 0)
        )
    if isinstance(value, str):
        return "\x00" not in value and lone_surrogate_at(value) is None
    return False


def split_channel_values(checkpoint: Checkpoint) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint as stored in JSON, and the channel values that go to blobs.

    A ``_DeltaSnapshot`` leaves an inline ``true`` marker behind its blob, as upstream does: the
    delta-history walk and upstream's prune both look for that marker.
    """
    stored: dict[str, Any] = dict(checkpoint)
    inline: dict[str, Any] = {}
    blobs: dict[str, Any] = {}
    for channel, value in (checkpoint.get("channel_values") or {}).items():
        if isinstance(value, _DeltaSnapshot):
            blobs[channel] = value
            inline[channel] = True
        elif is_inline_value(value):
            inline[channel] = value
        else:
            blobs[channel] = value
    stored["channel_values"] = inline
    return stored, blobs


def _dump(serde: SerializerProtocol, value: Any, what: str) -> tuple[str, bytes]:
    try:
        return serde.dumps_typed(value)
    except Exception as exc:
        raise InvalidInputError(
            f"{what}: {type(value).__name__} value cannot be serialized by "
            f"{type(serde).__name__}: {exc}"
        ) from exc


def blob_rows(
    serde: SerializerProtocol, values: Mapping[str, Any], new_versions: ChannelVersions
) -> list[BlobRow]:
    """Blob rows for the channels of ``new_versions`` whose value goes to a blob."""
    rows: list[BlobRow] = []
    for channel, version in new_versions.items():
        if channel not in values:
            continue
        # Both land in text columns of checkpoint_blobs.
        text_id(channel, "channel name", "aput")
        stored_version = text_id(version, f"version of channel {channel!r}", "aput")
        type_, blob = _dump(serde, values[channel], f"channel {channel!r}")
        rows.append((channel, stored_version, type_, blob))
    return rows


def write_rows(serde: SerializerProtocol, writes: Sequence[tuple[str, Any]]) -> list[WriteRow]:
    rows: list[WriteRow] = []
    for position, write in enumerate(writes):
        if not isinstance(write, (tuple, list)) or len(write) != 2:
            raise InvalidInputError(f"write {position} must be a (channel, value) pair: {write!r}")
        channel, value = write
        if not isinstance(channel, str) or "\x00" in channel:
            raise InvalidInputError(f"write {position}: channel must be a str without NUL")
        check_text(channel, f"write {position}: channel {channel!r}")
        type_, blob = _dump(serde, value, f"write {position} to channel {channel!r}")
        rows.append((WRITES_IDX_MAP.get(channel, position), channel, type_, blob))
    return rows


def one_row_per_idx(rows: Sequence[WriteRow], *, keep_last: bool) -> list[WriteRow]:
    """``rows`` with one row per ``idx``: the last of each when ``keep_last``, else the first.

    Only a special channel written twice in one call (two interrupts, say) repeats an idx.
    Upstream writes row by row, so an upsert leaves the last value and an insert-or-skip the
    first; one multi-row upsert cannot touch a row twice (SQLSTATE 21000), so the duplicates
    are settled here, the same way.
    """
    if len({row[0] for row in rows}) == len(rows):
        return list(rows)
    chosen: dict[int, WriteRow] = {}
    for row in rows:
        if keep_last or row[0] not in chosen:
            chosen[row[0]] = row
    return [row for row in rows if chosen[row[0]] is row]


def clean_metadata(value: Any) -> Any:
    """``value`` with NUL removed from every string and key, at any depth, and NaN/±Infinity
    (which JSON cannot hold) as None."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {
            (k.replace("\x00", "") if isinstance(k, str) else k): clean_metadata(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [clean_metadata(v) for v in value]
    return value


def stored_metadata(config: RunnableConfig, metadata: CheckpointMetadata) -> dict[str, Any]:
    return cast(
        "dict[str, Any]",
        clean_metadata(get_serializable_checkpoint_metadata(config, metadata)),
    )


def _json_default(value: Any) -> Any:
    # What json.dumps (upstream's encoder) would reject we reject too, with the culprit named.
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _lone_surrogate_error(value: Any, path: str) -> UnencodableTextError | None:
    """Where in a JSON-like ``value`` a str or key holds a lone surrogate, as the error.

    An UnencodableTextError (also a UnicodeEncodeError) as for ids, though upstream's server,
    not its driver, is what refuses one inside JSON: one kind of error for one kind of text.
    """
    if isinstance(value, str):
        at = lone_surrogate_at(value)
        if at is None:
            return None
        return UnencodableTextError(f"{path} {surrogate_reason(value, at)}", value, at)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                at = lone_surrogate_at(key)
                if at is not None:
                    return UnencodableTextError(
                        f"{path} has a key {key!r} that {surrogate_reason(key, at)}", key, at
                    )
            found = _lone_surrogate_error(item, f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _lone_surrogate_error(item, f"{path}[{index}]")
            if found:
                return found
    return None


def dump_json(value: Any, *, what: str) -> str:
    """JSON text for a JSONB column (orjson; the standard library for integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError as exc:
        # Looked for on failure only (orjson refuses surrogates); the standard library below
        # would escape them as \udXXX, which PostgreSQL then rejects.
        surrogate = _lone_surrogate_error(value, what)
        if surrogate is not None:
            raise surrogate from exc
        if "64-bit" not in str(exc):
            # A value of a type JSON has no form for is a TypeError upstream (json.dumps).
            error = InvalidInputTypeError if "not JSON serializable" in str(exc) else (
                InvalidInputError
            )
            raise error(f"{what} cannot be stored as JSON: {exc}") from exc
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except TypeError as exc:
        raise InvalidInputTypeError(f"{what} cannot be stored as JSON: {exc}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"{what} cannot be stored as JSON: {exc}") from exc


def _has_rounded_int(value: Any) -> bool:
    """Whether orjson may have read an integer beyond 64 bits as a float."""
    if isinstance(value, float):
        return abs(value) >= _UINT64_LIMIT_AS_FLOAT or value <= _INT64_MIN_AS_FLOAT
    if isinstance(value, dict):
        return any(_has_rounded_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_rounded_int(v) for v in value)
    return False


def load_json(text: str) -> Any:
    value = orjson.loads(text)
    if _has_rounded_int(value):
        return json.loads(text)  # exact for big integers; floats read the same either way
    return value


def _load_checkpoint_json(text: str) -> dict[str, Any]:
    """The checkpoint document; only its inline channel values can hold big integers, so only
    those are checked (the rest is ids, versions and timestamps)."""
    value: dict[str, Any] = orjson.loads(text)
    values = value.get("channel_values")
    if values and any(
        isinstance(v, float) and (v >= _UINT64_LIMIT_AS_FLOAT or v <= _INT64_MIN_AS_FLOAT)
        for v in values.values()
    ):
        return cast("dict[str, Any]", json.loads(text))
    return value


@dataclass
class CheckpointRow:
    """One ``checkpoints`` row with its blobs, writes and (format < 4) parent's pending sends."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: str
    metadata: str
    blobs: Sequence[tuple[str, str, bytes | None]] | None
    writes: Sequence[tuple[str, str, str | None, bytes, str, int]] | None
    pending_sends: Sequence[tuple[str | None, bytes]] | None

    @classmethod
    def from_result(cls, row: Sequence[Any]) -> CheckpointRow:
        return cls(*row)


def _loads(serde: SerializerProtocol, type_: str | None, blob: bytes | None) -> Any:
    return serde.loads_typed((type_ or "", blob or b""))


def load_checkpoint_tuple(
    serde: SerializerProtocol,
    row: CheckpointRow,
    *,
    first_version: str,
) -> CheckpointTuple:
    """Rebuild the tuple upstream's ``_load_checkpoint_tuple`` returns for this row."""
    checkpoint = _load_checkpoint_json(row.checkpoint)
    channel_values: dict[str, Any] = dict(checkpoint.get("channel_values") or {})
    for channel, type_, blob in row.blobs or ():
        if type_ != "empty":
            channel_values[channel] = _loads(serde, type_, blob)
    if row.pending_sends and checkpoint.get("v", 0) < 4:
        # Format < 4 kept Send packets as writes to the parent; today's format keeps them in the
        # TASKS channel (upstream's _migrate_pending_sends).
        channel_values[TASKS] = [_loads(serde, t, b) for t, b in row.pending_sends]
        versions = checkpoint.setdefault("channel_versions", {})
        versions[TASKS] = max(versions.values()) if versions else first_version
    checkpoint["channel_values"] = channel_values

    writes = sorted(row.writes or (), key=lambda w: writes_sort_key(w[4], w[0], w[5]))
    pending_writes: list[PendingWrite] = [
        (task_id, channel, _loads(serde, type_, blob))
        for task_id, channel, type_, blob, _path, _idx in writes
    ]
    config: RunnableConfig = {
        "configurable": {
            "thread_id": row.thread_id,
            "checkpoint_ns": row.checkpoint_ns,
            "checkpoint_id": row.checkpoint_id,
        }
    }
    parent_config: RunnableConfig | None = (
        {
            "configurable": {
                "thread_id": row.thread_id,
                "checkpoint_ns": row.checkpoint_ns,
                "checkpoint_id": row.parent_checkpoint_id,
            }
        }
        if row.parent_checkpoint_id
        else None
    )
    return CheckpointTuple(
        config=config,
        checkpoint=cast(Checkpoint, checkpoint),
        metadata=cast(CheckpointMetadata, load_json(row.metadata)),
        parent_config=parent_config,
        pending_writes=pending_writes,
    )

