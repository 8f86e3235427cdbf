"""Real LangGraph graphs and the scripts that drive them, shared by the saver tests.

Each scenario is a graph builder plus a script (the calls a user makes on one thread: invoke,
resume with ``Command``, ``update_state``, a fork from an old checkpoint). Running a scenario on
two checkpointers and comparing :func:`normalized_history` tells whether a saver behaves like the
reference ``InMemorySaver`` from LangGraph's point of view. Ids, timestamps and run ids differ
between runs by construction, so the normal form keeps only what is deterministic: values, next
nodes, metadata, tasks (names, paths, interrupt values, errors, results, subgraph state) and the
shape of the parent links (as positions in the history).
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Send, StateSnapshot, interrupt
from typing_extensions import TypedDict

# --- interrupts: two pauses, plus a sibling task that finishes in the interrupted step -------


class InterruptState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    name: str
    color: str


def _start(state: InterruptState) -> dict[str, Any]:
    return {"steps": ["start"]}


def _ask_name(state: InterruptState) -> dict[str, Any]:
    # The sibling "side_work" completes in the same superstep, so its writes are stored as
    # pending writes next to the __interrupt__ write of this task.
    name = interrupt({"question": "name?", "seen": list(state["steps"])})
    return {"steps": ["ask_name"], "name": name}


def _side_work(state: InterruptState) -> dict[str, Any]:
    return {"steps": ["side_work"]}


def _ask_color(state: InterruptState) -> dict[str, Any]:
    color = interrupt(f"favourite color of {state['name']}?")
    return {"steps": ["ask_color"], "color": color}


def _finish(state: InterruptState) -> dict[str, Any]:
    return {"steps": [f"done:{state['name']}:{state['color']}"]}


def build_interrupt_graph() -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(InterruptState)
    builder.add_node("start", _start)
    builder.add_node("ask_name", _ask_name)
    builder.add_node("side_work", _side_work)
    builder.add_node("ask_color", _ask_color)
    builder.add_node("finish", _finish)
    builder.add_edge(START, "start")
    builder.add_edge("start", "ask_name")
    builder.add_edge("start", "side_work")
    builder.add_edge(["ask_name", "side_work"], "ask_color")
    builder.add_edge("ask_color", "finish")
    builder.add_edge("finish", END)
    return builder


# --- Send fan-out: map-reduce with a list reducer -------------------------------------------


class MapReduceState(TypedDict, total=False):
    topics: list[str]
    results: Annotated[list[str], operator.add]
    summary: str


class WorkItem(TypedDict):
    topic: str


def _plan(state: MapReduceState) -> dict[str, Any]:
    return {"topics": [t.strip() for t in state["topics"]]}


def _fan_out(state: MapReduceState) -> list[Send]:
    return [Send("work", {"topic": topic}) for topic in state["topics"]]


def _work(item: WorkItem) -> dict[str, Any]:
    return {"results": [item["topic"].upper()]}


def _reduce(state: MapReduceState) -> dict[str, Any]:
    return {"summary": "+".join(sorted(state["results"]))}


def build_map_reduce_graph() -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(MapReduceState)
    builder.add_node("plan", _plan)
    builder.add_node("work", _work)
    builder.add_node("reduce", _reduce)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", _fan_out, ["work"])
    builder.add_edge("work", "reduce")
    builder.add_edge("reduce", END)
    return builder


# --- subgraphs: parent -> child -> grandchild, with an interrupt two levels down -------------


class FamilyState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    answer: str


def _grandchild_ask(state: FamilyState) -> dict[str, Any]:
    answer = interrupt("grandchild question")
    return {"log": [f"grandchild:{answer}"], "answer": answer}


def _child_before(state: FamilyState) -> dict[str, Any]:
    return {"log": ["child:before"]}


def _child_after(state: FamilyState) -> dict[str, Any]:
    return {"log": [f"child:after:{state['answer']}"]}


def _parent_before(state: FamilyState) -> dict[str, Any]:
    return {"log": ["parent:before"]}


def _parent_after(state: FamilyState) -> dict[str, Any]:
    return {"log": ["parent:after"]}


def build_subgraph_graph() -> StateGraph[Any, Any, Any, Any]:
    grandchild = StateGraph(FamilyState)
    grandchild.add_node("ask", _grandchild_ask)
    grandchild.add_edge(START, "ask")
    grandchild.add_edge("ask", END)

    child = StateGraph(FamilyState)
    child.add_node("child_before", _child_before)
    child.add_node("grandchild", grandchild.compile())
    child.add_node("child_after", _child_after)
    child.add_edge(START, "child_before")
    child.add_edge("child_before", "grandchild")
    child.add_edge("grandchild", "child_after")
    child.add_edge("child_after", END)

    parent = StateGraph(FamilyState)
    parent.add_node("parent_before", _parent_before)
    parent.add_node("child", child.compile())
    parent.add_node("parent_after", _parent_after)
    parent.add_edge(START, "parent_before")
    parent.add_edge("parent_before", "child")
    parent.add_edge("child", "parent_after")
    parent.add_edge("parent_after", END)
    return parent


# --- a linear graph for update_state and forks ------------------------------------------------


class LinearState(TypedDict, total=False):
    trail: Annotated[list[str], operator.add]
    note: str


def _step(name: str, key: str = "trail") -> Callable[[Any], dict[str, Any]]:
    def node(state: Any) -> dict[str, Any]:
        return {key: [f"{name}({len(state.get(key, []))})"]}

    node.__name__ = name
    return node


def build_linear_graph() -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(LinearState)
    for name in ("a", "b", "c"):
        builder.add_node(name, _step(name))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder


# --- a failing node: the error is stored as a pending write, the thread is fixed and resumed ---


class FlakyState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    fixed: bool


class NodeFailed(RuntimeError):
    pass


def _flaky(state: FlakyState, config: RunnableConfig) -> dict[str, Any]:
    if not state.get("fixed"):
        attempt = config["configurable"].get("attempt", 1)
        raise NodeFailed(f"attempt {attempt}: not fixed after {len(state['log'])} entries")
    return {"log": ["flaky"]}


def build_flaky_graph() -> StateGraph[Any, Any, Any, Any]:
    # One task per superstep: with parallel siblings, which of them is cancelled by the
    # failure depends on timing, and histories would differ between runs.
    builder = StateGraph(FlakyState)
    builder.add_node("steady", _step("steady", "log"))
    builder.add_node("flaky", _flaky)
    builder.add_node("end", _step("end", "log"))
    builder.add_edge(START, "steady")
    builder.add_edge("steady", "flaky")
    builder.add_edge("flaky", "end")
    builder.add_edge("end", END)
    return builder


# --- DeltaChannel: a growing list stored as deltas, with snapshots every 3 updates ------------


def _extend(state: list[str], batches: Sequence[list[str]]) -> list[str]:
    # Batching-invariant, as DeltaChannel requires: folding batches one by one or all at once
    # gives the same list.
    out = list(state)
    for batch in batches:
        out.extend(batch)
    return out


class DeltaState(TypedDict, total=False):
    items: Annotated[list[str], DeltaChannel(_extend, snapshot_frequency=3)]
    rounds: int


def _grow(state: DeltaState) -> dict[str, Any]:
    rounds = state.get("rounds", 0) + 1
    return {"items": [f"r{rounds}:{len(state.get('items', []))}"], "rounds": rounds}


def _fan_out_adds(state: DeltaState) -> list[Send]:
    return [Send("add", {"items": [], "rounds": state["rounds"] * 10 + i}) for i in range(3)]


def _add(state: DeltaState) -> dict[str, Any]:
    # Parallel writers of an order-sensitive reducer: replaying the stored writes gives the
    # live value only if they come back in writes_sort_key order.
    return {"items": [f"add{state['rounds']}"]}


def _again(state: DeltaState) -> str:
    return "grow" if state["rounds"] % 3 else END


def build_delta_graph() -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(DeltaState)
    builder.add_node("grow", _grow)
    builder.add_node("add", _add)
    builder.add_node("check", lambda state: {})
    builder.add_edge(START, "grow")
    builder.add_conditional_edges("grow", _fan_out_adds, ["add"])
    builder.add_edge("add", "check")
    builder.add_conditional_edges("check", _again, ["grow", END])
    return builder


# --- a long thread: more checkpoints than one alist page, subgraph runs along the way ---------


class LongState(TypedDict, total=False):
    n: int
    seen: str


def _tick(state: LongState) -> dict[str, Any]:
    return {"n": state.get("n", 0) + 1}


def _after_tick(state: LongState) -> str:
    if state["n"] >= LONG_RUN_TICKS:
        return END
    return "visit" if state["n"] % 15 == 0 else "tick"


def _look(state: LongState) -> dict[str, Any]:
    return {"seen": f"visit@{state['n']}"}


def _note(state: LongState) -> dict[str, Any]:
    return {"seen": f"{state['seen']}+noted"}


LONG_RUN_TICKS = 110


def build_long_graph() -> StateGraph[Any, Any, Any, Any]:
    visit = StateGraph(LongState)
    visit.add_node("look", _look)
    visit.add_node("note", _note)
    visit.add_edge(START, "look")
    visit.add_edge("look", "note")
    visit.add_edge("note", END)

    builder = StateGraph(LongState)
    builder.add_node("tick", _tick)
    builder.add_node("visit", visit.compile())
    builder.add_edge(START, "tick")
    builder.add_conditional_edges("tick", _after_tick, ["tick", "visit", END])
    builder.add_edge("visit", "tick")
    return builder


# --- values JSON cannot hold as upstream stores them: NUL in text, NaN/Infinity, huge floats ---


class OddState(TypedDict, total=False):
    text: str
    number: float
    numbers: list[float]
    trail: Annotated[list[str], operator.add]


def _odd_first(state: OddState) -> dict[str, Any]:
    return {"text": "tab\tand\x00nul", "number": float("inf"), "trail": ["first\x00"]}


def _odd_second(state: OddState) -> dict[str, Any]:
    return {"number": float("-inf"), "numbers": [float("nan"), -0.0, 1e300]}


def build_odd_values_graph() -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(OddState)
    builder.add_node("first", _odd_first)
    builder.add_node("second", _odd_second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    return builder


class FloatState(TypedDict, total=False):
    plain: float
    big: float
    huge: float
    negative_zero: float
    tiny: float


def _floats(state: FloatState) -> dict[str, Any]:
    # Finite floats that JSON can write: but JSONB keeps numbers as `numeric`, which prints
    # 1e16 as 10000000000000000 (read back as an int) and has no negative zero.
    return {"plain": 1.5, "big": 1e16, "huge": 2.5e300, "negative_zero": -0.0, "tiny": 5e-324}


def build_float_graph() -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(FloatState)
    builder.add_node("floats", _floats)
    builder.add_edge(START, "floats")
    builder.add_edge("floats", END)
    return builder


def exact(value: Any) -> Any:
    """``value`` with every float as (type, repr): NaN equals NaN, -0.0 differs from 0.0, and
    1e16 differs from 10**16."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(exact(v) for v in value)
    return value


