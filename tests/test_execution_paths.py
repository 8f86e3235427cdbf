"""The two ways a statement reaches the server, and when each is taken.

:meth:`Database.fetch` sends a single statement straight on the pooled asyncpg connection only
when nothing could observe the difference (:func:`unobserved`); everything else goes through
SQLAlchemy's ``AsyncConnection``, hot statements as SQL compiled once (``db.statements``). Here:

* the truth table of :func:`unobserved` (echo, the engine logger, a listener of every
  connection and dialect event, on the engine or its class, ``schema_translate_map``, the
  opt-out option), each case undone again;
* both paths give identical results for a saver story and a store story;
* connections killed under the shortcut are replaced without the caller noticing, and a
  cancelled call leaves nothing checked out of the pool;
* first contact with a server that refuses connections fails fast with the address, while a
  server that was reached and then went away gets the whole retry budget;
* every hot statement compiled by ``db.statements`` sends exactly the SQL and values that
  ``conn.execute(core_statement, params)`` sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ERROR, INTERRUPT
from langgraph.store.base import ListNamespacesOp, MatchCondition, SearchOp
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.events import ConnectionEvents, DialectEvents
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool
from sqlalchemy.pool.events import PoolEvents
from tests.faults.cluster import free_port

from checkpoint_factory import checkpoint
from langgraph_sqlalchemy import (
    AsyncSQLAlchemySaver,
    AsyncSQLAlchemyStore,
    DatabaseError,
    DatabaseUnavailableError,
)
from langgraph_sqlalchemy.checkpoint.repository import ListFilter, repository_for
from langgraph_sqlalchemy.db import OBSERVABLE_OPTION, BoundStatement, RetryPolicy, unobserved
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.schema import get_tables
from langgraph_sqlalchemy.store.filters import parse_filter
from langgraph_sqlalchemy.store.repository import StoreRepository

# --- unobserved(): the truth table -------------------------------------------------------------

CONNECTION_EVENTS = sorted(
    name for name in dir(ConnectionEvents) if not name.startswith("_") and name != "dispatch"
)
DIALECT_EVENTS = sorted(
    name for name in dir(DialectEvents) if not name.startswith("_") and name != "dispatch"
)


def _listener(*args: Any, **kwargs: Any) -> None:
    return None


@pytest.fixture
async def plain(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@contextlib.contextmanager
def logger_level(name: str, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def test_the_event_lists_are_not_empty() -> None:
    # Guards the parametrizations below against an SQLAlchemy that renamed its event classes.
    assert {"before_execute", "before_cursor_execute", "engine_connect"} <= set(CONNECTION_EVENTS)
    assert {"handle_error", "do_connect", "do_execute"} <= set(DIALECT_EVENTS)


async def test_a_plain_engine_is_unobserved(plain: AsyncEngine) -> None:
    assert unobserved(plain.sync_engine) is True


@pytest.mark.parametrize("echo", [True, "debug"])
async def test_echo_is_an_observer(database_url: str, echo: Any) -> None:
    engine = create_engine(database_url, echo=echo)
    try:
        assert unobserved(engine.sync_engine) is False
    finally:
        await engine.dispose()
        # echo installs a handler on SQLAlchemy's engine logger; leave logging as it was.
        logger = logging.getLogger("sqlalchemy.engine.Engine")
        logger.setLevel(logging.NOTSET)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


async def _sqlalchemy_logs_a_statement(engine: AsyncEngine) -> bool:
    """Whether SQLAlchemy itself writes an INFO record for a statement on ``engine`` (the
    oracle the logging cases of :func:`unobserved` must agree with)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name.startswith("sqlalchemy.engine") and record.levelno >= logging.INFO:
                records.append(record)

    handler = Collect(logging.NOTSET)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        root.removeHandler(handler)
    return bool(records)


