"""The Alembic history: one head, down-and-up with rows, offline SQL, concurrent upgrades, the
``alembic`` command from the repository root, schemas, and the migrated database equal to the
``MetaData``.

What a downgrade drops (asserted below, and worth knowing before running one in production):

* ``0007 -> 0006``: ``checkpoint_thread_activity`` with its rows (each thread's last write and
  own TTL; retention falls back to the checkpoints' ``ts`` without it).
* ``0006 -> 0005``: the GIN index on ``store.value`` (no data).
* ``0005 -> 0004``: ``store.ttl_minutes`` back to INTEGER, fractional TTLs rounded up.
* ``0004 -> 0003``: the ``store``, ``store_vectors``, ``store_migrations`` and
  ``vector_migrations`` tables with all their rows.
* ``0003 -> 0002``: ``checkpoint_writes.task_path`` (re-added as ``''``).
* ``0002 -> 0001``: the thread-id indexes (no data).
* ``0001 -> base``: every checkpoint table with all its rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import MigrationError
from langgraph_sqlalchemy.migrations import VERSION_TABLE, include_name_for, include_object_for
from langgraph_sqlalchemy.schema import TABLE_NAMES, get_tables
from schema_catalog import dump_tables, read_catalog, reference_catalog, tracking_versions

ROOT = Path(__file__).resolve().parents[1]
HEAD = migrations.head_revision()
REVISIONS = [
    "0001_checkpoint_tables",
    "0002_checkpoint_thread_indexes",
    "0003_checkpoint_writes_task_path",
    "0004_store_tables",
    "0005_store_fractional_ttl",
    "0006_store_value_index",
    "0007_checkpoint_thread_activity",
]
EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
ALEMBIC_TABLES = {name for name in TABLE_NAMES if name != "store_vectors"}

@asynccontextmanager
async def engine_for(url: str, **kw: Any) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url, **kw)
    try:
        yield engine
    finally:
        await engine.dispose()


async def tables_in(engine: AsyncEngine, schema: str = "public") -> set[str]:
    return set((await read_catalog(engine, schema)).tables)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- the revision graph --------------------------------------------------------------------------


def test_single_head_and_linear_history() -> None:
    packaged = ScriptDirectory.from_config(migrations.alembic_config())
    assert packaged.get_heads() == [HEAD] == ["0007_checkpoint_thread_activity"]
    history = [s.revision for s in packaged.walk_revisions("base", "heads")]
    assert list(reversed(history)) == REVISIONS
    # The repository's alembic.ini points at the very same scripts.
    repo = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
    assert repo.get_heads() == [HEAD]
    assert {s.path for s in repo.walk_revisions()} == {s.path for s in packaged.walk_revisions()}


async def test_current_revision_and_is_at_head(empty_url: str) -> None:
    async with engine_for(empty_url) as engine:
        assert await migrations.current_revision(engine) is None
        assert not await migrations.is_at_head(engine)
        await migrations.upgrade(engine, revision="0003_checkpoint_writes_task_path")
        assert await migrations.current_revision(engine) == "0003_checkpoint_writes_task_path"
        assert not await migrations.is_at_head(engine)
        await migrations.upgrade(engine)
        assert await migrations.is_at_head(engine)
        await migrations.upgrade(engine)  # idempotent
        async with engine.connect() as conn:
            assert await migrations.current_revision(conn) == HEAD
            versions = (await conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")))
            assert versions.scalar_one() == 1


# --- down and up with rows ---------------------------------------------------------------------


async def _insert_rows(engine: AsyncEngine) -> None:
    t = get_tables()
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(t.checkpoints),
            [
                {"thread_id": f"t{i}", "checkpoint_id": "c", "checkpoint": {"i": i}}
                for i in range(3)
            ],
        )
        await conn.execute(
            sa.insert(t.checkpoint_blobs),
            [
                {"thread_id": "t0", "channel": "a", "version": "1", "type": "msgpack",
                 "blob": b"\x00\x01"},
                {"thread_id": "t0", "channel": "b", "version": "1", "type": "empty",
                 "blob": None},
            ],
        )
        await conn.execute(
            sa.insert(t.checkpoint_writes),
            [{"thread_id": "t0", "checkpoint_id": "c", "task_id": "x", "idx": 0,
              "channel": "a", "type": "msgpack", "blob": b"w", "task_path": "~p:0"}],
        )
        await conn.execute(
            sa.insert(t.checkpoint_thread_activity),
            [{"thread_id": "t0", "last_activity": EXPIRES, "ttl_minutes": 5.0}],
        )
        await conn.execute(
            sa.insert(t.store),
            [
                {"prefix": "a.b", "key": "k1", "value": {"v": 1}, "ttl_minutes": 0.5,
                 "expires_at": EXPIRES},
                {"prefix": "a", "key": "k2", "value": {"v": 2}, "ttl_minutes": None,
                 "expires_at": None},
            ],
        )


async def test_downgrade_to_intermediate_and_back_keeps_rows(
    empty_url: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    reference = await reference_catalog(new_database)
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine)
        await _insert_rows(engine)
        checkpoint_tables = ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]
        before = await dump_tables(engine, [*checkpoint_tables, "store"])
        activity = await dump_tables(engine, ["checkpoint_thread_activity"])
        assert [r[0] for r in activity["checkpoint_thread_activity"]] == ["t0"]

        # 0007 -> 0006: the activity table goes, every other row stays.
        await migrations.downgrade(engine, "0006_store_value_index")
        assert "checkpoint_thread_activity" not in await tables_in(engine)
        assert await dump_tables(engine, [*checkpoint_tables, "store"]) == before

        # 0006 -> 0005: the value index goes, nothing else.
        await migrations.downgrade(engine, "0005_store_fractional_ttl")
        catalog = await read_catalog(engine)
        assert "store_value_idx" not in catalog.indexes
        gone = {"store_value_idx", "checkpoint_thread_activity_pkey"}
        assert {k: v for k, v in reference.indexes.items() if k not in gone} == (
            catalog.indexes
        )
        assert (await dump_tables(engine, ["store"]))["store"] == before["store"]

        # 0005 -> 0004: fractional TTL rounded up (never to 0 = expired), rows otherwise kept.
        await migrations.downgrade(engine, "0004_store_tables")
        catalog = await read_catalog(engine)
        assert catalog.columns[("store", "ttl_minutes")][0] == "integer"
        store = (await dump_tables(engine, ["store"]))["store"]
        assert [(r[0], r[1], r[2], r[-1]) for r in store] == [
            ("a", "k2", {"v": 2}, None),
            ("a.b", "k1", {"v": 1}, 1),
        ]

        # 0004 -> 0002: store tables and task_path gone; checkpoints, blobs and writes kept.
        await migrations.downgrade(engine, "0002_checkpoint_thread_indexes")
        assert await tables_in(engine) == {
            VERSION_TABLE, "checkpoint_migrations", *checkpoint_tables
        }
        assert ("checkpoint_writes", "task_path") not in (await read_catalog(engine)).columns
        # Upstream would re-run exactly what was removed (its migration 9, its store).
        assert await tracking_versions(engine, "checkpoint_migrations") == list(range(9))
        mid = await dump_tables(engine, checkpoint_tables)
        assert mid["checkpoints"] == before["checkpoints"]
        assert mid["checkpoint_blobs"] == before["checkpoint_blobs"]
        assert [r[:8] for r in mid["checkpoint_writes"]] == [
            r[:8] for r in before["checkpoint_writes"]
        ]

        await migrations.upgrade(engine)
        assert await migrations.is_at_head(engine)
        assert (await read_catalog(engine)).differences(reference) == []
        after = await dump_tables(engine, checkpoint_tables)
        assert after["checkpoints"] == before["checkpoints"]
        assert after["checkpoint_blobs"] == before["checkpoint_blobs"]
        # The dropped task_path comes back as '' for existing writes.
        assert after["checkpoint_writes"] == [
            (*r[:8], "") for r in before["checkpoint_writes"]
        ]
        assert await tracking_versions(engine, "checkpoint_migrations") == list(range(10))
        assert await tracking_versions(engine, "store_migrations") == list(range(4))


async def test_downgrade_to_base_and_back(
    empty_url: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    reference = await reference_catalog(new_database)
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine)
        await _insert_rows(engine)
        await migrations.downgrade(engine, "base")
        # Only our (empty) version table is left: every table and row of the library is gone.
        assert await tables_in(engine) == {VERSION_TABLE}
        assert await migrations.current_revision(engine) is None

        await migrations.upgrade(engine)
        assert (await read_catalog(engine)).differences(reference) == []
        rows = await dump_tables(engine, ["checkpoints", "store"])
        assert rows == {"checkpoints": [], "store": []}


async def test_downgrade_drops_the_runtime_vector_table_with_the_store(
    empty_url: str,
) -> None:
    # store_vectors is created at run time but hangs off store by foreign key, so the store
    # revision's downgrade must take it along (a plain DROP TABLE store would fail).
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine)
        async with engine.begin() as conn:
            # A stand-in for the vector layer with the same foreign key (bytea instead of
            # vector so that it also runs on a server without pgvector).
            await conn.execute(
                sa.text(
                    "CREATE TABLE store_vectors (prefix text, key text, field_name text, "
                    "embedding bytea, PRIMARY KEY (prefix, key, field_name), "
                    "FOREIGN KEY (prefix, key) REFERENCES store (prefix, key) ON DELETE CASCADE)"
                )
            )
        await migrations.downgrade(engine, "0003_checkpoint_writes_task_path")
        assert await tables_in(engine) == {
            VERSION_TABLE,
            "checkpoint_migrations",
            "checkpoints",
            "checkpoint_blobs",
            "checkpoint_writes",
        }


# --- offline SQL ------------------------------------------------------------------------------


async def _apply_script(url: str, script: str) -> None:
    """Run an offline script statement by statement, as psql would (BEGIN/COMMIT included)."""
    parsed = make_url(url)
    conn = await asyncpg.connect(
        user=parsed.username,
        database=parsed.database,
        host=parsed.query.get("host") or parsed.host,
        port=parsed.port,
    )
    try:
        for statement in script.split(";\n\n"):
            lines = [ln for ln in statement.splitlines() if not ln.startswith("--")]
            if "\n".join(lines).strip():
                await conn.execute(statement)
    finally:
        await conn.close()


def _assert_is_our_ddl(script: str, schema: str | None = None) -> None:
    q = f"{schema}." if schema else ""
    assert f"CREATE TABLE {q}{VERSION_TABLE}" in script
    assert "alembic_version" not in script
    for name in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "store"):
        assert f"CREATE TABLE IF NOT EXISTS {q}{name} (" in script
    assert (
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpoints_thread_id_idx ON {q}checkpoints"
        in script
    )
    assert "store_vectors" not in script.split("-- Running upgrade 0004")[0]


async def test_offline_sql_from_repo_root_builds_the_same_schema(
    empty_url: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    result = run_cli("upgrade", "head", "--sql")
    assert result.returncode == 0, result.stderr
    _assert_is_our_ddl(result.stdout)
    # DBAs apply it by hand: it must produce exactly what the online upgrade produces.
    await _apply_script(empty_url, result.stdout)
    async with engine_for(empty_url) as engine:
        reference = await reference_catalog(new_database)
        assert (await read_catalog(engine)).differences(reference) == []
        assert await migrations.is_at_head(engine)


async def test_render_sql_api(empty_url: str) -> None:
    script = migrations.render_sql()
    _assert_is_our_ddl(script)
    assert script == run_cli("upgrade", "head", "--sql").stdout

    in_schema = migrations.render_sql(schema="tenant_a")
    _assert_is_our_ddl(in_schema, "tenant_a")
    assert "CREATE SCHEMA IF NOT EXISTS tenant_a" in in_schema

    partial = migrations.render_sql(start="0004_store_tables")
    assert "0005" in partial and "CREATE TABLE IF NOT EXISTS checkpoints" not in partial
    assert "ALTER TABLE store ALTER COLUMN ttl_minutes TYPE DOUBLE PRECISION" in partial

    await _apply_script(empty_url, in_schema)
    async with engine_for(empty_url) as engine:
        assert await migrations.is_at_head(engine, schema="tenant_a")
        assert await tables_in(engine, "tenant_a") == {*ALEMBIC_TABLES, VERSION_TABLE}
        assert await tables_in(engine) == set()


# --- concurrent upgrades -------------------------------------------------------------------


async def test_four_concurrent_upgrades_in_one_process(
    empty_url: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    engines = [create_engine(empty_url) for _ in range(4)]
    try:
        await asyncio.gather(*(migrations.upgrade(e) for e in engines))
        assert (await read_catalog(engines[0])).differences(
            await reference_catalog(new_database)
        ) == []
        async with engines[0].connect() as conn:
            rows = (await conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))).all()
        assert rows == [(HEAD,)]
        assert await tracking_versions(engines[0], "checkpoint_migrations") == list(range(10))
    finally:
        for e in engines:
            await e.dispose()


_UPGRADE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from langgraph_sqlalchemy import migrations
    from langgraph_sqlalchemy.engine import create_engine

    async def main():
        engine = create_engine(sys.argv[1])
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())
    """
)