# --- scripts: the calls a user makes on one thread, as a list of steps ------------------------

Graph = CompiledStateGraph[Any, Any, Any, Any]
Step = Callable[[Graph, RunnableConfig], Awaitable[Any]]


@dataclass(frozen=True)
class Invoke:
    """``graph.ainvoke(value, thread config + config, interrupt_before=...)`` (or its sync twin)."""

    value: Any
    config: RunnableConfig | None = None
    interrupt_before: list[str] | None = None

    async def __call__(self, graph: Graph, thread: RunnableConfig) -> Any:
        return await graph.ainvoke(
            self.value, {**thread, **(self.config or {})}, interrupt_before=self.interrupt_before
        )

    def sync(self, graph: Graph, thread: RunnableConfig) -> Any:
        return graph.invoke(
            self.value, {**thread, **(self.config or {})}, interrupt_before=self.interrupt_before
        )


@dataclass(frozen=True)
class Update:
    """``graph.aupdate_state(thread config, values, as_node=...)`` (or its sync twin)."""

    values: dict[str, Any]
    as_node: str | None = None

    async def __call__(self, graph: Graph, thread: RunnableConfig) -> Any:
        return await graph.aupdate_state(thread, self.values, as_node=self.as_node)

    def sync(self, graph: Graph, thread: RunnableConfig) -> Any:
        return graph.update_state(thread, self.values, as_node=self.as_node)


