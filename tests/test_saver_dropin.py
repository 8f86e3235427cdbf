"""Drop-in for the saver (issue 11): where upstream's ``AsyncPostgresSaver`` raises for bad
input, ours raises the same type (or a subclass), case by case against upstream on one
database; each remaining difference is a named entry of ``differences.BEHAVIOUR``.

Every case runs twice: async (``AsyncPostgresSaver`` against ``AsyncSQLAlchemySaver``) and sync
(``PostgresSaver`` on a psycopg connection against ``SQLAlchemySaver``, each called through its
sync methods from a worker thread, see :mod:`sync_as_async`).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from sqlalchemy.ext.asyncio import AsyncEngine

from differences import BEHAVIOUR
from langgraph_sqlalchemy import AsyncSQLAlchemySaver, InvalidInputError, SQLAlchemySaver
from langgraph_sqlalchemy.input_errors import UnencodableTextError
from sync_as_async import AsAsync

AnySaver = Any  # AsyncPostgresSaver | AsyncSQLAlchemySaver, or a sync pair through AsAsync


@pytest.fixture(params=["async", "sync"])
async def both(
    request: pytest.FixtureRequest, engine: AsyncEngine, database_url: str
) -> AsyncIterator[dict[str, AnySaver]]:
    if request.param == "async":
        async with AsyncPostgresSaver.from_conn_string(database_url) as theirs:
            yield {"upstream": theirs, "ours": AsyncSQLAlchemySaver(engine)}
        return
    with (
        PostgresSaver.from_conn_string(database_url) as theirs,
        SQLAlchemySaver.from_conn_string(database_url) as ours,
    ):
        yield {
            "upstream": AsAsync(theirs, theirs.conn),
            "ours": AsAsync(ours, database_url),
        }


def cfg(**configurable: Any) -> Any:
    return {"configurable": configurable}


async def alist(saver: AnySaver, *args: Any, **kwargs: Any) -> list[Any]:
    return [item async for item in saver.alist(*args, **kwargs)]


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[AnySaver], Awaitable[Any]]
    difference: str | None = None


SERVER = "saver: bad input upstream's server rejects"
STORED = "saver: channel values JSON cannot hold are stored"
ROOT = {"thread_id": "t", "checkpoint_ns": ""}
# A lone surrogate: a str Python holds and UTF-8 cannot encode. Upstream's driver raises
# UnicodeEncodeError for one in any text parameter; ours raises UnencodableTextError (an
# InvalidInputError that is also a UnicodeEncodeError) before anything is sent.
LONE = "x\ud800"


def with_channels(values: dict[str, Any], versions: dict[str, Any] | None = None) -> Any:
    """An empty checkpoint holding ``values``, each channel at ``versions`` (default "1")."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = versions or dict.fromkeys(values, "1")
    return checkpoint


def put_channels(values: dict[str, Any], versions: dict[str, Any] | None = None) -> Any:
    checkpoint = with_channels(values, versions)
    return lambda s: s.aput(cfg(**ROOT), checkpoint, {}, checkpoint["channel_versions"])

