"""SPEC §7 for the saver: bad input gives a clear error, writes nothing, saver stays usable."""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from checkpoint_factory import checkpoint
from langgraph_sqlalchemy import AsyncSQLAlchemySaver, DatabaseError, InvalidInputError
from langgraph_sqlalchemy.schema import get_tables


def cfg(thread_id: Any, ns: str = "", checkpoint_id: str | None = None) -> Any:
    c: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        c["checkpoint_id"] = checkpoint_id
    return {"configurable": c}


@pytest.fixture
async def saver(engine: AsyncEngine) -> AsyncSQLAlchemySaver:
    return AsyncSQLAlchemySaver(engine)


async def table_counts(engine: AsyncEngine) -> tuple[int, ...]:
    t = get_tables(None)
    counts = []
    async with engine.connect() as conn:
        for table in (t.checkpoints, t.checkpoint_blobs, t.checkpoint_writes):
            stmt = select(func.count()).select_from(table)
            counts.append(int((await conn.execute(stmt)).scalar_one()))
    return tuple(counts)


async def assert_usable(saver: AsyncSQLAlchemySaver) -> None:
    stored = await saver.aput(cfg("still-ok"), checkpoint({"v": [1]}), {}, {"v": 1})
    tup = await saver.aget_tuple(stored)
    assert tup is not None and tup.checkpoint["channel_values"] == {"v": [1]}
    await saver.adelete_thread("still-ok")


async def test_nul_and_nan_in_values_writes_and_metadata(
    saver: AsyncSQLAlchemySaver,
) -> None:
    values = {"s": "nul\x00inside", "f": float("nan"), "nested": {"k\x00": ["\x00", math.inf]}}
    stored = await saver.aput(
        cfg("t-nul"),
        checkpoint(values),
        {"note": "x\x00y", "deep": [{"z\x00": "\x00"}], "score": float("nan")},  # type: ignore[typeddict-unknown-key]
        {k: 1 for k in values},
    )
    await saver.aput_writes(stored, [("s", "w\x00"), ("f", -math.inf)], "task")
    with pytest.raises(InvalidInputError, match="NUL"):  # ids are text columns: no NUL there
        await saver.aput_writes(stored, [("s", "w")], "task\x00ish")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    got = tup.checkpoint["channel_values"]
    assert got["s"] == "nul\x00inside" and math.isnan(got["f"])
    assert got["nested"] == {"k\x00": ["\x00", math.inf]}
    assert tup.metadata["note"] == "xy"  # type: ignore[typeddict-item]
    assert tup.metadata["deep"] == [{"z": ""}]  # type: ignore[typeddict-item]
    assert tup.metadata["score"] is None  # type: ignore[typeddict-item]
    assert tup.pending_writes is not None
    assert [(w[0], w[1]) for w in tup.pending_writes] == [("task", "s"), ("task", "f")]
    assert tup.pending_writes[0][2] == "w\x00" and tup.pending_writes[1][2] == -math.inf


async def test_malformed_configs(saver: AsyncSQLAlchemySaver, engine: AsyncEngine) -> None:
    before = await table_counts(engine)
    cp = checkpoint({"x": [1]})
    cases = [
        (saver.aput({"configurable": {"checkpoint_ns": ""}}, cp, {}, {"x": 1}), "thread_id"),
        (saver.aput({"configurable": {"thread_id": "t"}}, cp, {}, {"x": 1}), "checkpoint_ns"),
        (saver.aput({}, cp, {}, {}), "configurable"),  # type: ignore[typeddict-item]
        (saver.aput(None, cp, {}, {}), "dict"),  # type: ignore[arg-type]
        (saver.aput(cfg(None), cp, {}, {}), "thread_id"),
        (saver.aput(cfg("t\x00"), cp, {}, {}), "NUL"),
        (saver.aput(cfg("t"), {"v": 4}, {}, {}), "id"),  # type: ignore[arg-type]
        (saver.aget_tuple({"configurable": {"checkpoint_ns": ""}}), "thread_id"),
        (
            saver.aput_writes(
                {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, [("a", 1)], "task"
            ),
            "checkpoint_id",
        ),
        (
            saver.aput_writes(
                {"configurable": {"thread_id": "t", "checkpoint_id": "c"}}, [("a", 1)], "task"
            ),
            "checkpoint_ns",
        ),
        (saver.aput_writes(cfg("t", checkpoint_id="c"), [("a", 1, 2)], "task"), "pair"),  # type: ignore[list-item]
        (saver.aput_writes(cfg("t", checkpoint_id="c"), [(1, 1)], "task"), "channel"),  # type: ignore[list-item]
        (saver.aput(cfg("t"), checkpoint({"x": threading.Lock()}), {}, {"x": 1}), "serialized"),
        (saver.aput_writes(cfg("t", checkpoint_id="c"), [("a", object())], "task"), "serialized"),
    ]
    for coro, message in cases:
        with pytest.raises(InvalidInputError, match=message) as info:
            await coro
        assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError, match="thread_id"):
        [t async for t in saver.alist({"configurable": {}})]
    with pytest.raises(InvalidInputError, match="limit"):
        [t async for t in saver.alist(None, limit="3")]  # type: ignore[arg-type]
    assert await table_counts(engine) == before
    await assert_usable(saver)