@dataclass(frozen=True)
class InvokeFailing:
    """An invoke on the flaky graph that must fail (or its sync twin)."""

    value: Any
    attempt: int

    def _config(self, config: RunnableConfig) -> RunnableConfig:
        return {**config, "configurable": {**config["configurable"], "attempt": self.attempt}}

    async def __call__(self, graph: Graph, config: RunnableConfig) -> Any:
        try:
            await graph.ainvoke(self.value, self._config(config))
        except NodeFailed as exc:
            return exc
        raise AssertionError("the flaky node did not fail")

    def sync(self, graph: Graph, config: RunnableConfig) -> Any:
        try:
            graph.invoke(self.value, self._config(config))
        except NodeFailed as exc:
            return exc
        raise AssertionError("the flaky node did not fail")


def _invoke_failing(value: Any, attempt: int) -> InvokeFailing:
    return InvokeFailing(value, attempt)


def _before_b(history: Sequence[StateSnapshot]) -> StateSnapshot:
    return next(s for s in history if s.next == ("b",) and s.metadata["source"] == "loop")


class ForkFromBeforeB:
    """Replay from the checkpoint taken before "b" ran (as is), then fork it with an edit and
    run that branch: two more branches on the thread (or the same, synchronously)."""

    async def __call__(self, graph: Graph, config: RunnableConfig) -> Any:
        before_b = _before_b([s async for s in graph.aget_state_history(config)])
        await graph.ainvoke(None, before_b.config)
        forked = await graph.aupdate_state(before_b.config, {"note": "fork"})
        return await graph.ainvoke(None, forked)

    def sync(self, graph: Graph, config: RunnableConfig) -> Any:
        before_b = _before_b(list(graph.get_state_history(config)))
        graph.invoke(None, before_b.config)
        forked = graph.update_state(before_b.config, {"note": "fork"})
        return graph.invoke(None, forked)


