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


def test_the_examples_extra_declares_everything_the_example_imports() -> None:
    """`pip install "langgraph-sqlalchemy[examples]"` is enough to run the example: each
    third-party module it imports comes from a distribution the package or that extra needs."""
    import ast
    import sys
    from importlib import metadata
    from pathlib import Path

    from packaging.requirements import Requirement

    declared: set[str] = set()
    for line in metadata.requires("langgraph-sqlalchemy") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": "examples"}):
            declared.add(requirement.name.lower().replace("_", "-"))
    # The uvicorn command line in the example's docstring runs it.
    assert "uvicorn" in declared

    def closure(names: set[str]) -> set[str]:
        """The declared distributions and everything they require (what pip installs)."""
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                requirements = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                continue
            for line in requirements:
                requirement = Requirement(line)
                if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                    todo.append(requirement.name.lower().replace("_", "-"))
        return seen

    installed_with_it = closure(declared)
    providers = metadata.packages_distributions()
    root = Path(__file__).resolve().parents[1] / "examples" / "fastapi_app"
    missing: set[str] = set()
    for source in root.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                local = (root / f"{top}.py").exists()  # the example's own module
                if local or top in sys.stdlib_module_names or top in (
                    "examples", "langgraph_sqlalchemy"
                ):
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
                if not dists & installed_with_it:
                    missing.add(f"{top} ({source.name})")
    assert not missing, f"imported by the example but not declared: {sorted(missing)}"