async def test_four_concurrent_upgrades_in_separate_processes(
    empty_url: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _UPGRADE_SCRIPT, empty_url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in processes)), timeout=120
    )
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
    async with engine_for(empty_url) as engine:
        assert (await read_catalog(engine)).differences(
            await reference_catalog(new_database)
        ) == []
        assert await migrations.current_revision(engine) == HEAD


# --- the alembic command from the repository root -----------------------------------------


async def test_alembic_cli_upgrade_and_downgrade_from_repo_root(
    empty_url: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    env = {"DATABASE_URL": empty_url}
    up = run_cli("upgrade", "head", env=env)
    assert up.returncode == 0, up.stderr
    async with engine_for(empty_url) as engine:
        assert (await read_catalog(engine)).differences(
            await reference_catalog(new_database)
        ) == []
        current = run_cli("current", env=env)
        assert current.returncode == 0 and HEAD in current.stdout, current.stderr

        down = run_cli("downgrade", "base", env=env)
        assert down.returncode == 0, down.stderr
        assert await tables_in(engine) == {VERSION_TABLE}

        # -x url=... and -x schema=... instead of the environment.
        up_x = run_cli(
            "-x", f"url={empty_url}", "-x", "schema=cli_schema", "upgrade", "head",
            env={"DATABASE_URL": ""},
        )
        assert up_x.returncode == 0, up_x.stderr
        assert await tables_in(engine, "cli_schema") == {*ALEMBIC_TABLES, VERSION_TABLE}


def test_alembic_cli_without_a_url_says_what_to_set() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stdout + result.stderr


# --- the migrated database equals the MetaData ----------------------------------------------


def _autogenerate_diff(sync_conn: Connection, schema: str | None) -> list[Any]:
    metadata = get_tables(schema).metadata
    context = MigrationContext.configure(
        sync_conn,
        opts={
            "target_metadata": metadata,
            "include_name": include_name_for(schema),
            "include_object": include_object_for(schema),
            "include_schemas": schema is not None,
            "compare_type": True,
            "compare_server_default": True,
            "version_table": VERSION_TABLE,
            "version_table_schema": schema,
        },
    )
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("schema", [None, "tenant_a"])
async def test_migrated_database_equals_metadata(
    empty_url: str, schema: str | None
) -> None:
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine, schema=schema)
        async with engine.connect() as conn:
            assert await conn.run_sync(_autogenerate_diff, schema) == []
            # The comparison is real: a missing index is reported.
            q = f"{schema}." if schema else ""
            await conn.execute(sa.text(f"DROP INDEX {q}checkpoints_thread_id_idx"))
            diff = await conn.run_sync(_autogenerate_diff, schema)
            await conn.rollback()
        assert [(d[0], d[1].name) for d in diff] == [("add_index", "checkpoints_thread_id_idx")]