_fork_from_before_b = ForkFromBeforeB()


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[], StateGraph[Any, Any, Any, Any]]
    steps: tuple[Step, ...]
    # Index of the first step of the second leg: before it the thread is paused (at an
    # interrupt, an interrupt_before or a failed node); resuming on another saver starts there.
    resume_at: int | None = None


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "interrupt",
            build_interrupt_graph,
            (
                Invoke({"steps": ["input"]}),
                Invoke(Command(resume="ada")),
                Invoke(Command(resume="teal")),
            ),
            resume_at=1,
        ),
        Scenario(
            "send",
            build_map_reduce_graph,
            # A second run on the same thread appends to the reduced list.
            (Invoke({"topics": ["a", " b", "c ", "d"]}), Invoke({"topics": [" extra "]})),
        ),
        Scenario(
            "subgraph",
            build_subgraph_graph,
            (Invoke({"log": ["input"]}), Invoke(Command(resume="forty-two"))),
            resume_at=1,
        ),
        Scenario(
            "update_state",
            build_linear_graph,
            (
                Invoke({"trail": ["input"]}, interrupt_before=["b"]),
                # A plain update (attributed to the last node that ran), then one as if "b"
                # had run, which moves the thread past "b".
                Update({"note": "edited", "trail": ["patched"]}),
                Update({"trail": ["as-b"]}, as_node="b"),
                Invoke(None),
            ),
            resume_at=1,
        ),
        Scenario(
            "error",
            build_flaky_graph,
            (
                _invoke_failing({"log": ["input"]}, attempt=1),
                # Failing again on the same checkpoint replaces the stored error.
                _invoke_failing(None, attempt=2),
                Update({"fixed": True}),
                Invoke(None),
            ),
            resume_at=2,
        ),
        Scenario(
            "long",
            build_long_graph,
            (Invoke({"n": 0}, config={"recursion_limit": 1000}),),
        ),
        Scenario("fork", build_linear_graph, (Invoke({"trail": ["input"]}), _fork_from_before_b)),
        Scenario(
            "delta",
            build_delta_graph,
            (
                Invoke({"items": ["seed"]}),
                Invoke({"items": ["second"]}),
                Update({"items": ["manual"]}),
                Invoke({"items": ["third"]}),
            ),
        ),
    )
}


# Not in SCENARIOS: upstream's saver cannot store these values (NUL in a JSONB string, NaN in
# JSON), so they only run on ours and on the reference saver.
ODD_VALUES = Scenario(
    "odd_values",
    build_odd_values_graph,
    (
        Invoke({"text": "nul\x00inside", "number": float("nan")}),
        Update({"text": "edited\x00again"}),
    ),
)
FLOATS = Scenario("floats", build_float_graph, (Invoke({"plain": 0.5}),))


def thread_config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def compile_scenario(scenario: Scenario, checkpointer: BaseCheckpointSaver[Any]) -> Graph:
    return scenario.build().compile(checkpointer=checkpointer)


async def run_steps(
    scenario: Scenario,
    checkpointer: BaseCheckpointSaver[Any],
    thread_id: str,
    start: int = 0,
    stop: int | None = None,
) -> list[dict[str, Any]]:
    """Runs ``steps[start:stop]`` on the thread; returns the state (with subgraphs) after each."""
    graph = compile_scenario(scenario, checkpointer)
    config = thread_config(thread_id)
    observed = []
    for step in scenario.steps[start:stop]:
        await step(graph, config)
        observed.append(await normalized_state(graph, config))
    return observed


def run_steps_sync(
    scenario: Scenario, checkpointer: BaseCheckpointSaver[Any], thread_id: str
) -> list[dict[str, Any]]:
    """:func:`run_steps` through the sync graph API (``invoke``, ``update_state``, ...)."""
    graph = compile_scenario(scenario, checkpointer)
    config = thread_config(thread_id)
    observed = []
    for step in scenario.steps:
        step.sync(graph, config)  # type: ignore[attr-defined]
        observed.append(normal_snapshot(graph.get_state(config, subgraphs=True)))
    return observed