CASES = [
    Case("config without configurable", lambda s: s.aget_tuple({})),
    Case("config without thread_id", lambda s: s.aget_tuple(cfg())),
    Case("config None", lambda s: s.aget_tuple(None)),
    Case(
        "put without checkpoint_ns",
        lambda s: s.aput(cfg(thread_id="t"), empty_checkpoint(), {}, {}),
    ),
    Case(
        "put without thread_id", lambda s: s.aput(cfg(checkpoint_ns=""), empty_checkpoint(), {}, {})
    ),
    Case("put of an empty checkpoint", lambda s: s.aput(cfg(**ROOT), {}, {}, {})),
    Case("writes without checkpoint_id", lambda s: s.aput_writes(cfg(**ROOT), [("a", 1)], "task")),
    Case("list without thread_id", lambda s: alist(s, cfg())),
    Case(
        "delta history without thread_id",
        lambda s: s.aget_delta_channel_history(config=cfg(), channels=["a"]),
    ),
    Case("prune of a str", lambda s: s.aprune("abc")),
    Case("prune with an unknown strategy", lambda s: s.aprune(["a"], strategy="x")),
    Case(
        "int thread id",
        lambda s: s.aput(cfg(thread_id=7, checkpoint_ns=""), empty_checkpoint(), {}, {}),
    ),
    Case(
        "NUL in a thread id",
        lambda s: s.aput(cfg(thread_id="t\x00", checkpoint_ns=""), empty_checkpoint(), {}, {}),
        SERVER,
    ),
    Case(
        "list limit 1.5", lambda s: alist(s, None, limit=1.5), "saver: alist limit must be an int"
    ),
    Case(
        "list limit -1",
        lambda s: alist(s, None, limit=-1),
        "saver: alist limit below 1 lists nothing",
    ),
    Case(
        "list filter a list",
        lambda s: alist(s, None, filter=[1]),
        "saver: alist filter must be a dict",
    ),
    Case(
        "delete thread None", lambda s: s.adelete_thread(None), "saver: thread ids cannot be None"
    ),
    # A read of thread None finds nothing on both (upstream binds thread_id = NULL).
    Case("get of thread None", lambda s: s.aget_tuple(cfg(thread_id=None))),
    Case("list of thread None", lambda s: alist(s, cfg(thread_id=None))),
    Case("configurable a list", lambda s: s.aget_tuple({"configurable": [("thread_id", "t")]})),
    Case("configurable a str", lambda s: alist(s, {"configurable": "t"})),
    Case(
        "metadata JSON cannot hold (bytes)",
        lambda s: s.aput(cfg(**ROOT), empty_checkpoint(), {"b": b"x"}, {}),
    ),
    Case("list filter JSON cannot hold (set)", lambda s: alist(s, None, filter={"s": {1}})),
    Case(
        "metadata with a datetime",
        lambda s: s.aput(cfg(**ROOT), empty_checkpoint(), {"d": dt.datetime(2020, 1, 1)}, {}),
        "saver: metadata and filters with datetime, UUID",
    ),
    Case(
        "list filter with a UUID",
        lambda s: alist(s, None, filter={"u": uuid.UUID(int=1)}),
        "saver: metadata and filters with datetime, UUID",
    ),
    Case(
        "put with checkpoint_ns None",
        lambda s: s.aput(
            cfg(thread_id="t", checkpoint_ns=None), empty_checkpoint(), {}, {}
        ),
        "saver: checkpoint_ns None is the root namespace",
    ),
    # Lone surrogates in text parameters: UnicodeEncodeError on both.
    Case("lone surrogate in a thread id", lambda s: s.aget_tuple(cfg(thread_id=LONE))),
    Case(
        "lone surrogate in a thread id of a put",
        lambda s: s.aput(cfg(thread_id=LONE, checkpoint_ns=""), empty_checkpoint(), {}, {}),
    ),
    Case(
        "lone surrogate in a checkpoint_ns",
        lambda s: s.aput(cfg(thread_id="t", checkpoint_ns=LONE), empty_checkpoint(), {}, {}),
    ),
    Case(
        "lone surrogate in a checkpoint_id",
        lambda s: s.aget_tuple(cfg(checkpoint_id=LONE, **ROOT)),
    ),
    Case(
        "lone surrogate in the parent checkpoint_id",
        lambda s: s.aput(cfg(checkpoint_id=LONE, **ROOT), empty_checkpoint(), {}, {}),
    ),
    Case(
        "lone surrogate in checkpoint['id']",
        lambda s: s.aput(cfg(**ROOT), {**empty_checkpoint(), "id": LONE}, {}, {}),
    ),
    Case("lone surrogate in a listed thread id", lambda s: alist(s, cfg(thread_id=LONE))),
    Case(
        "lone surrogate in list before",
        lambda s: alist(s, cfg(thread_id="t"), before=cfg(checkpoint_id=LONE)),
    ),
    Case("lone surrogate in a channel name", put_channels({LONE: [1]})),
    Case("lone surrogate in a channel version", put_channels({"c": [1]}, {"c": LONE})),
    Case(
        "lone surrogate in a written channel",
        lambda s: s.aput_writes(cfg(checkpoint_id="1", **ROOT), [(LONE, 1)], "task"),
    ),
    Case(
        "lone surrogate in a task id",
        lambda s: s.aput_writes(cfg(checkpoint_id="1", **ROOT), [("a", 1)], LONE),
    ),
    Case(
        "lone surrogate in a task path",
        lambda s: s.aput_writes(cfg(checkpoint_id="1", **ROOT), [("a", 1)], "task", LONE),
    ),
    Case("lone surrogate in a deleted thread id", lambda s: s.adelete_thread(LONE)),
    Case("lone surrogate in a pruned thread id", lambda s: s.aprune([LONE])),
    Case("lone surrogate in a delta channel", lambda s: _delta_history_of_a_checkpoint(s, LONE)),
    # In JSON upstream's server is the one refusing them.
    Case(
        "lone surrogate in metadata",
        lambda s: s.aput(cfg(**ROOT), empty_checkpoint(), {"a": [LONE]}, {}),
        SERVER,
    ),
    Case(
        "lone surrogate in a metadata key",
        lambda s: s.aput(cfg(**ROOT), empty_checkpoint(), {LONE: 1}, {}),
        SERVER,
    ),
    Case("lone surrogate in a list filter", lambda s: alist(s, None, filter={"a": LONE}), SERVER),
    # Channel values JSON cannot hold: upstream's server refuses the checkpoint, ours keeps
    # them (a blob, as any other value that is not plain JSON).
    Case("lone surrogate in a channel value", put_channels({"c": LONE}), STORED),
    Case("NUL in a channel value", put_channels({"c": "a\x00b"}), STORED),
    Case("NaN channel value", put_channels({"c": math.nan}), STORED),
    # Versions: LangGraph passes back what get_next_version gave; anything else fails alike.
    Case("next version after a float", lambda s: _now(s.get_next_version, 3.0, None)),
    Case("next version after bytes", lambda s: _now(s.get_next_version, b"3.5", None)),
    Case("next version after a non-numeric str", lambda s: _now(s.get_next_version, "x.5", None)),
    Case("next version after an int", lambda s: _now(s.get_next_version, 3, None)),
]