@pytest.mark.parametrize(
    ("logger_name", "level"),
    [
        ("sqlalchemy.engine", logging.INFO),
        ("sqlalchemy.engine", logging.DEBUG),
        ("sqlalchemy.engine.Engine", logging.INFO),
        ("sqlalchemy", logging.INFO),
        ("sqlalchemy.engine", logging.WARNING),
        ("sqlalchemy.pool", logging.DEBUG),
        ("", logging.INFO),  # the root logger: SQLAlchemy's own logger stays at WARN
    ],
)
async def test_the_engine_logger_is_an_observer_exactly_when_sqlalchemy_logs(
    plain: AsyncEngine, logger_name: str, level: int
) -> None:
    with logger_level(logger_name, level):
        logs = await _sqlalchemy_logs_a_statement(plain)
        assert unobserved(plain.sync_engine) is (not logs)
    assert unobserved(plain.sync_engine) is True
    assert not await _sqlalchemy_logs_a_statement(plain)


async def test_a_named_engine_logger_is_an_observer(database_url: str) -> None:
    engine = create_engine(database_url, logging_name="lgsa_named")
    try:
        assert unobserved(engine.sync_engine) is True
        with logger_level("sqlalchemy.engine.Engine.lgsa_named", logging.INFO):
            assert await _sqlalchemy_logs_a_statement(engine)
            assert unobserved(engine.sync_engine) is False
        assert unobserved(engine.sync_engine) is True
    finally:
        await engine.dispose()


@pytest.mark.parametrize("name", CONNECTION_EVENTS + DIALECT_EVENTS)
async def test_a_listener_on_the_engine_is_an_observer(plain: AsyncEngine, name: str) -> None:
    target = plain.sync_engine
    event.listen(target, name, _listener)
    try:
        assert unobserved(target) is False
    finally:
        event.remove(target, name, _listener)
    assert unobserved(target) is True


@pytest.mark.parametrize("name", CONNECTION_EVENTS + DIALECT_EVENTS)
async def test_a_listener_on_the_engine_class_is_an_observer(
    database_url: str, plain: AsyncEngine, name: str
) -> None:
    """Class-level listeners count for engines created before and after them."""
    event.listen(Engine, name, _listener)
    later = create_engine(database_url)
    try:
        assert unobserved(plain.sync_engine) is False
        assert unobserved(later.sync_engine) is False
    finally:
        event.remove(Engine, name, _listener)
        await later.dispose()
    assert unobserved(plain.sync_engine) is True


POOL_EVENTS = sorted(
    name
    for name in dir(PoolEvents)
    if not name.startswith("_") and name not in ("dispatch", "connect", "first_connect")
)


@pytest.mark.parametrize("name", POOL_EVENTS)
async def test_a_pool_listener_is_an_observer(plain: AsyncEngine, name: str) -> None:
    """The shortcut returns its connection to the pool outside SQLAlchemy's greenlet, where a
    pool listener doing I/O could not run: any listener but connect's sends calls the
    observable way."""
    pool = plain.sync_engine.pool
    event.listen(pool, name, _listener)
    try:
        assert unobserved(plain.sync_engine) is False
    finally:
        event.remove(pool, name, _listener)
    assert unobserved(plain.sync_engine) is True


@pytest.mark.parametrize("name", ["connect", "first_connect"])
async def test_pool_connect_listeners_are_not_observers(plain: AsyncEngine, name: str) -> None:
    """They fire while a new connection is opened inside the checkout, alike on both paths
    (and the dialect itself listens to them on every engine)."""
    pool = plain.sync_engine.pool
    event.listen(pool, name, _listener)
    try:
        assert unobserved(plain.sync_engine) is True
    finally:
        event.remove(pool, name, _listener)


async def test_execution_options_that_make_an_engine_observable(plain: AsyncEngine) -> None:
    translated = plain.execution_options(schema_translate_map={None: "elsewhere"})
    opted_out = plain.execution_options(**{OBSERVABLE_OPTION: True})
    # (Not isolation_level or logging_token: SQLAlchemy applies those with an engine_connect
    # listener of its own on the option engine, which counts as an observer.)
    other = plain.execution_options(stream_results=False, max_row_buffer=10)
    assert unobserved(translated.sync_engine) is False
    assert unobserved(opted_out.sync_engine) is False
    assert unobserved(other.sync_engine) is True
    assert unobserved(plain.sync_engine) is True  # the base engine is unchanged


# --- both paths give the same answers ------------------------------------------------------------


