"""The ``langgraph-sqlalchemy`` command, run as users run it (a subprocess) on a real database."""

from __future__ import annotations

import os
import pty
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.cli import parse_age
from langgraph_sqlalchemy.engine import create_engine
from langgraph_sqlalchemy.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "langgraph_sqlalchemy", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def run_cli_on_a_terminal(*args: str, url: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """``run_cli`` with stderr on a pseudo-terminal (progress bars); returns what it showed."""
    terminal, stderr = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "langgraph_sqlalchemy", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "DATABASE_URL": url},
        )
        os.close(stderr)
        shown = os.read(terminal, 65536).decode()
    finally:
        os.close(terminal)
    return result, shown


async def test_check_upgrade_current_on_a_fresh_database(fresh_database_url: str) -> None:
    behind = run_cli("check", url=fresh_database_url)
    assert behind.returncode == 1, behind.stderr
    assert "behind" in behind.stdout

    upgraded = run_cli("upgrade", url=fresh_database_url)
    assert upgraded.returncode == 0, upgraded.stderr
    head = migrations.head_revision()
    assert head in upgraded.stdout

    current = run_cli("current", url=fresh_database_url)
    assert current.stdout.strip() == head

    ok = run_cli("check", "--database-url", fresh_database_url)
    assert ok.returncode == 0, ok.stderr
    assert "up to date" in ok.stdout

    engine = create_engine(fresh_database_url)
    try:
        assert await migrations.is_at_head(engine)
    finally:
        await engine.dispose()


async def test_schema_option_and_downgrade(fresh_database_url: str) -> None:
    assert run_cli("upgrade", "--schema", "tenant_cli", url=fresh_database_url).returncode == 0
    engine = create_engine(fresh_database_url)
    try:
        async with engine.connect() as conn:
            tables = set(
                (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
                        {"s": "tenant_cli"},
                    )
                ).scalars()
            )
            public = set(
                (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                ).scalars()
            )
        assert {"checkpoints", "store", "langgraph_sqlalchemy_version"} <= tables
        assert not public & {"checkpoints", "store"}
        down = run_cli("downgrade", "base", "--schema", "tenant_cli", url=fresh_database_url)
        assert down.returncode == 0, down.stderr
        async with engine.connect() as conn:
            left = set(
                (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
                        {"s": "tenant_cli"},
                    )
                ).scalars()
            )
        assert left == {"langgraph_sqlalchemy_version"}
    finally:
        await engine.dispose()


def test_sql_renders_offline_without_a_database() -> None:
    result = run_cli("sql", url="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE IF NOT EXISTS checkpoints" in result.stdout
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS store_prefix_idx" in result.stdout
    assert "langgraph_sqlalchemy_version" in result.stdout


async def test_stats_lists_every_table(database_url: str) -> None:
    result = run_cli("stats", url=database_url)
    assert result.returncode == 0, result.stderr
    for name in ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "store"):
        assert name in result.stdout