# --- normal form --------------------------------------------------------------------------


def _ns_shape(checkpoint_ns: str) -> str:
    # "child:<task id>|grandchild:<task id>" -> "child|grandchild": task ids derive from
    # checkpoint ids, which are time-based.
    return "|".join(part.split(":", 1)[0] for part in checkpoint_ns.split("|"))


def _normal_metadata(metadata: Any) -> dict[str, Any]:
    out = {k: v for k, v in dict(metadata or {}).items() if k not in ("run_id", "thread_id")}
    if "parents" in out:
        out["parents"] = sorted(_ns_shape(ns) for ns in out["parents"])
    return out


def _normal_task(task: Any) -> dict[str, Any]:
    state = task.state
    if isinstance(state, StateSnapshot):
        normal_state: Any = normal_snapshot(state)
    elif state is not None:
        normal_state = _ns_shape(state["configurable"].get("checkpoint_ns", ""))
    else:
        normal_state = None
    return {
        "name": task.name,
        "path": task.path,
        "error": repr(task.error) if task.error is not None else None,
        "interrupts": [i.value for i in task.interrupts],
        "state": normal_state,
        "result": task.result,
    }


def normal_snapshot(snapshot: StateSnapshot) -> dict[str, Any]:
    """A snapshot without ids or timestamps (parent links are handled by the history)."""
    return {
        "values": snapshot.values,
        "next": snapshot.next,
        "metadata": _normal_metadata(snapshot.metadata),
        "tasks": [_normal_task(t) for t in snapshot.tasks],
        "interrupts": [i.value for i in snapshot.interrupts],
        "ns": _ns_shape(snapshot.config["configurable"].get("checkpoint_ns", "")),
    }


def normal_history(history: Sequence[StateSnapshot]) -> list[dict[str, Any]]:
    """Snapshots newest first, each with the position of its parent in the same list."""
    position = {s.config["configurable"]["checkpoint_id"]: i for i, s in enumerate(history)}
    out = []
    for snapshot in history:
        item = normal_snapshot(snapshot)
        parent = snapshot.parent_config
        item["parent"] = (
            position.get(parent["configurable"]["checkpoint_id"], "outside")
            if parent is not None
            else None
        )
        out.append(item)
    return out


async def normalized_history(graph: Graph, config: RunnableConfig) -> list[dict[str, Any]]:
    return normal_history([s async for s in graph.aget_state_history(config)])


async def normalized_state(graph: Graph, config: RunnableConfig) -> dict[str, Any]:
    return normal_snapshot(await graph.aget_state(config, subgraphs=True))


async def namespace_histories(
    graph: Graph, checkpointer: BaseCheckpointSaver[Any], thread_id: str
) -> dict[str, list[dict[str, Any]]]:
    """The normalized history of every checkpoint namespace of the thread.

    Keyed by namespace shape; a subgraph run several times has one namespace per run, keyed
    ``shape``, ``shape#1``, ... in the order the runs started.
    """
    tuples = [t async for t in checkpointer.alist(thread_config(thread_id))]
    return {
        key: await normalized_history(graph, config)
        for key, config in _namespace_configs(tuples, thread_id)
    }


def namespace_histories_sync(
    graph: Graph, checkpointer: BaseCheckpointSaver[Any], thread_id: str
) -> dict[str, list[dict[str, Any]]]:
    """:func:`namespace_histories` through the sync API (``list``, ``get_state_history``)."""
    tuples = list(checkpointer.list(thread_config(thread_id)))
    return {
        key: normal_history(list(graph.get_state_history(config)))
        for key, config in _namespace_configs(tuples, thread_id)
    }


def _namespace_configs(
    tuples: Sequence[CheckpointTuple], thread_id: str
) -> list[tuple[str, RunnableConfig]]:
    first_checkpoint: dict[str, str] = {}
    for t in tuples:
        ns, checkpoint_id = t.config["configurable"]["checkpoint_ns"], t.checkpoint["id"]
        first_checkpoint[ns] = min(checkpoint_id, first_checkpoint.get(ns, checkpoint_id))
    out: list[tuple[str, RunnableConfig]] = []
    for ns in sorted(first_checkpoint, key=lambda ns: (_ns_shape(ns), first_checkpoint[ns])):
        shape = _ns_shape(ns)
        runs = sum(1 for key, _ in out if key.split("#")[0] == shape)
        config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        out.append((f"{shape}#{runs}" if runs else shape, config))
    return out