# --- schemas and the host's own Alembic history ------------------------------------------


async def test_schema_places_everything_in_that_schema(
    empty_url: str, new_database: Callable[[], Awaitable[str]]
) -> None:
    reference = await reference_catalog(new_database)
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine, schema="x")
        assert await tables_in(engine) == set()
        async with engine.connect() as conn:
            in_public = await conn.execute(
                sa.text(
                    "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public'"
                )
            )
            assert in_public.all() == []
        assert (await read_catalog(engine, "x")).differences(reference) == []
        assert await migrations.is_at_head(engine, schema="x")
        assert await migrations.current_revision(engine) is None
        assert await tracking_versions(engine, "checkpoint_migrations", "x") == list(range(10))

        # A second schema in the same database is independent of the first.
        await migrations.upgrade(engine, schema="y")
        await migrations.downgrade(engine, "base", schema="x")
        assert await tables_in(engine, "x") == {VERSION_TABLE}
        assert (await read_catalog(engine, "y")).differences(reference) == []


async def test_host_alembic_version_is_untouched(empty_url: str) -> None:
    async with engine_for(empty_url) as engine:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
            )
            await conn.execute(sa.text("INSERT INTO alembic_version VALUES ('host_rev_42')"))

        async def host_rows() -> list[Any]:
            async with engine.connect() as conn:
                result = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                return list(result.all())

        await migrations.upgrade(engine)
        assert await host_rows() == [("host_rev_42",)]
        assert await migrations.is_at_head(engine)
        await migrations.downgrade(engine, "base")
        assert await host_rows() == [("host_rev_42",)]
        assert "alembic_version" in await tables_in(engine)
        env = {"DATABASE_URL": empty_url}
        assert run_cli("upgrade", "head", env=env).returncode == 0
        assert await host_rows() == [("host_rev_42",)]