def test_unreachable_database_is_one_line_and_exit_3() -> None:
    result = run_cli("check", url="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("langgraph-sqlalchemy:"), result.stderr


def test_bad_usage_exits_2() -> None:
    assert run_cli("prune", url="postgresql://nobody@127.0.0.1:1/none").returncode == 2
    bad_age = run_cli("prune", "--older-than", "soon", url="postgresql://x@127.0.0.1:1/none")
    assert bad_age.returncode == 2
    assert "age must" in bad_age.stderr


def test_parse_age() -> None:
    assert parse_age("90s").total_seconds() == 90
    assert parse_age("15m").total_seconds() == 900
    assert parse_age("1.5h").total_seconds() == 5400
    assert parse_age("2d").days == 2
    assert parse_age("1w").days == 7
    with pytest.raises(InvalidInputError):
        parse_age("10 parsecs")
    with pytest.raises(InvalidInputError):
        parse_age("-1d")
    # Not finite, or beyond the TTLs' bound (where now minus the age would overflow).
    for bad in ("nanm", "infd", "-infh", "1e20d", "1e400s", "2000000w"):
        with pytest.raises(InvalidInputError, match="age must"):
            parse_age(bad)
    assert parse_age("1000w").days == 7000


UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


async def test_prune_refuses_bad_batch_sizes_and_ages_in_one_line(
    engine: AsyncEngine, database_url: str
) -> None:
    await _put_checkpoints(database_url, "old", 3, ts="2020-01-01T00:00:00+00:00")
    for size, dry in (("-1", []), ("0", []), ("0", ["--dry-run"])):
        result = run_cli(
            "prune", "--older-than", "30d", "--strategy", "delete", "--batch-size", size,
            *dry, url=database_url,
        )
        assert result.returncode == 2, result.stderr
        assert _one_error_line(result) == (
            f"langgraph-sqlalchemy: prune: --batch-size must be at least 1, got {size}"
        )
        assert result.stdout == ""
    for age in ("nanm", "infd", "1e20d"):
        result = run_cli("prune", "--older-than", age, url=database_url)
        assert result.returncode == 2, result.stderr
        assert _one_error_line(result).startswith("langgraph-sqlalchemy: prune: age must ")
    assert await _checkpoint_counts(database_url) == {"old": 3}
    # The longest age there is matches nothing, and fails on nothing.
    ancient = run_cli("prune", "--older-than", "1000w", "--dry-run", url=database_url)
    assert ancient.returncode == 0, ancient.stderr
    assert ancient.stdout.startswith("would prune 0 thread(s)")
    # A batch of one thread goes through them all.
    await _put_checkpoints(database_url, "old-2", 1, ts="2020-01-01T00:00:00+00:00")
    one = run_cli("prune", "--older-than", "30d", "--batch-size", "1", url=database_url)
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines()[-1] == "pruned 1 thread(s) (1 had nothing to prune)"
    assert await _checkpoint_counts(database_url) == {"old": 1, "old-2": 1}


async def _put_checkpoints(url: str, thread_id: str, count: int, *, ts: str) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    from langgraph_sqlalchemy import AsyncSQLAlchemySaver

    engine = create_engine(url)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        config: dict[str, object] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        for step in range(count):
            checkpoint = empty_checkpoint()
            checkpoint["ts"] = ts  # the age prune judges by
            config = await saver.aput(config, checkpoint, {"step": step}, {})  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def _checkpoint_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT thread_id, count(*) FROM checkpoints GROUP BY thread_id")
            )
            return {thread: int(n) for thread, n in rows}
    finally:
        await engine.dispose()


async def test_prune_idle_threads_dry_run_then_keep_latest_then_delete(
    fresh_database_url: str,
) -> None:
    assert run_cli("upgrade", url=fresh_database_url).returncode == 0
    await _put_checkpoints(fresh_database_url, "old", 3, ts="2020-01-01T00:00:00+00:00")
    await _put_checkpoints(fresh_database_url, "fresh", 3, ts="2999-01-01T00:00:00+00:00")

    dry = run_cli("prune", "--older-than", "30d", "--dry-run", url=fresh_database_url)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would prune 1 thread(s) idle for over 30d (strategy keep_latest): 3 checkpoint(s), "
        "last active between 2020-01-01T00:00:00+00:00 and 2020-01-01T00:00:00+00:00",
        "(--verbose lists the threads)",
    ]
    listed = run_cli(
        "prune", "--older-than", "30d", "--dry-run", "--verbose", url=fresh_database_url
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1:] == ["  old\t3\t2020-01-01T00:00:00+00:00"]
    assert await _checkpoint_counts(fresh_database_url) == {"old": 3, "fresh": 3}

    keep = run_cli("prune", "--older-than", "30d", url=fresh_database_url)
    assert keep.returncode == 0, keep.stderr
    assert "pruned 1 thread(s)" in keep.stdout
    assert await _checkpoint_counts(fresh_database_url) == {"old": 1, "fresh": 3}

    gone = run_cli(
        "prune", "--older-than", "30d", "--strategy", "delete", url=fresh_database_url
    )
    assert gone.returncode == 0, gone.stderr
    assert await _checkpoint_counts(fresh_database_url) == {"fresh": 3}


