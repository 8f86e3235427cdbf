"""The example app's Alembic environment: one AsyncEngine, our tables excluded from autogenerate."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from langgraph_sqlalchemy.engine import normalize_url
from langgraph_sqlalchemy.migrations import is_our_table

try:  # imported as part of the example package, or with the example dir on sys.path
    from examples.fastapi_app.models import metadata
except ImportError:  # pragma: no cover
    from models import metadata  # type: ignore[no-redef]


def include_name(name, type_, parent_names):  # type: ignore[no-untyped-def]
    # langgraph-sqlalchemy owns its tables and their history; never diff or drop them here.
    return not (type_ == "table" and is_our_table(name))


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, include_name=include_name
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"]
    engine = create_async_engine(normalize_url(url))
    async with engine.connect() as conn:
        await conn.run_sync(run_on)
        await conn.commit()
    await engine.dispose()


if context.config.attributes.get("connection") is not None:
    run_on(context.config.attributes["connection"])
else:
    asyncio.run(run_online())
