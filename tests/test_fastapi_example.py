"""The FastAPI example, driven over HTTP (httpx's ASGI transport) on a fresh database."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine

pytest.importorskip("fastapi")

from examples.fastapi_app.app import create_app


async def test_app_shares_one_engine_and_two_migration_histories(fresh_database_url: str) -> None:
    app = create_app(fresh_database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            first = await client.post("/threads/t1/messages", json={"text": "hi"})
            assert first.status_code == 200, first.text
            second = await client.post("/threads/t1/messages", json={"text": "again"})
            assert second.json()["messages"] == ["hi", "echo: hi", "again", "echo: again"]
            history = (await client.get("/threads/t1/history")).json()
            assert history["checkpoints"] >= 4

            # The order row and the checkpoints commit in one transaction...
            ok = await client.post("/orders", json={"item": "book", "thread_id": "order-1"})
            assert ok.status_code == 200, ok.text
            assert (await client.get("/orders/count")).json() == {"orders": 1}
            assert (await client.get("/threads/order-1/history")).json()["checkpoints"] > 0

            # ...and roll back together.
            failed = await client.post(
                "/orders",
                json={"item": "lamp", "thread_id": "order-2", "fail_after_checkpoint": True},
            )
            assert failed.status_code == 402
            assert (await client.get("/orders/count")).json() == {"orders": 1}
            assert (await client.get("/threads/order-2/history")).json()["checkpoints"] == 0

            put = await client.put(
                "/users/ada/memories",
                json={"key": "m1", "text": "likes noodles", "topic": "food"},
            )
            assert put.status_code == 200, put.text
            await client.put(
                "/users/ada/memories", json={"key": "m2", "text": "has a cat", "topic": "pets"}
            )
            found = (await client.get("/users/ada/memories", params={"topic": "food"})).json()
            assert found == [{"key": "m1", "text": "likes noodles", "topic": "food"}]

    engine = create_engine(fresh_database_url)
    try:
        async with engine.connect() as conn:
            app_rev = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert app_rev == "app_0001"
        assert await migrations.is_at_head(engine)
    finally:
        await engine.dispose()