async def test_sweep_deletes_expired_items(fresh_database_url: str) -> None:
    assert run_cli("upgrade", url=fresh_database_url).returncode == 0
    engine = create_engine(fresh_database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO store (prefix, key, value, expires_at, ttl_minutes) VALUES "
                    "('a', 'expired', '{}', now() - interval '1 minute', 1), "
                    "('a', 'alive', '{}', now() + interval '1 hour', 60), "
                    "('a', 'forever', '{}', NULL, NULL)"
                )
            )
        swept = run_cli("sweep", url=fresh_database_url)
        assert swept.returncode == 0, swept.stderr
        assert "deleted 1 expired item(s)" in swept.stdout
        async with engine.connect() as conn:
            keys = set((await conn.execute(text("SELECT key FROM store"))).scalars())
        assert keys == {"alive", "forever"}
    finally:
        await engine.dispose()


async def test_sweep_covers_threads_and_items_with_a_dry_run_first(
    fresh_database_url: str, tmp_path: Path
) -> None:
    from langgraph_sqlalchemy import AsyncSQLAlchemySaver
    from retention_helpers import age, rows_by_thread, write_thread

    assert run_cli("upgrade", url=fresh_database_url).returncode == 0
    engine = create_engine(fresh_database_url)
    try:
        saver = AsyncSQLAlchemySaver(engine)
        for thread_id in ("old-a", "old-b", "recent"):
            await write_thread(saver, thread_id)
        await write_thread(saver, "own-ttl", checkpoint_ttl=60)
        await age(engine, ["old-a", "old-b", "own-ttl"])
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO store (prefix, key, value, expires_at, ttl_minutes) VALUES "
                    "('a', 'expired', '{}', now() - interval '1 minute', 1), "
                    "('a', 'alive', '{}', now() + interval '1 hour', 60)"
                )
            )

        # Without a default TTL only the thread with a TTL of its own is due.
        dry = run_cli("sweep", "--dry-run", url=fresh_database_url)
        assert dry.returncode == 0, dry.stderr
        assert "would remove 1 expired thread(s)" in dry.stdout and "  own-ttl" in dry.stdout
        assert "would delete 1 expired item(s)" in dry.stdout

        config = tmp_path / "langgraph.json"
        config.write_text(
            '{"graphs": {}, "checkpointer": {"ttl": {"strategy": "delete", '
            '"sweep_interval_minutes": 60, "default_ttl": 43200}}}'
        )
        dry = run_cli("sweep", "--config", str(config), "--dry-run", url=fresh_database_url)
        assert dry.returncode == 0, dry.stderr
        assert "would remove 3 expired thread(s) (strategy delete, default TTL 43200 min)" in (
            dry.stdout
        )
        assert len(await rows_by_thread(engine)) == 4  # a dry run changes nothing

        # On a terminal, a progress bar (stderr) as the batches go.
        swept, bar = run_cli_on_a_terminal(
            "sweep", "--config", str(config), "--batch-size", "1", url=fresh_database_url
        )
        assert swept.returncode == 0, bar
        assert f"[{'#' * 10}{'.' * 20}] 1/3 threads" in bar
        assert f"[{'#' * 30}] 3/3 threads" in bar
        assert "removed 3 expired thread(s)" in swept.stdout
        assert "deleted 1 expired item(s)" in swept.stdout
        assert set(await rows_by_thread(engine)) == {"recent"}
        async with engine.connect() as conn:
            keys = set((await conn.execute(text("SELECT key FROM store"))).scalars())
        assert keys == {"alive"}

        bad = run_cli("sweep", "--default-ttl", "-5", url=fresh_database_url)
        assert bad.returncode == 2 and "default_ttl" in bad.stderr
    finally:
        await engine.dispose()