async def _now(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


async def _delta_history_of_a_checkpoint(saver: AnySaver, channel: str) -> Any:
    # Upstream looks at the channels only once it has found the checkpoint.
    stored = await saver.aput(cfg(**ROOT), empty_checkpoint(), {}, {})
    return await saver.aget_delta_channel_history(config=stored, channels=[channel])


async def _outcome(call: Callable[[AnySaver], Awaitable[Any]], saver: AnySaver) -> Exception | None:
    try:
        await call(saver)
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_raises_upstreams_exception_type(
    both: dict[str, AnySaver], case: Case
) -> None:
    theirs = await _outcome(case.call, both["upstream"])
    ours = await _outcome(case.call, both["ours"])
    alike = (theirs is None and ours is None) or (
        theirs is not None and ours is not None and isinstance(ours, type(theirs))
    )
    if case.difference is None:
        assert alike, f"upstream: {theirs!r}; ours: {ours!r}"
        return
    assert case.difference in BEHAVIOUR
    assert not alike, f"no longer a difference: upstream {theirs!r}, ours {ours!r}"
    if case.difference == SERVER:
        assert theirs is not None and type(theirs).__module__.startswith("psycopg"), theirs
    if ours is not None:
        assert isinstance(ours, InvalidInputError), repr(ours)


SURROGATE_CASES = [c for c in CASES if "lone surrogate" in c.name and c.difference != STORED]


@pytest.mark.parametrize("case", SURROGATE_CASES, ids=[c.name for c in SURROGATE_CASES])
async def test_lone_surrogates_are_unencodable_text_errors(
    both: dict[str, AnySaver], case: Case
) -> None:
    """Ours says where the surrogate is, as an InvalidInputError that is also what upstream
    raises for it (a UnicodeEncodeError), and writes nothing."""
    with pytest.raises(UnencodableTextError, match="lone surrogate") as raised:
        await case.call(both["ours"])
    assert isinstance(raised.value, UnicodeEncodeError) and isinstance(raised.value, ValueError)
    error = raised.value
    assert error.object[error.start] == "\ud800" and error.end == error.start + 1
    # Nothing written but what the case wrote before the refused call.
    listed = await alist(both["ours"], None)
    assert [t.checkpoint["channel_values"] for t in listed] in ([], [{}])


async def test_stored_channel_values_read_back_on_both(both: dict[str, AnySaver]) -> None:
    """What ours stores for the STORED cases both read back as InMemorySaver does: through
    the serializer (NUL and non-finite floats exactly; LangGraph's default serializer writes a
    lone surrogate as "?", in InMemorySaver too)."""
    values = {"surrogate": LONE, "nul": "a\x00b", "inf": math.inf}
    checkpoint = with_channels(values)
    memory = InMemorySaver()
    reference = memory.get_tuple(memory.put(cfg(**ROOT), checkpoint, {}, {k: "1" for k in values}))
    assert reference is not None
    assert reference.checkpoint["channel_values"] == {**values, "surrogate": "x?"}
    stored = await both["ours"].aput(cfg(**ROOT), checkpoint, {}, checkpoint["channel_versions"])
    for side in ("ours", "upstream"):
        found = await both[side].aget_tuple(stored)
        assert found is not None, side
        assert found.checkpoint["channel_values"] == reference.checkpoint["channel_values"], side


async def test_put_returns_the_callers_thread_id(both: dict[str, AnySaver]) -> None:
    """As upstream: the config aput returns holds the caller's own thread id object (an int,
    a UUID); what is stored, and what reads return, is its text."""
    for thread_id in (42, uuid.UUID(int=7)):
        returned = {}
        for side in ("upstream", "ours"):
            stored = await both[side].aput(
                cfg(thread_id=thread_id, checkpoint_ns=""), empty_checkpoint(), {}, {}
            )
            returned[side] = stored["configurable"]["thread_id"]
        assert returned["ours"] == returned["upstream"] == thread_id
        assert type(returned["ours"]) is type(thread_id)
        found = await both["ours"].aget_tuple(cfg(thread_id=str(thread_id)))
        assert found is not None and found.config["configurable"]["thread_id"] == str(thread_id)


async def test_missing_keys_say_which_and_are_key_errors(both: dict[str, AnySaver]) -> None:
    ours = both["ours"]
    with pytest.raises(KeyError) as raised:
        await ours.aget_tuple(cfg())
    # A plain message (KeyError's str() would be the quoted repr), and still our error.
    assert str(raised.value).startswith("aget_tuple: config['configurable'] has no 'thread_id'")
    assert isinstance(raised.value, InvalidInputError)


def test_every_saver_difference_is_demonstrated() -> None:
    demonstrated = {c.difference for c in CASES if c.difference}
    assert demonstrated == {k for k in BEHAVIOUR if k.startswith("saver:")}