async def test_upgrade_through_a_host_connection_inside_a_transaction(
    empty_url: str,
) -> None:
    # setup() may be handed a host AsyncConnection with an open transaction. Migrating there
    # would deadlock (CREATE INDEX CONCURRENTLY, on a connection of its own, waits for the
    # host's transaction, which waits for the migration): it fails fast and says why ...
    async with engine_for(empty_url) as engine:
        async with engine.connect() as host:
            await host.execute(sa.text("SELECT 1"))
            with pytest.raises(MigrationError, match="open transaction"):
                await asyncio.wait_for(migrations.upgrade(host), timeout=30)
            assert host.in_transaction()
            await host.rollback()
            assert await migrations.current_revision(engine) is None
            # ... with no transaction open it migrates ...
            await migrations.upgrade(host)
            assert await migrations.is_at_head(host)
        # ... and once at head, it is a no-op even inside the host's transaction.
        async with engine.connect() as host:
            await host.execute(sa.text("SELECT 1"))
            await asyncio.wait_for(migrations.upgrade(host), timeout=30)
            assert host.in_transaction()
            assert await migrations.is_at_head(host)


async def test_setup_at_head_needs_no_second_connection(empty_url: str) -> None:
    # A host whose pool is down to the one connection it handed over: the at-head check must
    # read through that connection rather than wait for another one.
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine)
    small_pool = engine_for(empty_url, pool_size=1, max_overflow=0, pool_timeout=3)
    async with small_pool as engine, engine.connect() as host:
        await migrations.upgrade(host)
        assert not host.in_transaction()
        await host.execute(sa.text("SELECT 1"))
        await migrations.upgrade(host)
        assert host.in_transaction()