async def test_prune_keep_latest_refuses_delta_channel_threads_in_one_line(
    engine: AsyncEngine, database_url: str
) -> None:
    from graphs import build_delta_graph
    from langgraph_sqlalchemy import AsyncSQLAlchemySaver
    from retention_helpers import age

    graph = build_delta_graph().compile(checkpointer=AsyncSQLAlchemySaver(engine))
    await graph.ainvoke({"items": [], "rounds": 0}, {"configurable": {"thread_id": "delta"}})
    before = await _checkpoint_counts(database_url)
    await age(engine)
    result = run_cli("prune", "--older-than", "30d", "--quiet", url=database_url)
    assert result.returncode == 2, result.stderr
    line = _one_error_line(result)
    assert line.startswith(
        "langgraph-sqlalchemy: prune: keep_latest can't prune threads that use a DeltaChannel: "
        "delta; --strategy delete"
    ), line
    assert await _checkpoint_counts(database_url) == before


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"checkpointer": []}', "checkpointer must be an object, got an array"),
        ('{"checkpointer": "delete"}', "checkpointer must be an object, got a string"),
        ('{"checkpointer": {"ttl": "60"}}', "checkpointer.ttl must be an object"),
        ('{"checkpointer": {"ttl": 60}}', "checkpointer.ttl must be an object"),
        ("[1]", "must hold a JSON object (a langgraph.json), got an array"),
        ('{"checkpointer": {"ttl": {"default_tll": 5}}}', "unknown checkpointer ttl keys"),
        ('{"checkpointer": {"ttl": {"default_ttl": "60"}}}', "default_ttl"),
        ('{"checkpointer": {"ttl": {"sweep_limit": 0}}}', "sweep_limit"),
        ('{"checkpointer": {"ttl": {"sweep_interval_minutes": -1}}}', "sweep_interval_minutes"),
        ("{bad", "cannot read"),
    ],
)
def test_sweep_refuses_a_config_of_the_wrong_shape(
    database_url: str, tmp_path: Path, document: str, message: str
) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(document)
    result = run_cli("sweep", "--config", str(config), "--dry-run", url=database_url)
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_error_line(result)
    assert line.startswith(f"langgraph-sqlalchemy: sweep: {config}") or (
        line.startswith(f"langgraph-sqlalchemy: sweep: cannot read {config}")
    ), line
    assert message in line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("document", "missing"),
    [('{"graphs": {}}', "checkpointer"), ('{"checkpointer": {"serde": {}}}', "checkpointer.ttl")],
)
def test_sweep_says_when_its_config_configures_nothing(
    engine: AsyncEngine, database_url: str, tmp_path: Path, document: str, missing: str
) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(document)
    result = run_cli("sweep", "--config", str(config), url=database_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"removed 0 expired thread(s) (strategy delete, no default TTL: {config} has no "
        f"{missing})"
    )