def _swap(value: Any, old: str, new: str) -> Any:
    """``value`` with the string ``old`` replaced by ``new`` everywhere (thread ids, labels)."""
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {_swap(k, old, new): _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_swap(v, old, new) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def cfg(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


CHECKPOINTS = [checkpoint({"a": "x"}), checkpoint({"a": "y", "b": [1, 2]}), checkpoint()]


async def saver_story(saver: AsyncSQLAlchemySaver, thread: str) -> list[Any]:
    """Puts (with and without blobs), writes (first wins and latest wins), reads by id and
    latest, listings with filters, and the delta-channel history; every answer in order."""
    first, second, third = CHECKPOINTS
    out: list[Any] = []
    c1 = await saver.aput(
        cfg(thread), first, {"step": 0, "source": "input", "story": thread}, {"a": 1}
    )
    c2 = await saver.aput(
        c1, second, {"step": 1, "source": "loop", "story": thread}, {"a": 2, "b": 1}
    )
    c3 = await saver.aput(c2, third, {"step": 2, "source": "loop", "story": thread}, {})
    out += [c1, c2, c3]
    await saver.aput_writes(c2, [("a", "z"), ("b", [3])], "task-1", "path-1")
    await saver.aput_writes(c2, [("a", "ignored")], "task-1", "path-1")  # first wins
    await saver.aput_writes(c2, [(ERROR, "first"), (INTERRUPT, {"q": 1})], "task-2")
    await saver.aput_writes(c2, [(ERROR, "latest")], "task-2")  # special channels: latest wins
    for config in (cfg(thread), c1, c2, c3):
        out.append(await saver.aget_tuple(config))
    out.append([t async for t in saver.alist(cfg(thread))])
    out.append([t async for t in saver.alist(cfg(thread), filter={"source": "loop"})])
    out.append([t async for t in saver.alist(cfg(thread), before=c3, limit=1)])
    # Across threads (no config), narrowed to this story by its metadata.
    out.append([t async for t in saver.alist(None, filter={"story": thread, "step": 1})])
    out.append(await saver.aget_delta_channel_history(config=c3, channels=["a", "b"]))
    return out


async def store_story(store: AsyncSQLAlchemyStore, label: str) -> list[Any]:
    out: list[Any] = []
    await store.aput((label, "ada"), "profile", {"name": "Ada", "n": 1})
    await store.aput((label, "bob"), "profile", {"name": "Bob", "n": 2})
    await store.aput((label, "bob"), "note", {"text": "hi"}, ttl=60)
    item = await store.aget((label, "ada"), "profile")
    out.append(None if item is None else (item.namespace, item.key, item.value))
    for query in (
        {"filter": {"n": {"$gte": 2}}},
        {"filter": {"name": "Ada"}},
        {"limit": 1, "offset": 1},
    ):
        found = await store.asearch((label,), **query)  # type: ignore[arg-type]
        out.append(sorted((i.namespace, i.key, repr(i.value)) for i in found))
    out.append(await store.alist_namespaces(prefix=(label,)))
    out.append(await store.alist_namespaces(prefix=(label,), max_depth=1))
    await store.adelete((label, "bob"), "note")
    out.append(await store.aget((label, "bob"), "note"))
    return out


async def test_both_paths_answer_alike(plain: AsyncEngine) -> None:
    observable = plain.execution_options(**{OBSERVABLE_OPTION: True})
    assert unobserved(plain.sync_engine) and not unobserved(observable.sync_engine)
    shortcut_thread, observed_thread = f"s-{uuid.uuid4().hex}", f"o-{uuid.uuid4().hex}"
    via_shortcut = await saver_story(AsyncSQLAlchemySaver(plain), shortcut_thread)
    via_sqlalchemy = await saver_story(AsyncSQLAlchemySaver(observable), observed_thread)
    assert _swap(via_shortcut, shortcut_thread, observed_thread) == via_sqlalchemy

    label_s, label_o = f"s{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    store_s = await store_story(AsyncSQLAlchemyStore(plain), label_s)
    store_o = await store_story(AsyncSQLAlchemyStore(observable), label_o)
    assert _swap(store_s, label_s, label_o) == store_o


# --- broken and cancelled connections ----------------------------------------------------------


async def _backends(admin: AsyncConnection) -> set[int]:
    rows = await admin.execute(
        text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    )
    return {int(pid) for (pid,) in rows}


@pytest.mark.parametrize("path", ["shortcut", "observable"])
async def test_killed_connections_are_replaced_without_an_error(
    own_database: str, path: str
) -> None:
    options = {OBSERVABLE_OPTION: True} if path == "observable" else {}
    engine = create_engine(own_database, pool_size=3, max_overflow=0, execution_options=options)
    admin_engine = create_engine(own_database, isolation_level="AUTOCOMMIT")
    try:
        assert unobserved(engine.sync_engine) is (path == "shortcut")
        saver = AsyncSQLAlchemySaver(engine)
        store = AsyncSQLAlchemyStore(engine)
        # Three pooled connections, all open at once.
        held = [await engine.connect() for _ in range(3)]
        for conn in held:
            await conn.execute(text("SELECT 1"))
            await conn.close()
        async with admin_engine.connect() as admin:
            killed = await _backends(admin)
            assert len(killed) == 3
            await admin.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) pid"),
                {"pids": sorted(killed)},
            )
            stored = await saver.aput(cfg("killed"), checkpoint({"a": 1}), {}, {"a": 1})
            results = await asyncio.gather(
                saver.aget_tuple(stored),
                saver.aget_tuple(cfg("killed")),
                store.aput(("killed",), "k", {"v": 1}),
            )
            assert results[0] is not None and results[1] is not None
            assert results[0].checkpoint["id"] == stored["configurable"]["checkpoint_id"]
            item = await store.aget(("killed",), "k")
            assert item is not None and item.value == {"v": 1}
            now = await _backends(admin)
        assert engine.sync_engine.pool.checkedout() == 0
        assert now and not (now & killed)  # every connection in use was replaced
    finally:
        await engine.dispose()
        await admin_engine.dispose()


