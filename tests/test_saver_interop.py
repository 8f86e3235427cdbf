"""One database, two savers: upstream's AsyncPostgresSaver and ours read and continue each other's
threads.

Real graphs (interrupts, Send, subgraphs three namespaces deep, update_state, a failing node,
a thread longer than one ``alist`` page, forks, DeltaChannel) write threads through one saver;
the other must read every ``CheckpointTuple`` field of every checkpoint of every namespace
exactly as the writer's own reads do, through ``aget_tuple`` and ``alist`` (with filters,
``before`` and ``limit``); a thread paused by one saver must finish on the other as if one saver
had run it all; both savers must write the same rows for the same run (ids, timestamps and the
random part of versions aside); and upstream's ``setup()`` must change nothing on a database our
migrations built. The matrix of these checks is printed at the end of the module.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from graphs import (
    ODD_VALUES,
    SCENARIOS,
    Scenario,
    compile_scenario,
    exact,
    namespace_histories,
    run_steps,
    thread_config,
)
from langgraph_sqlalchemy import AsyncSQLAlchemySaver
from langgraph_sqlalchemy.schema import get_tables
from schema_catalog import dump_tables, read_catalog

TABLES = get_tables(None)
SAVERS = ("upstream", "ours")
RESUMABLE = [name for name, s in SCENARIOS.items() if s.resume_at is not None]

# (check, scenario, writer, reader) -> "ok" | "FAIL"; printed when the module finishes.
_MATRIX: dict[tuple[str, str, str, str], str] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_matrix(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not _MATRIX:
        return
    columns = sorted({(check, w, r) for check, _, w, r in _MATRIX})
    order = [*SCENARIOS, ODD_VALUES.name]
    scenarios = sorted({s for _, s, _, _ in _MATRIX}, key=order.index)
    # "rows" and "prune" compare what each saver leaves in the tables; the other checks read
    # or resume one saver's thread with the other.
    same = ("rows", "prune")
    headers = [f"{check}: {w}{'==' if check in same else '->'}{r}" for check, w, r in columns]
    width = max(len(h) for h in headers)
    # Module teardown output is captured like a test's; the matrix is for the reader of the run.
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(
            "interop matrix (read/resume: writer->reader; rows/prune: same rows left)", bold=True
        )
        reporter.write_line(" " * 14 + " | ".join(h.ljust(width) for h in headers))
        for scenario in scenarios:
            cells = [_MATRIX.get((check, scenario, w, r), "-") for check, w, r in columns]
            reporter.write_line(scenario.ljust(14) + " | ".join(c.ljust(width) for c in cells))


@pytest.fixture
async def savers(engine: AsyncEngine, database_url: str) -> AsyncIterator[dict[str, Any]]:
    """Both savers on the same (emptied) database."""
    async with AsyncPostgresSaver.from_conn_string(database_url) as upstream:
        yield {"upstream": upstream, "ours": AsyncSQLAlchemySaver(engine)}


def _other(name: str) -> str:
    return "ours" if name == "upstream" else "upstream"


def _fields(t: CheckpointTuple | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "config": t.config,
        "checkpoint": t.checkpoint,
        "metadata": t.metadata,
        "parent_config": t.parent_config,
        "pending_writes": t.pending_writes,
    }


async def _listed(
    saver: BaseCheckpointSaver[Any], config: RunnableConfig | None, **kwargs: Any
) -> list[dict[str, Any] | None]:
    return [_fields(t) async for t in saver.alist(config, **kwargs)]


async def _everything_read_by(
    saver: BaseCheckpointSaver[Any], thread_ids: list[str]
) -> dict[str, Any]:
    """Every way of reading the threads that a user has, as plain data."""
    out: dict[str, Any] = {"all threads": await _listed(saver, None)}
    for thread_id in thread_ids:
        config = thread_config(thread_id)
        listed = [t async for t in saver.alist(config)]
        namespaces = sorted({t.config["configurable"]["checkpoint_ns"] for t in listed})
        reads: dict[str, Any] = {
            "alist": [_fields(t) for t in listed],
            "aget_tuple by id": [_fields(await saver.aget_tuple(t.config)) for t in listed],
            "latest": _fields(await saver.aget_tuple(config)),
            "source=loop": await _listed(saver, config, filter={"source": "loop"}),
            "limit 3": await _listed(saver, config, limit=3),
        }
        for ns in namespaces:
            ns_config: RunnableConfig = {
                "configurable": {"thread_id": thread_id, "checkpoint_ns": ns}
            }
            in_ns = await _listed(saver, ns_config)
            reads[f"ns {ns!r}"] = in_ns
            reads[f"ns {ns!r} latest"] = _fields(await saver.aget_tuple(ns_config))
            empty_id: RunnableConfig = {
                "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": ""}
            }
            reads[f"ns {ns!r} empty id"] = _fields(await saver.aget_tuple(empty_id))
            if len(in_ns) > 2:
                reads[f"ns {ns!r} before"] = await _listed(
                    saver, ns_config, before=in_ns[1]["config"], limit=5
                )
        out[thread_id] = reads
    return out


async def _write_threads(scenario: Scenario, saver: BaseCheckpointSaver[Any]) -> list[str]:
    """A finished thread, and (for scenarios with an interrupt) one left waiting at it."""
    finished = f"{scenario.name}-done-{uuid.uuid4().hex[:8]}"
    await run_steps(scenario, saver, finished)
    threads = [finished]
    if scenario.resume_at is not None:
        paused = f"{scenario.name}-paused-{uuid.uuid4().hex[:8]}"
        await run_steps(scenario, saver, paused, 0, scenario.resume_at)
        threads.append(paused)
    return threads


@pytest.mark.parametrize("writer", SAVERS)
@pytest.mark.parametrize("scenario_name", list(SCENARIOS))
async def test_threads_read_identically(
    scenario_name: str, writer: str, savers: dict[str, Any]
) -> None:
    reader = _other(writer)
    _MATRIX[("read", scenario_name, writer, reader)] = "FAIL"
    scenario = SCENARIOS[scenario_name]
    thread_ids = await _write_threads(scenario, savers[writer])

    by_writer = await _everything_read_by(savers[writer], thread_ids)
    by_reader = await _everything_read_by(savers[reader], thread_ids)
    assert by_reader.keys() == by_writer.keys()
    for key, expected in by_writer.items():
        if key == "all threads":
            assert by_reader[key] == expected, "alist(None) differs"
            continue
        for view, value in expected.items():
            assert by_reader[key][view] == value, f"{view} of thread {key} differs"

    # Both agree with what the graph saw on the reference saver (agreeing on garbage fails).
    reference = InMemorySaver()
    await run_steps(scenario, reference, "reference")
    expected_histories = await namespace_histories(
        compile_scenario(scenario, reference), reference, "reference"
    )
    assert (
        await namespace_histories(
            compile_scenario(scenario, savers[reader]), savers[reader], thread_ids[0]
        )
        == expected_histories
    )
    tuples = [t for t in by_writer[thread_ids[-1]]["alist"] if t is not None]
    assert tuples, "the scenario wrote no checkpoints"
    if scenario.resume_at is not None:
        assert any(t["pending_writes"] for t in tuples), "a paused thread has pending writes"
    if scenario_name == "subgraph":
        assert len({t["config"]["configurable"]["checkpoint_ns"] for t in tuples}) == 3
    _MATRIX[("read", scenario_name, writer, reader)] = "ok"


async def test_values_only_ours_can_store_are_read_identically_by_upstream(
    savers: dict[str, Any],
) -> None:
    """NUL in strings and NaN/Infinity (upstream's saver fails writing them) go to blobs that
    upstream's saver reads back exactly."""
    _MATRIX[("read", ODD_VALUES.name, "ours", "upstream")] = "FAIL"
    thread_ids = await _write_threads(ODD_VALUES, savers["ours"])
    by_ours = await _everything_read_by(savers["ours"], thread_ids)
    by_upstream = await _everything_read_by(savers["upstream"], thread_ids)
    assert exact(by_upstream) == exact(by_ours)
    graph = compile_scenario(ODD_VALUES, savers["upstream"])
    values = (await graph.aget_state(thread_config(thread_ids[0]))).values
    assert values["text"] == "edited\x00again"
    assert values["number"] == float("-inf")
    _MATRIX[("read", ODD_VALUES.name, "ours", "upstream")] = "ok"


@pytest.mark.parametrize("first", SAVERS)
@pytest.mark.parametrize("scenario_name", RESUMABLE)
async def test_thread_paused_by_one_saver_finishes_on_the_other(
    scenario_name: str, first: str, savers: dict[str, Any]
) -> None:
    second = _other(first)
    _MATRIX[("resume", scenario_name, first, second)] = "FAIL"
    scenario = SCENARIOS[scenario_name]
    assert scenario.resume_at is not None

    alone = f"alone-{uuid.uuid4().hex[:8]}"
    alone_states = await run_steps(scenario, savers[first], alone)
    relay = f"relay-{uuid.uuid4().hex[:8]}"
    relay_states = await run_steps(scenario, savers[first], relay, 0, scenario.resume_at)
    relay_states += await run_steps(scenario, savers[second], relay, scenario.resume_at)

    assert relay_states == alone_states
    assert relay_states[-1]["next"] == ()
    for reader in SAVERS:
        graph = compile_scenario(scenario, savers[reader])
        assert await namespace_histories(graph, savers[reader], relay) == (
            await namespace_histories(graph, savers[reader], alone)
        ), f"history read by {reader} differs"
    _MATRIX[("resume", scenario_name, first, second)] = "ok"


# The fraction is ``f"{random.random():016}"``, which Python writes in exponent form below 1e-4
# ("6.47768728111453e-05"): about one version in 10,000, so a long thread meets one now and then.
_VERSION = re.compile(r"^(\d{32})\.[0-9.e+-]+$")


def _without_version_noise(value: Any) -> Any:
    # Versions are "<32-digit counter>.<random fraction>": the fraction is random by design
    # (so that forks get distinct versions), the counter must match.
    if isinstance(value, str) and (m := _VERSION.match(value)):
        return int(m.group(1))
    if isinstance(value, dict):
        return {k: _without_version_noise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_version_noise(v) for v in value]
    return value


def _shape(checkpoint_ns: str) -> str:
    return "|".join(part.split(":", 1)[0] for part in checkpoint_ns.split("|"))


async def _rows_as_written(engine: AsyncEngine, thread_id: str) -> dict[str, Any]:
    """The thread's rows with ids, timestamps and random version fractions taken out."""
    cp, blobs, writes = TABLES.checkpoints, TABLES.checkpoint_blobs, TABLES.checkpoint_writes
    async with engine.connect() as conn:
        checkpoints = (
            await conn.execute(
                select(cp).where(cp.c.thread_id == thread_id).order_by(cp.c.checkpoint_id)
            )
        ).all()
        blob_rows = (await conn.execute(select(blobs).where(blobs.c.thread_id == thread_id))).all()
        write_rows = (
            await conn.execute(select(writes).where(writes.c.thread_id == thread_id))
        ).all()
    position = {(r.checkpoint_ns, r.checkpoint_id): i for i, r in enumerate(checkpoints)}
    out: dict[str, Any] = {"checkpoints": [], "blobs": [], "writes": []}
    for r in checkpoints:
        checkpoint = {k: v for k, v in r.checkpoint.items() if k not in ("id", "ts")}
        metadata = dict(r.metadata)
        metadata["parents"] = sorted(_shape(ns) for ns in metadata.get("parents", {}))
        out["checkpoints"].append(
            {
                "ns": _shape(r.checkpoint_ns),
                "parent": position.get((r.checkpoint_ns, r.parent_checkpoint_id)),
                "type": r.type,
                "checkpoint": _without_version_noise(checkpoint),
                "metadata": metadata,
            }
        )
    out["blobs"] = sorted(
        (
            (_shape(r.checkpoint_ns), r.channel, _without_version_noise(r.version), r.type, r.blob)
            for r in blob_rows
        ),
        key=repr,
    )
    out["writes"] = sorted(
        (
            (
                position[(r.checkpoint_ns, r.checkpoint_id)],
                r.task_path,
                r.idx,
                r.channel,
                r.type,
                # Interrupt values carry ids derived from checkpoint ids.
                None if r.channel == "__interrupt__" else r.blob,
            )
            for r in write_rows
        ),
        key=repr,
    )
    return out


@pytest.mark.parametrize("scenario_name", list(SCENARIOS))
async def test_both_savers_write_the_same_rows(
    scenario_name: str, savers: dict[str, Any], engine: AsyncEngine
) -> None:
    _MATRIX[("rows", scenario_name, "upstream", "ours")] = "FAIL"
    scenario = SCENARIOS[scenario_name]
    rows = {}
    for name in SAVERS:
        thread_id = f"rows-{name}-{uuid.uuid4().hex[:8]}"
        await run_steps(scenario, savers[name], thread_id)
        rows[name] = await _rows_as_written(engine, thread_id)
    assert rows["ours"]["checkpoints"] == rows["upstream"]["checkpoints"]
    assert rows["ours"]["blobs"] == rows["upstream"]["blobs"]
    assert rows["ours"]["writes"] == rows["upstream"]["writes"]
    assert rows["ours"]["checkpoints"] and rows["ours"]["blobs"] and rows["ours"]["writes"]
    _MATRIX[("rows", scenario_name, "upstream", "ours")] = "ok"


@pytest.mark.parametrize("scenario_name", list(SCENARIOS))
async def test_prune_keep_latest_leaves_the_same_rows_as_upstream(
    scenario_name: str, savers: dict[str, Any], engine: AsyncEngine
) -> None:
    """Each saver prunes the threads it wrote (finished, and paused where the scenario can be);
    what remains must be the same rows, and paused threads must still finish alike."""
    _MATRIX[("prune", scenario_name, "upstream", "ours")] = "FAIL"
    scenario = SCENARIOS[scenario_name]
    threads = {name: await _write_threads(scenario, savers[name]) for name in SAVERS}
    if scenario_name == "delta":
        # Pruning a DeltaChannel thread to its head would cut the history its state is
        # rebuilt from: both refuse, and change nothing.
        before = {name: await _rows_as_written(engine, threads[name][0]) for name in SAVERS}
        for name in SAVERS:
            with pytest.raises(NotImplementedError, match="DeltaChannel"):
                await savers[name].aprune(threads[name])
            assert await _rows_as_written(engine, threads[name][0]) == before[name]
        _MATRIX[("prune", scenario_name, "upstream", "ours")] = "ok"
        return

    written = await _rows_as_written(engine, threads["ours"][0])
    for name in SAVERS:
        await savers[name].aprune(threads[name])
    pruned = await _rows_as_written(engine, threads["ours"][0])
    assert len(pruned["checkpoints"]) < len(written["checkpoints"])
    for upstream_thread, our_thread in zip(threads["upstream"], threads["ours"], strict=True):
        pruned_by_upstream = await _rows_as_written(engine, upstream_thread)
        pruned_by_ours = await _rows_as_written(engine, our_thread)
        assert pruned_by_ours == pruned_by_upstream, f"after pruning {our_thread}"
        assert pruned_by_ours["checkpoints"], "keep_latest keeps the newest checkpoint"

    if scenario.resume_at is not None:
        finished = {
            name: await run_steps(scenario, savers[name], threads[name][1], scenario.resume_at)
            for name in SAVERS
        }
        assert finished["ours"] == finished["upstream"]
        assert finished["ours"][-1]["next"] == ()
    _MATRIX[("prune", scenario_name, "upstream", "ours")] = "ok"


async def test_upstream_setup_changes_nothing_on_our_database(
    savers: dict[str, Any], engine: AsyncEngine
) -> None:
    await run_steps(SCENARIOS["subgraph"], savers["ours"], "before-setup", 0, 1)
    data_tables = ["checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations"]

    async def migrations() -> tuple[int, int]:
        async with engine.connect() as conn:
            v = TABLES.checkpoint_migrations.c.v
            count, top = (await conn.execute(select(func.count(), func.max(v)))).one()
        return count, top

    assert await migrations() == (10, 9)
    catalog_before = await read_catalog(engine)
    rows_before = await dump_tables(engine, data_tables)

    await savers["upstream"].setup()

    assert await migrations() == (10, 9)
    assert not catalog_before.differences(await read_catalog(engine))
    assert await dump_tables(engine, data_tables) == rows_before
    # The thread written before is still resumed, by either saver.
    states = await run_steps(SCENARIOS["subgraph"], savers["upstream"], "before-setup", 1)
    assert states[-1]["values"]["answer"] == "forty-two"
