"""The table report shared by ``langgraph-sqlalchemy stats`` and the demo, and the import
layering it exists for (the demo does not import the CLI)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemyStore, migrations
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.schema import TABLE_NAMES
from langgraph_sqlalchemy.stats import human_bytes, table_stats


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 kB"),
        (1536, "1.5 kB"),
        (5 * 1024**2, "5.0 MB"),
        (3 * 1024**3, "3.0 GB"),
        (2048 * 1024**3, "2048.0 GB"),
    ],
)
def test_human_bytes(size: int, shown: str) -> None:
    assert human_bytes(size) == shown


async def test_table_stats_counts_rows_and_sizes(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine)
    for i in range(3):
        await store.aput(("stats",), f"k{i}", {"i": i})
    async with engine.connect() as conn:
        found = {table.name: table for table in await table_stats(conn)}
        expected_size = (
            await conn.execute(text("SELECT pg_total_relation_size('store')"))
        ).scalar_one()
    assert list(found) == list(TABLE_NAMES)
    assert found["store"].rows == 3
    assert found["store"].size_bytes == expected_size
    assert found["checkpoints"].rows == 0
    # The engine fixture drops the vector layer: reported absent, not an error.
    assert found["store_vectors"].rows is None and found["store_vectors"].size_bytes is None


async def test_table_stats_in_a_schema_reports_missing_tables_as_absent(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    url = await new_database()
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine, schema="lgsa_stats")
        async with engine.connect() as conn:
            in_schema = {t.name: t for t in await table_stats(conn, "lgsa_stats")}
            unqualified = await table_stats(conn)
    finally:
        await engine.dispose()
    assert in_schema["checkpoints"].rows == 0
    assert in_schema["checkpoints"].size_bytes is not None
    # Nothing was migrated outside the schema.
    assert all(t.rows is None and t.size_bytes is None for t in unqualified)


def test_demo_and_cli_do_not_import_each_other() -> None:
    code = (
        "import sys\n"
        "import langgraph_sqlalchemy.demo\n"
        "assert 'langgraph_sqlalchemy.cli' not in sys.modules, 'the demo imported the CLI'\n"
        "import langgraph_sqlalchemy.cli\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