# --- "is the database ready?": tables and the vector layer (issue 14) -------------------------


async def test_check_schema_finds_a_table_dropped_after_the_migrations(empty_url: str) -> None:
    async with engine_for(empty_url) as engine:
        status = await migrations.check_schema(engine, schema="tenant")
        assert not status.ok and status.revision is None and status.head == HEAD
        assert status.problems == (
            f"behind: database at none (never migrated), head is {HEAD}; "
            "fix: langgraph-sqlalchemy upgrade --schema tenant",
        )
        await migrations.upgrade(engine, schema="tenant")
        assert (await migrations.check_schema(engine, schema="tenant")).ok
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE tenant.checkpoint_writes"))
        assert await migrations.current_revision(engine, schema="tenant") == HEAD
        assert not await migrations.is_at_head(engine, schema="tenant")
        (problem,) = (await migrations.check_schema(engine, schema="tenant")).problems
        assert problem.startswith(
            f"table checkpoint_writes is missing although the database is recorded at {HEAD}"
        )
        assert "langgraph-sqlalchemy downgrade base --schema tenant" in problem
        # Through a host connection: its transaction state is left as it was.
        async with engine.connect() as host:
            assert not await migrations.is_at_head(host, schema="tenant")
            assert not host.in_transaction()
            await host.execute(sa.text("SELECT 1"))
            assert not await migrations.is_at_head(host, schema="tenant")
            assert host.in_transaction()


