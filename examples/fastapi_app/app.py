"""A FastAPI service with LangGraph persistence on the app's own AsyncEngine.

One engine is shared by the app's own queries, the checkpoint saver and the store. Start-up runs
two migration histories side by side: the app's (its `orders` table, `alembic_version`) and
langgraph-sqlalchemy's (`langgraph_sqlalchemy_version`).

    pip install -e ".[examples]"      # fastapi and uvicorn, from a clone of this repository
    DATABASE_URL=postgresql://… uvicorn examples.fastapi_app.app:app
"""

from __future__ import annotations

import operator
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

from alembic import command
from alembic.config import Config
from fastapi import FastAPI, HTTPException, Request
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore, migrations
from langgraph_sqlalchemy.engine import create_engine

from .models import orders

HERE = Path(__file__).resolve().parent


class ChatState(TypedDict):
    messages: Annotated[list[str], operator.add]


def build_graph() -> StateGraph[ChatState]:
    def reply(state: ChatState) -> dict[str, Any]:
        return {"messages": [f"echo: {state['messages'][-1]}"]}

    graph: StateGraph[ChatState] = StateGraph(ChatState)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    graph.add_edge("reply", END)
    return graph


class Message(BaseModel):
    text: str


class OrderIn(BaseModel):
    item: str
    thread_id: str
    fail_after_checkpoint: bool = False


class Memory(BaseModel):
    key: str
    text: str
    topic: str


def _upgrade_app_schema(connection: Connection) -> None:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def create_app(database_url: str | None = None) -> FastAPI:
    url = database_url or os.environ["DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url, pool_size=5, max_overflow=5)
        async with engine.connect() as conn:  # the app's own history
            await conn.run_sync(_upgrade_app_schema)
            await conn.commit()
        await migrations.upgrade(engine)  # ours, in its own version table
        app.state.engine = engine
        app.state.saver = AsyncSQLAlchemySaver(engine)
        app.state.store = AsyncSQLAlchemyStore(engine)
        app.state.graph = build_graph().compile(checkpointer=app.state.saver)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/threads/{thread_id}/messages")
    async def post_message(thread_id: str, message: Message, request: Request) -> dict[str, Any]:
        graph = request.app.state.graph
        result = await graph.ainvoke(
            {"messages": [message.text]}, {"configurable": {"thread_id": thread_id}}
        )
        return {"messages": result["messages"]}

    @app.get("/threads/{thread_id}/history")
    async def history(thread_id: str, request: Request) -> dict[str, Any]:
        saver: AsyncSQLAlchemySaver = request.app.state.saver
        items = [t async for t in saver.alist({"configurable": {"thread_id": thread_id}})]
        return {"checkpoints": len(items)}

    @app.post("/orders")
    async def place_order(order: OrderIn, request: Request) -> dict[str, Any]:
        """The order row and the agent's checkpoints commit together, or not at all."""
        engine = request.app.state.engine
        try:
            async with engine.connect() as conn, conn.begin():
                order_id = (
                    await conn.execute(
                        orders.insert()
                        .values(item=order.item, thread_id=order.thread_id)
                        .returning(orders.c.id)
                    )
                ).scalar_one()
                saver = AsyncSQLAlchemySaver(conn)  # joins this transaction
                graph = build_graph().compile(checkpointer=saver)
                await graph.ainvoke(
                    {"messages": [f"order {order.item}"]},
                    {"configurable": {"thread_id": order.thread_id}},
                )
                if order.fail_after_checkpoint:
                    raise RuntimeError("payment declined")
        except RuntimeError as exc:
            raise HTTPException(status_code=402, detail=str(exc)) from exc
        return {"order_id": order_id}

    @app.get("/orders/count")
    async def order_count(request: Request) -> dict[str, int]:
        async with request.app.state.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(orders))).scalar_one()
        return {"orders": int(count)}

    @app.put("/users/{user}/memories")
    async def put_memory(user: str, memory: Memory, request: Request) -> dict[str, str]:
        store: AsyncSQLAlchemyStore = request.app.state.store
        await store.aput(("users", user), memory.key, {"text": memory.text, "topic": memory.topic})
        return {"stored": memory.key}

    @app.get("/users/{user}/memories")
    async def find_memories(user: str, topic: str, request: Request) -> list[dict[str, Any]]:
        store: AsyncSQLAlchemyStore = request.app.state.store
        items = await store.asearch(("users", user), filter={"topic": topic})
        return [{"key": i.key, **i.value} for i in items]

    return app