@pytest.mark.parametrize("path", ["shortcut", "observable"])
@pytest.mark.parametrize("call", ["read", "write"])
async def test_a_cancelled_call_leaves_nothing_checked_out(
    own_database: str, path: str, call: str
) -> None:
    """The call waits on a table lock held by another session and is cancelled there."""
    options = {OBSERVABLE_OPTION: True} if path == "observable" else {}
    engine = create_engine(own_database, pool_size=2, max_overflow=0, execution_options=options)
    locker_engine = create_engine(own_database)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        stored = await saver.aput(cfg("cancel"), checkpoint({"a": 1}), {}, {"a": 1})

        async def blocked() -> Any:
            if call == "read":
                return await saver.aget_tuple(stored)
            return await saver.aput(stored, checkpoint({"a": 2}), {}, {"a": 2})

        async with locker_engine.connect() as locker:
            await locker.execute(text("LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE"))
            task = asyncio.ensure_future(blocked())
            for _ in range(250):
                await asyncio.sleep(0.02)
                waiting = await _lock_waiters(locker)
                if waiting:
                    break
            else:
                pytest.fail("the call never waited on the lock")
            assert engine.sync_engine.pool.checkedout() == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert engine.sync_engine.pool.checkedout() == 0
            # The statement stopped on the server too (asyncpg's cancel request went out
            # before the connection was closed), though the lock is still held.
            for _ in range(150):
                if not await _lock_waiters(locker):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the cancelled statement still waits on the server")
            await locker.rollback()
        # Both pooled connections work afterwards, and no statement of the cancelled call
        # is still pending on any of them.
        found = await asyncio.gather(saver.aget_tuple(stored), saver.aget_tuple(cfg("cancel")))
        assert all(t is not None for t in found)
        assert engine.sync_engine.pool.checkedout() == 0
    finally:
        await engine.dispose()
        await locker_engine.dispose()