async def test_sweep_dry_run_is_what_the_sweep_does_within_sweep_limit(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    from langgraph_sqlalchemy import AsyncSQLAlchemySaver
    from retention_helpers import LONG_AGO, age, rows_by_thread, write_thread, write_threads

    await write_threads(AsyncSQLAlchemySaver(engine), ["t0", "t2", "t3", "t4"])
    quiet = AsyncSQLAlchemySaver(engine, track_activity=False)  # upstream-like: no row yet
    await write_thread(quiet, "t1", ts=LONG_AGO)
    await age(engine)
    config = tmp_path / "langgraph.json"
    config.write_text('{"checkpointer": {"ttl": {"default_ttl": 43200, "sweep_limit": 2}}}')
    policy = "strategy delete, default TTL 43200 min, sweep_limit 2"

    dry = run_cli("sweep", "--config", str(config), "--dry-run", url=database_url)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[:3] == [
        f"would remove 2 expired thread(s) ({policy}); 5 expired in all",
        "  t0",
        "  t1",
    ]
    swept = run_cli("sweep", "--config", str(config), url=database_url)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.splitlines()[0] == f"removed 2 expired thread(s) ({policy})"
    assert set(await rows_by_thread(engine)) == {"t2", "t3", "t4"}

    dry = run_cli("sweep", "--config", str(config), "--dry-run", url=database_url)
    assert dry.stdout.splitlines()[:3] == [
        f"would remove 2 expired thread(s) ({policy}); 3 expired in all", "  t2", "  t3",
    ]
    # The flags override the file's keys; the limit stays.
    all_due = run_cli(
        "sweep", "--config", str(config), "--default-ttl", "60", "--dry-run", url=database_url
    )
    assert all_due.stdout.splitlines()[0] == (
        "would remove 2 expired thread(s) (strategy delete, default TTL 60 min, sweep_limit 2); "
        "3 expired in all"
    )


async def test_sweep_keep_latest_counts_only_threads_it_pruned(
    engine: AsyncEngine, database_url: str
) -> None:
    from langgraph_sqlalchemy import AsyncSQLAlchemySaver
    from retention_helpers import age, rows_by_thread, write_thread

    saver = AsyncSQLAlchemySaver(engine)
    await write_thread(saver, "long")
    await write_thread(saver, "single", 1)
    await age(engine)
    options = ["sweep", "--strategy", "keep_latest", "--default-ttl", "60", "--quiet"]
    policy = "strategy keep_latest, default TTL 60 min"

    dry = run_cli(*options, "--dry-run", url=database_url)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[:2] == [f"would prune 1 expired thread(s) ({policy})", "  long"]
    first = run_cli(*options, url=database_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == f"pruned 1 expired thread(s) ({policy})"
    assert {t: rows["checkpoints"] for t, rows in (await rows_by_thread(engine)).items()} == {
        "long": 1, "single": 1,
    }
    await age(engine)  # a TTL later: both due again, neither has anything to prune
    dry = run_cli(*options, "--dry-run", url=database_url)
    assert dry.stdout.splitlines()[0] == f"would prune 0 expired thread(s) ({policy})"
    again = run_cli(*options, url=database_url)
    assert again.stdout.splitlines()[0] == f"pruned 0 expired thread(s) ({policy})"


def test_errors_name_the_command_not_the_library_call(database_url: str) -> None:
    for command in (["sweep"], ["sweep", "--dry-run"]):
        result = run_cli(*command, url=UNREACHABLE)
        assert result.returncode == 3
        line = _one_error_line(result)  # no retry notices before it
        assert line.startswith(
            "langgraph-sqlalchemy: sweep: could not reach PostgreSQL at 127.0.0.1:1 ("
        ), line
        assert "attempts in" in line and "asweep_ttl" not in line
    for command in (["stats"], ["prune", "--older-than", "1d"]):
        result = run_cli(*command, url=UNREACHABLE)
        assert result.returncode == 3
        assert _one_error_line(result).startswith(
            f"langgraph-sqlalchemy: {command[0]}: could not reach PostgreSQL at 127.0.0.1:1 ("
        )
    # --verbose shows the retries, in the command's terms too.
    verbose = run_cli("sweep", "--verbose", url=UNREACHABLE)
    assert verbose.returncode == 3
    *retries, last = verbose.stderr.splitlines()
    assert retries and all(
        r.startswith("langgraph-sqlalchemy: sweep: transient database error (attempt ")
        for r in retries
    ), verbose.stderr
    assert last.startswith("langgraph-sqlalchemy: sweep: could not reach PostgreSQL")
    # A database that answers, without the tables: the failure is the command's.
    for command in (["sweep"], ["sweep", "--dry-run"], ["prune", "--older-than", "1d"]):
        result = run_cli(*command, "--schema", "no_such_schema", url=database_url)
        assert result.returncode == 3, result.stderr
        line = _one_error_line(result)
        assert line.startswith(f"langgraph-sqlalchemy: {command[0]} failed (42P01): "), line
        assert "langgraph-sqlalchemy upgrade" in line
        for internal in ("asweep_ttl", "expired_threads", "plan_sweep", "aprune"):
            assert internal not in line


@pytest.mark.vector
async def test_vectors_creates_the_vector_layer_and_refuses_other_dims(
    fresh_database_url: str,
) -> None:
    assert run_cli("upgrade", url=fresh_database_url).returncode == 0
    made = run_cli(
        "vectors", "--dims", "8", "--type", "halfvec", "--distance", "l2", "--index", "hnsw",
        "--m", "8", url=fresh_database_url,
    )
    assert made.returncode == 0, made.stderr
    assert "halfvec(8)" in made.stdout
    engine = create_engine(fresh_database_url)
    try:
        async with engine.connect() as conn:
            indexdef = (
                await conn.execute(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                    {"n": "store_vectors_embedding_idx"},
                )
            ).scalar_one()
        assert "hnsw" in indexdef and "halfvec_l2_ops" in indexdef
    finally:
        await engine.dispose()
    again = run_cli("vectors", "--dims", "8", "--type", "halfvec", url=fresh_database_url)
    assert again.returncode == 0, again.stderr
    other = run_cli("vectors", "--dims", "16", url=fresh_database_url)
    assert other.returncode == 4
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "16" in lines[0] and "8" in lines[0], other.stderr


# --- issue 14 ----------------------------------------------------------------------------------


def _postgres_scheme(url: str) -> str:
    """The same URL as Heroku-style hosts write it: ``postgres://``."""
    assert url.startswith("postgresql://"), url
    return "postgres://" + url.removeprefix("postgresql://")


async def test_postgres_scheme_urls_work_in_the_cli_and_from_conn_string(
    fresh_database_url: str,
) -> None:
    from langgraph_sqlalchemy import AsyncSQLAlchemySaver, AsyncSQLAlchemyStore

    url = _postgres_scheme(fresh_database_url)
    upgraded = run_cli("upgrade", url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    checked = run_cli("check", "--database-url", url)
    assert checked.returncode == 0 and "up to date" in checked.stdout, checked.stderr
    async with AsyncSQLAlchemySaver.from_conn_string(url) as saver:
        await saver.setup()
        assert [t async for t in saver.alist(None)] == []
    async with AsyncSQLAlchemyStore.from_conn_string(url) as store:
        await store.aput(("ns",), "k", {"v": 1})
        item = await store.aget(("ns",), "k")
        assert item is not None and item.value == {"v": 1}
    alembic = _alembic("check", url=url)  # the repo's env.py reads DATABASE_URL too
    assert "Can't load plugin" not in alembic.stderr, alembic.stderr
    assert "No new upgrade operations detected" in alembic.stdout + alembic.stderr


def _alembic(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "DATABASE_URL": url},
    )


def _cli_with_closed_stdout(*args: str, url: str) -> tuple[int, str]:
    """Run the CLI with a stdout whose reader has gone (``| head -1`` after its line)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "langgraph_sqlalchemy", *args, "--database-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command has connected, let alone written
    stderr = proc.stderr.read()
    return proc.wait(timeout=120), stderr


def test_a_closed_stdout_is_a_quiet_exit_not_a_database_error(database_url: str) -> None:
    code, stderr = _cli_with_closed_stdout("stats", url=database_url)
    assert (code, stderr) == (141, "")
    code, stderr = _cli_with_closed_stdout("check", url=database_url)
    assert (code, stderr) == (141, "")
    # Real pipes, as a shell runs them: every line before the reader left was delivered.
    shell = subprocess.run(
        f"{sys.executable} -m langgraph_sqlalchemy stats --database-url '{database_url}' "
        "| head -1",
        shell=True, capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert shell.stdout.split() == ["table", "rows", "size"] and shell.stderr == ""


def test_upgrade_and_downgrade_log_each_revision(fresh_database_url: str) -> None:
    history = sorted(p.stem for p in (ROOT / "src/langgraph_sqlalchemy/migrations/versions")
                     .glob("0*.py"))
    up = run_cli("upgrade", url=fresh_database_url)
    assert up.returncode == 0, up.stderr
    lines = up.stderr.splitlines()
    assert len(lines) == len(history), up.stderr
    for line, before, after in zip(lines, ["base", *history], history, strict=False):
        assert line.startswith(f"langgraph-sqlalchemy: upgrade {before} -> {after} in "), line
    assert lines[0].endswith(": Checkpoint tables (upstream checkpoint migrations 0-5).")
    assert up.stdout == f"database at revision {history[-1]}\n"
    again = run_cli("upgrade", url=fresh_database_url)
    assert again.returncode == 0 and again.stderr == "", again.stderr  # nothing ran
    down = run_cli("downgrade", history[-3], url=fresh_database_url)
    assert down.returncode == 0, down.stderr
    assert [line.split(" in ")[0] for line in down.stderr.splitlines()] == [
        f"langgraph-sqlalchemy: downgrade {history[-1]} -> {history[-2]}",
        f"langgraph-sqlalchemy: downgrade {history[-2]} -> {history[-3]}",
    ]


async def test_check_reports_a_vector_layer_missing_where_pgvector_is_not_installed(
    fresh_database_url: str, pg_server: Any
) -> None:
    """Runs on every server: with pgvector available the fix is the vectors command, without
    it the message says to install pgvector first."""
    assert run_cli("upgrade", url=fresh_database_url).returncode == 0
    result = run_cli("check", "--dims", "8", "--type", "halfvec", url=fresh_database_url)
    assert result.returncode == 1, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("the vector layer is missing: ")
    if pg_server.has_pgvector:
        assert "the pgvector extension is not created in this database" in line
    else:
        assert "the server has no pgvector extension" in line and "pgvector#installation" in line
    assert "langgraph-sqlalchemy vectors --dims 8 --type halfvec" in line
    usage = run_cli("check", "--type", "halfvec", url=fresh_database_url)
    assert usage.returncode == 2
    assert usage.stderr == "langgraph-sqlalchemy: check: the vector layer options need --dims\n"


def _fix_in(line: str) -> list[str]:
    """The langgraph-sqlalchemy command a check line names, as arguments."""
    command = line.rsplit("langgraph-sqlalchemy ", 1)[1]
    return shlex.split(command.split(" (")[0])


@pytest.mark.vector
async def test_check_names_the_vectors_command_that_fixes_the_layer(
    fresh_database_url: str,
) -> None:
    url = fresh_database_url
    assert run_cli("upgrade", url=url).returncode == 0
    options = ["--dims", "8", "--type", "halfvec", "--distance", "l2", "--m", "8"]
    missing = run_cli("check", *options, url=url)
    assert missing.returncode == 1
    assert "the vector layer is missing" in missing.stdout
    fix = _fix_in(missing.stdout.strip())
    assert fix == ["vectors", *options]
    assert run_cli(*fix, url=url).returncode == 0

    ok = run_cli("check", *options, url=url)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.strip().endswith("vector layer ok: halfvec(8), l2 distance, hnsw index")

    other_dims = run_cli("check", "--dims", "16", url=url)
    assert other_dims.returncode == 1
    assert other_dims.stdout.startswith(
        "store_vectors has embedding halfvec(8), but the index is configured for vector(16)"
    )
    other_index = run_cli("check", "--dims", "8", "--type", "halfvec", url=url)
    assert other_index.returncode == 1
    assert "not the configured hnsw index with halfvec_cosine_ops" in other_index.stdout
    assert "DROP INDEX CONCURRENTLY store_vectors_embedding_idx" in other_index.stdout

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX store_vectors_embedding_idx"))
    finally:
        await engine.dispose()
    no_index = run_cli("check", *options, url=url)
    assert no_index.returncode == 1
    assert "ANN index store_vectors_embedding_idx is missing" in no_index.stdout
    assert run_cli(*_fix_in(no_index.stdout.strip()), url=url).returncode == 0
    assert run_cli("check", *options, url=url).returncode == 0
    # A flat layer needs no index.
    assert run_cli("check", "--dims", "8", "--type", "halfvec", "--index", "flat",
                   url=url).returncode == 0
