"""Drop-in for the saver (issue 11): where upstream's ``AsyncPostgresSaver`` raises for bad
input, ours raises the same type (or a subclass), case by case against upstream on one
database; each remaining difference is a named entry of ``differences.BEHAVIOUR``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from sqlalchemy.ext.asyncio import AsyncEngine

from differences import BEHAVIOUR
from langgraph_sqlalchemy import AsyncSQLAlchemySaver, InvalidInputError

AnySaver = Any  # AsyncPostgresSaver | AsyncSQLAlchemySaver


@pytest.fixture
async def both(engine: AsyncEngine, database_url: str) -> AsyncIterator[dict[str, AnySaver]]:
    async with AsyncPostgresSaver.from_conn_string(database_url) as theirs:
        yield {"upstream": theirs, "ours": AsyncSQLAlchemySaver(engine)}


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
ROOT = {"thread_id": "t", "checkpoint_ns": ""}

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
]


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