@pytest.mark.vector
async def test_is_at_head_with_the_store_index_config_checks_the_vector_layer(
    empty_url: str,
) -> None:
    from fake_embeddings import HashingEmbeddings
    from langgraph_sqlalchemy import AsyncSQLAlchemyStore

    index: dict[str, Any] = {
        "dims": 8,
        "embed": HashingEmbeddings(dims=8),
        "fields": ["text"],
        "distance_type": "inner_product",
        "ann_index_config": {"kind": "ivfflat", "vector_type": "halfvec", "lists": 4},
    }
    fix = (
        "langgraph-sqlalchemy vectors --dims 8 --type halfvec --distance inner_product "
        "--index ivfflat --lists 4"
    )
    async with engine_for(empty_url) as engine:
        await migrations.upgrade(engine)
        assert await migrations.is_at_head(engine)  # the migrations alone are at head ...
        assert not await migrations.is_at_head(engine, index=index)  # ... the layer is not
        (problem,) = (await migrations.check_schema(engine, index=index)).problems
        assert problem.startswith("the vector layer is missing: ")
        assert f"fix: {fix} (" in problem
        # The embedder is never resolved: a provider string that could not load is fine.
        unresolvable = {**index, "embed": "no-such-provider:model"}
        assert (await migrations.check_schema(engine, index=unresolvable)).problems == (problem,)

        await AsyncSQLAlchemyStore(engine, index=index).setup()
        assert await migrations.is_at_head(engine, index=index)
        layer = migrations.VectorLayerConfig.from_index_config(index)
        assert await migrations.is_at_head(engine, index=layer)
        assert layer.fix_command(None) == fix

        (other,) = (await migrations.check_schema(engine, index={"dims": 16})).problems
        assert other.startswith(
            "store_vectors has embedding halfvec(8), but the index is configured for vector(16)"
        )
        cosine = {**index, "distance_type": "cosine"}
        (wrong_ops,) = (await migrations.check_schema(engine, index=cosine)).problems
        assert "not the configured ivfflat index with halfvec_cosine_ops" in wrong_ops

        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE store_vectors"))
        (gone,) = (await migrations.check_schema(engine, index=index)).problems
        assert gone.startswith("the vector layer is missing: there is no store_vectors table")
        assert gone.endswith(f"fix: {fix}")
    with pytest.raises(ValueError, match="dims"):
        migrations.VectorLayerConfig.from_index_config({"embed": "x"})
