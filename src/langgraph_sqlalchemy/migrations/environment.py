"""The Alembic environment shared by ``alembic/env.py`` (repo root) and the packaged one.

It serves three callers:

* :mod:`langgraph_sqlalchemy.migrations` (``setup()``, the CLI): hands over an open connection in
  ``config.attributes["connection"]``, already holding the migration advisory lock.
* ``alembic upgrade head`` from the repo root (or ``alembic -n langgraph_sqlalchemy`` in a host
  app): reads the URL from ``-x url=…``, then ``DATABASE_URL``, then ``sqlalchemy.url``.
* ``alembic upgrade head --sql``: renders the DDL offline, no database needed.

The schema comes from ``-x schema=…`` or ``config.attributes["schema"]``. The version table is
our own (``langgraph_sqlalchemy_version``) so a host's ``alembic_version`` is never touched.

Each revision applied is logged at INFO on ``langgraph_sqlalchemy.migrations`` (the CLI shows
these lines on stderr; a host sees them where its logging sends that logger).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema

from langgraph_sqlalchemy.migrations.naming import (
    VERSION_TABLE,
    include_name_for,
    include_object_for,
)
from langgraph_sqlalchemy.schema import get_tables, validate_schema_name

logger = logging.getLogger("langgraph_sqlalchemy.migrations")


def _x_args() -> dict[str, str]:
    return context.get_x_argument(as_dictionary=True)


def target_schema() -> str | None:
    """The Postgres schema the migrations build in (``None``: unqualified, as upstream)."""
    config = context.config
    if "schema" in config.attributes:
        return validate_schema_name(config.attributes["schema"])
    return validate_schema_name(_x_args().get("schema") or os.environ.get("LANGGRAPH_SCHEMA"))


def _database_url() -> str:
    url = (
        _x_args().get("url")
        or os.environ.get("DATABASE_URL")
        or context.config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit(
            "langgraph-sqlalchemy migrations need a database URL: set DATABASE_URL or pass "
            "-x url=postgresql://user@host/db"
        )
    return url


def _configure(**kwargs: Any) -> None:
    schema = target_schema()
    context.configure(
        target_metadata=get_tables(schema).metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        include_schemas=schema is not None,
        include_name=include_name_for(schema),
        include_object=include_object_for(schema),
        compare_type=True,
        **kwargs,
    )


class _RevisionLog:
    """An ``on_version_apply`` callback: one INFO line per revision, with its duration."""

    def __init__(self) -> None:
        self.mark = time.monotonic()

    def __call__(self, *, step: Any, **_: Any) -> None:
        now, started = time.monotonic(), self.mark
        self.mark = now
        if step.is_stamp:
            return
        revision = step.up_revision
        doc = " ".join((revision.doc or "").split()) if revision is not None else ""
        logger.info(
            "%s %s -> %s in %.2fs%s",
            "upgrade" if step.is_upgrade else "downgrade",
            ", ".join(step.source_revision_ids) or "base",
            ", ".join(step.destination_revision_ids) or "base",
            now - started,
            f": {doc}" if doc else "",
        )


def _run_on(connection: Connection) -> None:
    schema = target_schema()
    if schema is not None:
        # The version table lives in the schema, so it must exist before Alembic looks.
        connection.execute(CreateSchema(schema, if_not_exists=True))
        connection.commit()
    _configure(
        connection=connection, transaction_per_migration=True, on_version_apply=_RevisionLog()
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online_from_url() -> None:
    from langgraph_sqlalchemy.engine import create_engine

    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_on)
            await conn.commit()
    finally:
        await engine.dispose()


def run() -> None:
    """Entry point called from ``env.py``."""
    if context.is_offline_mode():
        schema = target_schema()
        _configure(url="postgresql://", literal_binds=True, dialect_name="postgresql",
                   transaction_per_migration=True)
        with context.begin_transaction():
            if schema is not None:
                context.execute(CreateSchema(schema, if_not_exists=True))
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
    else:
        asyncio.run(_run_online_from_url())
