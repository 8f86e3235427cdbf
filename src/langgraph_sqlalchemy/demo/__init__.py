"""The demo behind ``langgraph-sqlalchemy demo``: what the library does, in one minute, offline.

It runs on the embedded PostgreSQL (or ``--database-url``) and shows, in order:

1. a conversation that survives a process restart (run the demo twice: it remembers);
2. a human-in-the-loop interrupt, resumed with ``Command(resume=...)``;
3. time travel through the checkpoint history, and a fork from an earlier checkpoint;
4. memories in the store, found by meaning (pgvector);
5. a TTL expiring;
6. what is now in the database.
"""

from __future__ import annotations

import asyncio
import operator
import time
from typing import Annotated, Any, TextIO, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from ..embedded import start_embedded
from ..engine import create_engine
from ..stats import human_bytes, table_stats
from .embeddings import describe_embeddings, load_embeddings

__all__ = ["run_demo"]


class ChatState(TypedDict):
    messages: Annotated[list[str], operator.add]


def _build_chat_graph() -> StateGraph[ChatState]:
    def bot(state: ChatState) -> dict[str, Any]:
        earlier = len([m for m in state["messages"] if m.startswith("user:")]) - 1
        return {"messages": [f"bot: I remember {earlier} earlier message(s) from you."]}

    graph: StateGraph[ChatState] = StateGraph(ChatState)
    graph.add_node("bot", bot)
    graph.add_edge(START, "bot")
    graph.add_edge("bot", END)
    return graph


class ApprovalState(TypedDict):
    request: str
    decision: str
    log: Annotated[list[str], operator.add]


def _build_approval_graph() -> StateGraph[ApprovalState]:
    def draft(state: ApprovalState) -> dict[str, Any]:
        return {"log": [f"drafted: {state['request']}"]}

    def ask_human(state: ApprovalState) -> dict[str, Any]:
        # Execution stops here; the checkpoint in Postgres is what lets another process (or a
        # web request hours later) resume it.
        decision = interrupt({"question": f"Approve '{state['request']}'?"})
        return {"decision": str(decision), "log": [f"human said: {decision}"]}

    def act(state: ApprovalState) -> dict[str, Any]:
        verdict = "sent" if state["decision"] == "approve" else "dropped"
        return {"log": [f"{verdict}: {state['request']}"]}

    graph: StateGraph[ApprovalState] = StateGraph(ApprovalState)
    graph.add_node("draft", draft)
    graph.add_node("ask_human", ask_human)
    graph.add_node("act", act)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "ask_human")
    graph.add_edge("ask_human", "act")
    graph.add_edge("act", END)
    return graph


def _heading(out: TextIO, text: str) -> None:
    print(f"\n== {text}", file=out)


async def _demo(url: str, embed: str | None, out: TextIO) -> int:
    from .. import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore

    embeddings, dims = load_embeddings(embed)
    engine = create_engine(url, pool_size=5, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        await saver.setup()
        # Another schema would be needed for other dimensions: a database holds one vector layer.
        store = AsyncSQLAlchemyStore(
            engine,
            index={"dims": dims, "embed": embeddings, "fields": ["text"]},
            ttl={"refresh_on_read": True, "omit_expired": True},
        )
        await store.setup()
        print(f"database: {engine.url.render_as_string(hide_password=True)}", file=out)
        print(f"embeddings: {describe_embeddings(embeddings, embed)}", file=out)

        # 1. A conversation that survives a restart.
        _heading(out, "1. A conversation that survives a process restart")
        chat = _build_chat_graph().compile(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": "demo-conversation"}}
        previous = await chat.aget_state(config)
        run_no = len([m for m in previous.values.get("messages", []) if m.startswith("user:")]) + 1
        result = await chat.ainvoke({"messages": [f"user: hello (demo run #{run_no})"]}, config)
        for message in result["messages"][-2:]:
            print(f"  {message}", file=out)
        if run_no == 1:
            print("  (run the demo again: the thread continues from the database)", file=out)

        # 2. Human in the loop.
        _heading(out, "2. A human-in-the-loop interrupt, resumed")
        approval = _build_approval_graph().compile(checkpointer=saver)
        hitl: Any = {"configurable": {"thread_id": f"demo-approval-{time.time_ns()}"}}
        await approval.ainvoke(
            ApprovalState(request="email the quarterly report", decision="", log=[]), hitl
        )
        state = await approval.aget_state(hitl)
        question = state.tasks[0].interrupts[0].value["question"]
        print(f"  paused at {state.next}: {question}", file=out)
        done = await approval.ainvoke(Command(resume="approve"), hitl)
        for line in done["log"]:
            print(f"  {line}", file=out)

        # 3. Time travel and a fork.
        _heading(out, "3. Time travel: the history, and a fork from an earlier checkpoint")
        history = [s async for s in approval.aget_state_history(hitl)]
        for snapshot in reversed(history):
            step = snapshot.metadata.get("step") if snapshot.metadata else None
            lines = len(snapshot.values.get("log", []))
            print(f"  step {step!s:>2}  next={snapshot.next!s:<16} log={lines} line(s)", file=out)
        before_human = next(s for s in history if s.next == ("ask_human",))
        forked = await approval.aupdate_state(before_human.config, {"request": "delete the report"})
        await approval.ainvoke(None, forked)
        fork_done = await approval.ainvoke(Command(resume="reject"), forked)
        print(
            f"  fork: {fork_done['log'][-1]} "
            f"(the original branch still says: {done['log'][-1]})",
            file=out,
        )

        # 4. Memories found by meaning.
        _heading(out, "4. Memories in the store, found by meaning")
        user = ("users", "ada", "memories")
        memories = {
            "food": "Ada loves spicy Sichuan noodles and dislikes olives.",
            "pet": "Ada has a grey cat called Turing who sleeps on the keyboard.",
            "work": "Ada is migrating the billing service from MySQL to PostgreSQL.",
            "travel": "Ada is flying to Lisbon for a conference in March.",
        }
        for key, text in memories.items():
            await store.aput(user, key, {"text": text})
        for query in ("what should I cook for her?", "which database migration is she doing?"):
            hits = await store.asearch(user, query=query, limit=2)
            print(f"  '{query}'", file=out)
            for hit in hits:
                print(f"      {hit.score:.3f}  {hit.value['text']}", file=out)

        # 5. A TTL expiring.
        _heading(out, "5. A TTL expiring")
        await store.aput(("demo", "sessions"), "otp", {"text": "one-time code 424242"}, ttl=0.02)
        present = await store.aget(("demo", "sessions"), "otp") is not None
        print(f"  just written: {present}", file=out)
        await asyncio.sleep(1.5)
        present = await store.aget(("demo", "sessions"), "otp") is not None
        print(f"  after 1.5 s (ttl 0.02 min): {present}", file=out)
        print(f"  swept {await store.sweep_ttl()} expired item(s)", file=out)

        # 6. What is in the database.
        _heading(out, "6. What is in the database")
        async with engine.connect() as conn:
            found = await table_stats(conn)
        for table in found:
            if table.rows is None or table.size_bytes is None:
                print(f"  {table.name:<24}{'-':>8}      {'absent':>10}", file=out)
            else:
                size = human_bytes(table.size_bytes)
                print(f"  {table.name:<24}{table.rows:>8} rows {size:>10}", file=out)
        return 0  # the command's exit status
    finally:
        await engine.dispose()


def run_demo(
    *, database_url: str | None, pgdata: str | None, embed: str | None, out: TextIO
) -> int:
    url = database_url or start_embedded(pgdata)
    return asyncio.run(_demo(url, embed, out))