@pytest.mark.parametrize("pool", ["overflow", "NullPool"])
async def test_connections_the_pool_closes_on_their_return_are_closed_cleanly(
    own_database: str, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection given back to a full pool (an overflow one), or to a ``NullPool``, is
    closed then and there: on either path that is I/O inside SQLAlchemy's greenlet, with no
    "Exception closing connection" and no socket left for the garbage collector."""
    options: dict[str, Any] = (
        {"pool_size": 1, "max_overflow": 5} if pool == "overflow" else {"poolclass": NullPool}
    )
    engine = create_engine(own_database, **options)
    admin_engine = create_engine(own_database, isolation_level="AUTOCOMMIT")
    try:
        assert unobserved(engine.sync_engine)  # the shortcut's case, the one that failed
        saver = AsyncSQLAlchemySaver(engine)
        with caplog.at_level(logging.WARNING, logger="sqlalchemy.pool"):
            stored = await asyncio.gather(
                *(
                    saver.aput(cfg(f"full-{i}"), checkpoint({"a": i}), {}, {"a": i})
                    for i in range(6)
                )
            )
            found = await asyncio.gather(*(saver.aget_tuple(c) for c in stored))
        assert all(t is not None for t in found)
        assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
        if pool == "overflow":
            assert engine.sync_engine.pool.checkedout() == 0
        async with admin_engine.connect() as admin:
            left = await _backends(admin)
        assert len(left) <= (1 if pool == "overflow" else 0), left
    finally:
        await engine.dispose()
        await admin_engine.dispose()


async def _lock_waiters(conn: AsyncConnection) -> int:
    result = await conn.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
    )
    return int(result.scalar_one())


async def test_a_call_cancelled_while_waiting_for_the_pool_takes_nothing(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            task = asyncio.ensure_future(saver.aget_tuple(cfg("pool-wait")))
            await asyncio.sleep(0.1)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert engine.sync_engine.pool.checkedout() == 1  # only the held connection
        assert engine.sync_engine.pool.checkedout() == 0
        assert await saver.aget_tuple(cfg("pool-wait")) is None
    finally:
        await engine.dispose()


# --- first contact versus a server that went away -----------------------------------------------


_TRIED = re.compile(r"(\d+) attempts? in ")


def _attempts(exc: BaseException) -> int:
    match = _TRIED.search(str(exc))
    assert match, f"the message does not say how often it tried: {exc}"
    return int(match.group(1))


@pytest.mark.parametrize("where", ["closed port", "socket directory without a server"])
async def test_first_contact_with_nothing_listening_fails_fast_naming_the_address(
    where: str,
) -> None:
    with tempfile.TemporaryDirectory(prefix="lgsa-no-server-") as empty:
        if where == "closed port":
            port = free_port()
            url, address = f"postgresql://postgres@127.0.0.1:{port}/postgres", f"127.0.0.1:{port}"
        else:
            url, address = (
                f"postgresql://postgres@/postgres?host={empty}",
                f"socket directory {empty}",
            )
        engine = create_engine(url)
        policy = RetryPolicy()
        try:
            saver = AsyncSQLAlchemySaver(engine, retry=policy)
            with pytest.raises(DatabaseUnavailableError) as caught:
                await saver.aget_tuple(cfg("nowhere"))
            # setup(), the first call of most applications, says the same.
            for owner in (saver, AsyncSQLAlchemyStore(engine)):
                with pytest.raises(DatabaseUnavailableError, match="setup: could not reach") as s:
                    await owner.setup()
                assert address in str(s.value) and "is the server running" in str(s.value)
        finally:
            await engine.dispose()
    message = str(caught.value)
    assert address in message
    # Retried only for first_contact_seconds (about five attempts with the default backoff),
    # not the ten attempts and 4.6 to 9.2 s of the full budget.
    assert 1 <= _attempts(caught.value) < policy.max_attempts


class Forwarder:
    """A loopback TCP forwarder in front of the test server that can go away on demand: it
    stops accepting (new connections are refused) and cuts every open connection."""

    def __init__(self, server_url: str) -> None:
        url = make_url(server_url)
        self.host, self.port = url.host, url.port or 5432
        socket_dir = url.query.get("host")
        self.socket = f"{socket_dir}/.s.PGSQL.{self.port}" if url.host is None else None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.listen_port = 0

    async def start(self) -> Forwarder:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.socket is not None:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket)
        else:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def go_away(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    def url(self, database: str, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.listen_port}/{database}"


async def test_a_server_that_went_away_gets_the_whole_retry_budget(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Same small policy, no first-contact allowance: a port that never answered is tried
    once; the same kind of failure after the server was reached is tried max_attempts times."""
    policy = RetryPolicy(
        max_attempts=4, initial_backoff=0.001, max_backoff=0.001, first_contact_seconds=0.0
    )
    closed = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    try:
        with pytest.raises(DatabaseUnavailableError) as never_reached:
            await AsyncSQLAlchemySaver(closed, retry=policy).aget_tuple(cfg("gone"))
    finally:
        await closed.dispose()
    assert _attempts(never_reached.value) == 1

    url = make_url(database_url)
    forwarder = await Forwarder(database_url).start()
    engine = create_engine(forwarder.url(url.database or "", url.username or "postgres"))
    try:
        saver = AsyncSQLAlchemySaver(engine, retry=policy)
        assert await saver.aget_tuple(cfg("gone")) is None  # reached once
        await forwarder.go_away()
        caplog.clear()
        with (
            caplog.at_level(logging.WARNING, logger="langgraph_sqlalchemy"),
            pytest.raises(DatabaseUnavailableError, match="stayed unreachable"),
        ):
            await saver.aget_tuple(cfg("gone"))
        retries = [r.getMessage() for r in caplog.records if r.name == "langgraph_sqlalchemy"]
        retries = [m for m in retries if "transient database error" in m]
        assert len(retries) == policy.max_attempts - 1, retries
        for n, message in enumerate(retries, 1):
            assert f"attempt {n} of {policy.max_attempts}" in message
    finally:
        await engine.dispose()


# --- compiled statements send what conn.execute sends -----------------------------------------


def _blob_rows() -> list[tuple[str, str, str, bytes | None]]:
    return [("a", "00000000000000000000000000000001.1", "json", b'"x"'), ("e", "2", "empty", None)]


def _checkpoint_statements() -> list[tuple[str, BoundStatement]]:
    repo = repository_for(None)
    found: list[tuple[str, BoundStatement]] = [
        ("read latest", repo.select_checkpoint_tuple("t", "", None)),
        ("read by id", repo.select_checkpoint_tuple("t", "ns", "1ef-id")),
    ]
    for shape in itertools.product([False, True], repeat=6):
        thread, ns, cid, flt, before, after = shape
        where = ListFilter(
            "t" if thread else None,
            "" if ns else None,
            "1ef-id" if cid else None,
            '{"source": "loop"}' if flt else None,
            "1ef-before" if before else None,
        )
        page = repo.select_checkpoint_page(
            where, after=("1ef-after", "t", "") if after else None, limit=101
        )
        found.append((f"list page {shape}", page))
    for blobs in (_blob_rows(), []):
        found.append(
            (
                f"upsert with {len(blobs)} blobs",
                repo.upsert_checkpoint(
                    thread_id="t",
                    checkpoint_ns="",
                    checkpoint_id="1ef-id",
                    parent_checkpoint_id=None if blobs else "1ef-parent",
                    checkpoint_json='{"v": 4, "id": "1ef-id"}',
                    metadata_json='{"step": 1}',
                    blobs=blobs,
                ),
            )
        )
    for replace in (False, True):
        rows = (
            [(0, "a", "json", b"1"), (1, "b", "bytes", b"\x00\xff")]
            if not replace
            else [(-1, ERROR, "json", b'"boom"')]
        )
        found.append(
            (
                f"writes {'latest' if replace else 'first'} wins",
                repo.insert_writes(
                    thread_id="t",
                    checkpoint_ns="",
                    checkpoint_id="1ef-id",
                    task_id="task",
                    task_path="~path",
                    rows=rows,
                    replace=replace,
                ),
            )
        )
    return found


def _store_statements() -> list[tuple[str, BoundStatement]]:
    found: list[tuple[str, BoundStatement]] = []
    for omit_expired in (False, True):
        repo = StoreRepository(
            get_tables(None), vectors=None, index=None, omit_expired=omit_expired
        )
        tag = f"omit_expired={omit_expired}"
        found.append(
            (f"get {tag}", repo.bound_get_items([("a.b", "k"), ("a", "k2")], [True, False]))
        )
        for namespace, flt, refresh in itertools.product(
            [(), ("a", "b")],
            [None, {"n": 1}, {"n": {"$gt": 1, "$lte": 5}}, {"o": {"x": [1, "y"]}, "s": None}],
            [False, True],
        ):
            op = SearchOp(namespace, filter=flt, limit=7, offset=3, refresh_ttl=refresh)
            found.append(
                (
                    f"search {namespace} {flt} {refresh} {tag}",
                    repo.bound_search(op, parse_filter(flt)),
                )
            )
        for conditions, depth in itertools.product(
            [
                (),
                (MatchCondition("prefix", ("a",)),),
                (MatchCondition("suffix", ("b", "*")),),
                (MatchCondition("prefix", ("a", "*", "c")), MatchCondition("suffix", ("c",))),
            ],
            [None, 2],
        ):
            listing = ListNamespacesOp(match_conditions=conditions, max_depth=depth, limit=9)
            found.append(
                (f"list_namespaces {conditions} {depth} {tag}", repo.bound_list_namespaces(listing))
            )
        upserts = [("a.b", "k", '{"v": 1}', None), ("a.c", "k", '{"v": 2}', 1.5)]
        for deletes, puts in (([("a", "gone")], []), ([], upserts), ([("a", "gone")], upserts)):
            writes = repo.bound_writes(deletes, puts, [], [])
            assert writes is not None
            found.append((f"writes {len(deletes)} deletes {len(puts)} puts {tag}", writes))
    return found


HOT_STATEMENTS = _checkpoint_statements() + _store_statements()


@pytest.fixture
async def capturing(database_url: str) -> AsyncIterator[tuple[AsyncEngine, list[Any]]]:
    engine = create_engine(database_url)
    sent: list[Any] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, tuple(parameters)))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield engine, sent
    event.remove(engine.sync_engine, "before_cursor_execute", record)
    await engine.dispose()