async def test_twenty_megabyte_value_round_trips(saver: AsyncSQLAlchemySaver) -> None:
    big = os.urandom(20 * 1024 * 1024)
    stored = await saver.aput(cfg("t-big"), checkpoint({"big": big}), {}, {"big": 1})
    await saver.aput_writes(stored, [("big", big[:5_000_000])], "task")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.checkpoint["channel_values"]["big"] == big
    assert tup.pending_writes is not None and tup.pending_writes[0][2] == big[:5_000_000]


@pytest.mark.slow
async def test_hundred_megabyte_value_round_trips(saver: AsyncSQLAlchemySaver) -> None:
    big = b"\x01" * (100 * 1024 * 1024)
    stored = await saver.aput(cfg("t-huge"), checkpoint({"big": big}), {}, {"big": 1})
    tup = await saver.aget_tuple(stored)
    assert tup is not None and tup.checkpoint["channel_values"]["big"] == big


ODD_IDS = [
    'it\'s "quoted"',
    "100%_done\\ok",
    "line1\nline2\r\ttab",
    "ünïcödé-✓-🧵-中文",
    "%",
    "_",
    "\\",
    "' OR 1=1 --",
    "a" * 2000,
    " leading and trailing ",
]


async def test_odd_thread_ids_and_namespaces_round_trip(saver: AsyncSQLAlchemySaver) -> None:
    for thread_id in ODD_IDS:
        for ns in ("", thread_id):
            stored = await saver.aput(
                cfg(thread_id, ns), checkpoint({"v": [thread_id]}), {}, {"v": 1}
            )
            assert stored["configurable"]["thread_id"] == thread_id
            await saver.aput_writes(stored, [("v", thread_id)], thread_id, task_path=thread_id)
            tup = await saver.aget_tuple(cfg(thread_id, ns))
            assert tup is not None
            assert tup.config["configurable"] == {**stored["configurable"]}
            assert tup.checkpoint["channel_values"] == {"v": [thread_id]}
            assert tup.pending_writes == [(thread_id, "v", thread_id)]
    # No id matches another by pattern ("%" and "_" are not wildcards here).
    for thread_id in ODD_IDS:
        listed = [t async for t in saver.alist({"configurable": {"thread_id": thread_id}})]
        assert {t.config["configurable"]["thread_id"] for t in listed} == {thread_id}
        assert len(listed) == 2
    await saver.acopy_thread(ODD_IDS[0], ODD_IDS[1] + "-copy")
    await saver.aprune([ODD_IDS[2]])
    for thread_id in ODD_IDS:
        await saver.adelete_thread(thread_id)
    assert [t async for t in saver.alist(None)] != []  # only the copy remains
    assert {t.config["configurable"]["thread_id"] async for t in saver.alist(None)} == {
        ODD_IDS[1] + "-copy"
    }


async def test_non_string_ids_are_stored_as_text(saver: AsyncSQLAlchemySaver) -> None:
    stored = await saver.aput(cfg(42), checkpoint(), {}, {})
    assert stored["configurable"]["thread_id"] == 42  # the caller's object, as upstream's
    found = await saver.aget_tuple(stored)
    assert found is not None and found.config["configurable"]["thread_id"] == "42"
    assert await saver.aget_tuple(cfg(42)) is not None
    assert await saver.aget_tuple(cfg("42")) is not None


async def test_failed_statement_writes_nothing(
    saver: AsyncSQLAlchemySaver, engine: AsyncEngine
) -> None:
    """The server rejects the checkpoint row (an index entry over btree's 2704-byte limit)
    after the blob CTE ran: the single statement rolls back as a whole."""
    before = await table_counts(engine)
    too_long = os.urandom(6000).hex()
    with pytest.raises(DatabaseError) as info:
        await saver.aput(cfg(too_long), checkpoint({"x": [1], "y": {"a": 1}}), {}, {"x": 1, "y": 1})
    assert info.value.__cause__ is not None and "aput" in str(info.value)
    assert await table_counts(engine) == before
    await assert_usable(saver)


