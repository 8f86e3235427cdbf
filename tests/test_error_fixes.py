"""Errors that name the fix: a missing schema or vector layer, an unreachable server."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fake_embeddings import HashingEmbeddings
from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore
from langgraph_sqlalchemy.db import RetryPolicy
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import DatabaseError, DatabaseUnavailableError

CONFIG: Any = {"configurable": {"thread_id": "t-1", "checkpoint_ns": ""}}


async def test_saver_and_store_on_an_unmigrated_database_say_to_set_up(
    new_database: Callable[[], Awaitable[str]],
) -> None:
    engine = create_engine(await new_database())
    try:
        with pytest.raises(DatabaseError) as saver_error:
            await AsyncSQLAlchemySaver(engine).aget_tuple(CONFIG)
        with pytest.raises(DatabaseError) as store_error:
            await AsyncSQLAlchemyStore(engine).aget(("users",), "k")
    finally:
        await engine.dispose()
    for error, table in ((saver_error, "checkpoints"), (store_error, "store")):
        message = str(error.value)
        assert "42P01" in message and f'"{table}"' in message
        assert "setup()" in message and "langgraph-sqlalchemy upgrade" in message
        assert error.value.__cause__ is not None


@pytest.mark.vector
async def test_a_missing_vector_layer_names_the_vectors_command(engine: AsyncEngine) -> None:
    # Migrated (the engine fixture), but the store's vector layer was never created.
    store = AsyncSQLAlchemyStore(
        engine, index={"dims": 8, "embed": HashingEmbeddings(8), "fields": ["text"]}
    )
    with pytest.raises(DatabaseError) as error:
        await store.aput(("docs",), "a", {"text": "hello"})
    message = str(error.value)
    assert '"store_vectors"' in message
    assert "langgraph-sqlalchemy vectors --dims N" in message and "setup()" in message
    # Nothing of the failed batch was written, and setup() is the fix indeed.
    assert await store.aget(("docs",), "a") is None
    await store.setup()
    await store.aput(("docs",), "a", {"text": "hello"})
    found = await store.asearch(("docs",), query="hello")
    assert [item.key for item in found] == ["a"]


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "where"),
    [
        (f"postgresql://postgres@127.0.0.1:{_closed_port()}/x", "127.0.0.1:"),
        ("postgresql://postgres@/x?host=/nonexistent/socket/dir", "socket directory /nonexistent"),
    ],
    ids=["tcp", "socket"],
)
async def test_a_server_never_reached_fails_fast_naming_the_address(url: str, where: str) -> None:
    engine = create_engine(url)
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailableError) as error:
            await AsyncSQLAlchemySaver(engine).aget_tuple(CONFIG)
    finally:
        await engine.dispose()
    elapsed = time.monotonic() - started
    # The default policy would retry for 4.6-9.2 s; a server never reached gets about one.
    assert elapsed < RetryPolicy().first_contact_seconds + 1.0, elapsed
    message = str(error.value)
    assert "could not reach PostgreSQL at" in message and where in message
    assert "is the server running" in message