@pytest.mark.parametrize(
    "bound", [b for _, b in HOT_STATEMENTS], ids=[name for name, _ in HOT_STATEMENTS]
)
async def test_a_compiled_statement_sends_what_conn_execute_sends(
    capturing: tuple[AsyncEngine, list[Any]], bound: BoundStatement
) -> None:
    engine, sent = capturing
    async with engine.connect() as conn:
        await bound.execute(conn)  # the compiled form, through exec_driver_sql
        await conn.execute(bound.statement.statement, dict(bound.params))  # SQLAlchemy's own
        await conn.rollback()  # the writes were only for the comparison
    compiled, core = sent
    assert compiled[0] == core[0]
    assert compiled[1] == core[1]
    form = bound.driver_form(engine.dialect)  # what the shortcut sends
    assert form is not None
    assert form == (core[0], core[1])


async def test_with_a_schema_translate_map_the_statement_runs_as_sqlalchemy_renders_it(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    translated = engine.execution_options(schema_translate_map={None: "lgsa_nowhere"})
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        bound = repository_for(None).select_checkpoint_tuple("t", "", None)
        async with translated.connect() as conn:
            with pytest.raises(Exception, match="lgsa_nowhere"):
                await bound.execute(conn)
        assert len(sent) == 1 and "lgsa_nowhere.checkpoints" in sent[0]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        await engine.dispose()


@pytest.mark.parametrize("path", ["shortcut", "observable"])
async def test_a_failed_statement_reads_the_same_on_both_paths(
    plain: AsyncEngine, path: str
) -> None:
    """Whether an APM agent watches the engine or not, a statement the server refuses gives
    one message, with asyncpg's exception as ``__cause__``."""
    engine = plain.execution_options(**{OBSERVABLE_OPTION: path == "observable"})
    assert unobserved(engine.sync_engine) is (path == "shortcut")
    saver = AsyncSQLAlchemySaver(engine)
    await saver.setup()
    too_long = os.urandom(3000).hex()  # incompressible: its index row is over btree's limit
    with pytest.raises(DatabaseError) as raised:
        await saver.aput(cfg(too_long), checkpoint({"a": 1}), {}, {"a": 1})
    message = str(raised.value)
    assert message.startswith("aput failed (54000): ProgramLimitExceededError: "), message
    cause = raised.value.__cause__
    assert cause is not None and type(cause).__module__.startswith("asyncpg"), repr(cause)
