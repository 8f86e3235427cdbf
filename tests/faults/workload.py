"""The write workload the fault suites run, and the ledger that proves nothing was lost.

Each writer owns one thread and one store namespace and loops: ``aput`` a checkpoint (an inline
channel and a blob channel, parented on its previous one), ``aput_writes`` to it, ``aput`` a new
store item and overwrite the previous one. Every call that returns is *acknowledged* and goes in
the ledger; every exception a caller sees goes in ``errors``. Afterwards :func:`verify` reads
everything back on a clean engine and counts what is missing or wrong.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore


def make_checkpoint(
    saver: AsyncSQLAlchemySaver, step: int, previous: Checkpoint | None, payload: Any
) -> tuple[Checkpoint, dict[str, str]]:
    """A checkpoint with an inline channel (``step``) and a blob channel (``payload``)."""
    checkpoint = empty_checkpoint()
    old = previous["channel_versions"] if previous else {}
    versions = {
        "step": saver.get_next_version(old.get("step"), None),  # type: ignore[arg-type]
        "payload": saver.get_next_version(old.get("payload"), None),  # type: ignore[arg-type]
    }
    checkpoint["channel_values"] = {"step": step, "payload": payload}
    checkpoint["channel_versions"] = dict(versions)
    return checkpoint, versions


@dataclass
class AckedCheckpoint:
    config: RunnableConfig  # what aput returned
    parent_id: str | None
    step: int
    payload: Any
    writes: list[tuple[str, Any]] | None = None  # acknowledged aput_writes
    task_id: str = ""


@dataclass
class Ledger:
    checkpoints: list[AckedCheckpoint] = field(default_factory=list)
    items: dict[tuple[tuple[str, ...], str], dict[str, Any]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    ops: int = 0
    latencies: list[float] = field(default_factory=list)

    async def call(self, coro: Any) -> Any:
        """Await one library call, counting it; an exception is recorded and re-raised."""
        started = time.monotonic()
        try:
            result = await coro
        except Exception as exc:
            self.errors.append(exc)
            raise
        self.ops += 1
        self.latencies.append(time.monotonic() - started)
        return result


async def writer(
    saver: AsyncSQLAlchemySaver,
    store: AsyncSQLAlchemyStore,
    ledger: Ledger,
    name: str,
    stop: asyncio.Event,
) -> None:
    """One writer's loop; stops between iterations once ``stop`` is set."""
    config: RunnableConfig = {"configurable": {"thread_id": name, "checkpoint_ns": ""}}
    previous: Checkpoint | None = None
    namespace = ("faults", name)
    step = 0
    while not stop.is_set():
        step += 1
        payload = {"writer": name, "step": step, "data": ["x" * 64] * 4}
        checkpoint, versions = make_checkpoint(saver, step, previous, payload)
        parent_id = config["configurable"].get("checkpoint_id")
        try:
            saved = await ledger.call(
                saver.aput(config, checkpoint, {"source": "loop", "step": step}, versions)
            )
        except Exception:
            continue  # not acknowledged: the next iteration retries from the same parent
        acked = AckedCheckpoint(saved, parent_id, step, payload, task_id=f"task-{step}")
        ledger.checkpoints.append(acked)
        config, previous = saved, checkpoint
        writes = [("out", {"step": step}), ("log", f"step {step} of {name}")]
        try:
            await ledger.call(saver.aput_writes(saved, writes, acked.task_id))
            acked.writes = writes
        except Exception:
            pass
        key = f"item-{step}"
        value = {"writer": name, "step": step, "text": "v1"}
        try:
            await ledger.call(store.aput(namespace, key, value))
            ledger.items[(namespace, key)] = value
        except Exception:
            pass
        if step > 1:
            key = f"item-{step - 1}"
            value = {"writer": name, "step": step - 1, "text": "v2 (overwritten)"}
            try:
                await ledger.call(store.aput(namespace, key, value))
                ledger.items[(namespace, key)] = value
            except Exception:
                pass


@dataclass
class Verdict:
    checkpoints_missing: int = 0
    checkpoints_wrong: int = 0
    writes_missing: int = 0
    items_missing: int = 0
    items_wrong: int = 0
    extra_checkpoints: int = 0  # rows nobody was told about (possible only for failed calls)
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.checkpoints_missing + self.writes_missing + self.items_missing

    @property
    def wrong(self) -> int:
        return self.checkpoints_wrong + self.items_wrong


async def verify(
    saver: AsyncSQLAlchemySaver, store: AsyncSQLAlchemyStore, ledger: Ledger
) -> Verdict:
    """Read back every acknowledged write through a saver/store on a healthy engine."""
    verdict = Verdict()
    per_thread: dict[str, int] = {}
    for acked in ledger.checkpoints:
        thread = acked.config["configurable"]["thread_id"]
        per_thread[thread] = per_thread.get(thread, 0) + 1
        found = await saver.aget_tuple(acked.config)
        if found is None:
            verdict.checkpoints_missing += 1
            verdict.problems.append(f"missing checkpoint {acked.config}")
            continue
        parent_config = found.parent_config
        parent = parent_config["configurable"]["checkpoint_id"] if parent_config else None
        values = found.checkpoint["channel_values"]
        if (
            parent != acked.parent_id
            or values.get("step") != acked.step
            or values.get("payload") != acked.payload
        ):
            verdict.checkpoints_wrong += 1
            verdict.problems.append(f"wrong checkpoint {acked.config}: {values}, parent {parent}")
        if acked.writes is not None:
            got = [(c, v) for t, c, v in found.pending_writes or [] if t == acked.task_id]
            if got != acked.writes:
                verdict.writes_missing += 1
                verdict.problems.append(f"writes of {acked.config}: {got} != {acked.writes}")
    for thread, expected in per_thread.items():
        listed = [
            c async for c in saver.alist({"configurable": {"thread_id": thread}})
        ]
        verdict.extra_checkpoints += max(0, len(listed) - expected)
    for (namespace, key), value in ledger.items.items():
        item = await store.aget(namespace, key)
        if item is None:
            verdict.items_missing += 1
            verdict.problems.append(f"missing item {namespace}/{key}")
        elif item.value != value:
            verdict.items_wrong += 1
            verdict.problems.append(f"item {namespace}/{key}: {item.value} != {value}")
    return verdict


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