async def test_filter_keys_that_look_like_sql(
    saver: AsyncSQLAlchemySaver, engine: AsyncEngine
) -> None:
    await saver.aput(cfg("t-sql"), checkpoint(), {"a'; DROP TABLE checkpoints; --": "x"}, {})  # type: ignore[typeddict-unknown-key]
    hits = [t async for t in saver.alist(None, filter={"a'; DROP TABLE checkpoints; --": "x"})]
    assert len(hits) == 1
    assert [t async for t in saver.alist(None, filter={"$where": {"@>": "%"}})] == []
    assert (await table_counts(engine))[0] == 1


# --- issue 14: one call writing a special channel twice ------------------------------------------


async def test_a_special_channel_written_twice_in_one_call_matches_upstream(
    saver: AsyncSQLAlchemySaver, database_url: str
) -> None:
    """Two interrupts in one aput_writes: the last wins (an upsert cannot touch a row twice,
    SQLSTATE 21000, so the duplicate is settled before binding). In a call that also writes a
    regular channel the rows insert-or-skip, and the first one stays, as upstream's
    row-by-row executemany leaves it."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    calls: list[tuple[str, list[tuple[str, Any]]]] = [
        ("task-a", [("__interrupt__", "a"), ("__interrupt__", "b")]),
        ("task-b", [("x", 1), ("__interrupt__", "c"), ("__interrupt__", "d"), ("y", 2)]),
        ("task-c", [("__error__", "e1"), ("__interrupt__", "i"), ("__error__", "e2")]),
    ]
    pending: dict[str, Any] = {}
    async with AsyncPostgresSaver.from_conn_string(database_url) as upstream:
        for name, writer in (("upstream", upstream), ("ours", saver)):
            stored = await writer.aput(cfg(f"dup-{name}"), checkpoint(), {}, {})
            for task, writes in calls:
                await writer.aput_writes(stored, writes, task)
            # A later call still replaces: the latest interrupt wins across calls too.
            await writer.aput_writes(
                stored, [("__interrupt__", "z"), ("__interrupt__", "zz")], "task-a"
            )
            tup = await saver.aget_tuple(stored)
            assert tup is not None
            pending[name] = tup.pending_writes
    assert pending["ours"] == pending["upstream"]
    assert pending["ours"] == [
        ("task-a", "__interrupt__", "zz"),
        ("task-b", "__interrupt__", "c"),
        ("task-b", "x", 1),
        ("task-b", "y", 2),
        ("task-c", "__interrupt__", "i"),  # idx -3 sorts before __error__'s -1
        ("task-c", "__error__", "e2"),
    ]


# --- issue 14: lone surrogates (not valid UTF-8) ------------------------------------------------

SURROGATE = "\ud83d"  # half of an emoji's UTF-16 pair, as a broken JSON "\ud83d" escape leaves it


async def test_lone_surrogates_in_ids_are_invalid_input_and_write_nothing(
    saver: AsyncSQLAlchemySaver, engine: AsyncEngine
) -> None:
    stored = await saver.aput(cfg("t-sur"), checkpoint({"v": [1]}), {}, {"v": 1})
    cid = stored["configurable"]["checkpoint_id"]
    before = await table_counts(engine)
    bad = f"id-{SURROGATE}-x"
    cp = checkpoint({"v": [2]})
    cases: list[tuple[Any, str]] = [
        (saver.aput(cfg(bad), cp, {}, {"v": 2}), "aput: thread_id"),
        (saver.aput(cfg("t-sur", bad), cp, {}, {"v": 2}), "aput: checkpoint_ns"),
        (saver.aput(cfg("t-sur", checkpoint_id=bad), cp, {}, {"v": 2}), "aput: checkpoint_id"),
        (saver.aput(cfg("t-sur"), {**cp, "id": bad}, {}, {"v": 2}), r"aput: checkpoint\['id'\]"),
        (saver.aput(cfg("t-sur"), cp, {}, {"v": bad}), "aput: version of channel 'v'"),
        (saver.aput_writes(stored, [("v", 1)], bad), "aput_writes: task_id"),
        (saver.aput_writes(stored, [("v", 1)], "task", bad), "aput_writes: task_path"),
        (saver.aput_writes(stored, [("v", 1), (bad, 2)], "task"), "write 1: channel"),
        (saver.aget_tuple(cfg(bad)), "aget_tuple: thread_id"),
        (saver.aget_tuple(cfg("t-sur", checkpoint_id=bad)), "aget_tuple: checkpoint_id"),
        (saver.adelete_thread(bad), "adelete_thread: thread_id"),
        (saver.adelete_for_runs(["run-ok", bad]), "adelete_for_runs: run_id"),
        (saver.acopy_thread("t-sur", bad), "acopy_thread: target_thread_id"),
        (saver.acopy_thread(bad, "t-other"), "acopy_thread: source_thread_id"),
        (saver.aprune([bad]), "aprune: thread_id"),
        (
            saver.aget_delta_channel_history(config=stored, channels=["v", bad]),
            "aget_delta_channel_history: channel name",
        ),
    ]
    for coro, where in cases:
        with pytest.raises(InvalidInputError, match=f"^{where}.*lone surrogate") as info:
            await coro
        assert isinstance(info.value, ValueError)
        assert "'\\ud83d' at index 3" in str(info.value)
    for call, where in [
        (lambda: saver.alist(cfg(bad)), "alist: thread_id"),
        (lambda: saver.alist(None, before=cfg("t", checkpoint_id=bad)), "alist: before"),
        (lambda: saver.alist(None, filter={"source": bad}), r"alist filter\['source'\]"),
    ]:
        with pytest.raises(InvalidInputError, match=f"^{where}.*lone surrogate"):
            [t async for t in call()]
    assert await table_counts(engine) == before
    tup = await saver.aget_tuple(cfg("t-sur"))
    assert tup is not None and tup.config["configurable"]["checkpoint_id"] == cid
    await assert_usable(saver)


async def test_lone_surrogates_in_metadata_name_where_they_are(
    saver: AsyncSQLAlchemySaver, engine: AsyncEngine
) -> None:
    """JSONB cannot hold them and there is no lossless spelling that filters still match, so
    metadata with one is refused (upstream fails inside PostgreSQL, 22P02)."""
    before = await table_counts(engine)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"source": f"in{SURROGATE}put"}, r"\['source'\] holds a lone surrogate '\\ud83d' at"),
        ({"deep": [{"ok": 1}, {"k": [SURROGATE]}]}, r"\['deep'\]\[1\]\['k'\]\[0\] holds"),
        ({"tags": {f"k{SURROGATE}": 1}}, r"\['tags'\] has a key 'k\\ud83d' that holds"),
    ]
    for metadata, where in cases:
        with pytest.raises(InvalidInputError, match=r"^aput: checkpoint metadata" + where):
            await saver.aput(cfg("t-meta"), checkpoint({"v": [1]}), metadata, {"v": 1})  # type: ignore[arg-type]
    # Config-derived metadata keys are checked the same way.
    config = {"configurable": {"thread_id": "t-meta", "checkpoint_ns": "", "user": SURROGATE}}
    with pytest.raises(InvalidInputError, match=r"metadata\['user'\] holds a lone surrogate"):
        await saver.aput(config, checkpoint(), {}, {})  # type: ignore[arg-type]
    assert await table_counts(engine) == before
    await assert_usable(saver)


async def test_lone_surrogates_in_channel_values_go_through_serde(
    saver: AsyncSQLAlchemySaver, engine: AsyncEngine
) -> None:
    """A str JSONB cannot hold goes to a blob like a str with NUL, so the serializer decides,
    as it always did for strs inside lists and dicts. LangGraph's default serializer
    (ormsgpack) writes such a code point as "?", exactly as ``InMemorySaver`` does; a
    serializer that keeps it keeps it."""
    import pickle

    from langgraph.checkpoint.memory import InMemorySaver

    values = {"top": f"a{SURROGATE}b", "nested": {"k": [f"c{SURROGATE}"]}}
    cp = checkpoint(values)
    stored = await saver.aput(cfg("t-val"), cp, {}, {k: 1 for k in values})
    await saver.aput_writes(stored, [("top", f"w{SURROGATE}")], "task")
    memory = InMemorySaver()
    mem_stored = memory.put(cfg("t-val"), cp, {}, {k: 1 for k in values})
    memory.put_writes(mem_stored, [("top", f"w{SURROGATE}")], "task")
    ours, reference = await saver.aget_tuple(stored), memory.get_tuple(mem_stored)
    assert ours is not None and reference is not None
    assert ours.checkpoint["channel_values"] == reference.checkpoint["channel_values"]
    assert ours.checkpoint["channel_values"] == {"top": "a?b", "nested": {"k": ["c?"]}}
    assert ours.pending_writes == reference.pending_writes == [("task", "top", "w?")]
    with pytest.raises(InvalidInputError, match=r"^channel 'x': dict value cannot be serialized"):
        await saver.aput(cfg("t-val"), checkpoint({"x": {f"k{SURROGATE}": 1}}), {}, {"x": 1})

    class PickleSerde:
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            return "pickle", pickle.dumps(obj)

        def loads_typed(self, data: tuple[str, bytes]) -> Any:
            return pickle.loads(data[1])

    exact = AsyncSQLAlchemySaver(engine, serde=PickleSerde())
    stored = await exact.aput(cfg("t-exact"), checkpoint(values), {}, {k: 1 for k in values})
    tup = await exact.aget_tuple(stored)
    assert tup is not None and tup.checkpoint["channel_values"] == values
