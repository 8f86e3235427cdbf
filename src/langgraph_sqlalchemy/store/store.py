"""``AsyncSQLAlchemyStore``: LangGraph's long-term memory store on SQLAlchemy Core + asyncpg.

The class is thin: it validates a batch, embeds what needs embedding (before any connection
is taken: embedding calls can be slow), then runs the whole batch in one
:meth:`Database.run` transaction — reads first, then writes — through
:class:`~langgraph_sqlalchemy.store.repository.StoreRepository`. Concurrent calls coalesce into
one :meth:`abatch` through ``AsyncBatchedBaseStore``.

It accepts what upstream's ``AsyncPostgresStore`` accepts (docs/differences.md lists the
exceptions): namespaces as any sequence of labels, ``aput(ns, key, None)`` as a delete, and the
public attributes upstream reads at call time — ``ttl_config`` (``omit_expired``,
``default_ttl``, ``refresh_on_read``), ``index_config`` and ``embeddings`` — are read at every
call here too, so changing them after construction takes effect on the next call.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import uuid
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    NOT_PROVIDED,
    GetOp,
    Item,
    ListNamespacesOp,
    NamespacePath,
    NotProvided,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
)
from langgraph.store.base.batch import AsyncBatchedBaseStore
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import migrations
from ..db import Database, RetryPolicy, Rows, sqlstate
from ..db.statements import BoundStatement
from ..engine import create_engine
from ..errors import DatabaseError, InvalidInputError
from ..input_errors import InvalidInputTypeError, check_encodable
from ..schema import get_tables, validate_schema_name, vector_embedding_table
from ..telemetry import WaitingCallers, traced
from .embedding import (
    FieldPath,
    IndexSettings,
    parse_index_config,
    parse_paths,
    texts_to_embed,
    unique_texts,
)
from .filters import ParsedFilter, parse_filter
from .namespaces import namespace_from_prefix, namespace_to_prefix, validate_labels
from .repository import ItemRow, StoreRepository, VectorRow
from .ttl import TTLSweeper, check_sweep_interval, check_ttl, check_ttl_config
from .values import check_json_value, check_value_type, encode_value
from .vector_layer import ensure_vector_layer
from .vector_search import VectorSearch, VectorSearcher

__all__ = ["AsyncSQLAlchemyStore"]

Pair = tuple[str, str]

# Postgres' "program limit exceeded" (54000): e.g. a namespace + key too large for the
# primary-key btree (about 2.7 kB after compression).
_PROGRAM_LIMIT_EXCEEDED = "54000"


_BOOLS = (True, False)


@dataclass
class _Put:
    """One put of a batch, validated: ``encoded`` is None for a delete."""

    pair: Pair
    op: PutOp
    encoded: str | None = None
    ttl: float | None = None
    paths: tuple[FieldPath, ...] = ()


@dataclass
class _Plan:
    """A validated batch: what to read, what to write, what to embed."""

    gets: list[tuple[int, GetOp, Pair]] = field(default_factory=list)
    searches: list[tuple[int, SearchOp, ParsedFilter | None]] = field(default_factory=list)
    listings: list[tuple[int, ListNamespacesOp]] = field(default_factory=list)
    # (namespace, key) -> the put; the last put of a key wins.
    puts: dict[Pair, _Put] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class _Statements:
    """The statement builders of one configuration (expired rows hidden or not, an index or
    none), built on first use and kept: switching ``omit_expired`` back and forth costs
    nothing after the first call of each."""

    repo: StoreRepository
    searcher: VectorSearcher | None


def _check_key(key: object, what: str) -> str:
    """Keys are text. An int or a UUID is taken as its ``str()``, which is the text upstream's
    driver stores for them; other types are refused (upstream would store the database's text
    form of a float, bytes or a date, or fail)."""
    if not isinstance(key, str):
        if isinstance(key, (int, uuid.UUID)) and not isinstance(key, bool):
            return str(key)
        raise InvalidInputTypeError(
            f"{what}: keys must be strings (or ints or UUIDs), got {type(key).__name__}"
        )
    if "\x00" in key:
        raise InvalidInputError(f"{what}: key {key!r} contains a NUL character")
    check_encodable(key, f"{what}: key {key!r}")
    return key


def _check_page(limit: object, offset: object, what: str) -> None:
    for name, number in (("limit", limit), ("offset", offset)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise InvalidInputError(
                f"{what}: {name} must be a non-negative integer, got {number!r}"
            )


def _check_max_depth(max_depth: object) -> None:
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1
    ):
        raise InvalidInputError(f"max_depth must be a positive integer or None, got {max_depth!r}")


def _index_paths(index: object, what: str) -> tuple[FieldPath, ...]:
    """A put's ``index=[...]`` paths: a list or tuple of paths, or one path as a str (upstream
    iterates a str, indexing one path per character)."""
    if isinstance(index, str):
        return parse_paths([index])
    if not isinstance(index, Sequence) or isinstance(index, (bytes, bytearray)):
        raise InvalidInputTypeError(
            f"{what}: index must be False, None or a list of field paths, got {index!r}"
        )
    return parse_paths(list(index))


def _check_vector(index: IndexSettings, vector: Sequence[float]) -> list[float]:
    values = list(map(float, vector))
    if len(values) != index.dims:
        raise InvalidInputError(
            f"the embedding function returned {len(values)} dimensions; the index is "
            f"configured for dims={index.dims}"
        )
    # NaN and infinities carry into a sum, so a finite sum clears every element at C
    # speed; only a non-finite one (which may just be overflow) needs the close look.
    if not math.isfinite(sum(values)) and not all(map(math.isfinite, values)):
        raise InvalidInputError("the embedding function returned NaN or Infinity")
    return values


def _op_key(op: object) -> Hashable:
    """What :meth:`AsyncSQLAlchemyStore._callers` notes a queued operation under."""
    if isinstance(op, GetOp):
        return ("get", tuple(op.namespace), op.key)
    if isinstance(op, PutOp):
        return ("put", tuple(op.namespace), op.key)
    if isinstance(op, SearchOp):
        return ("search", tuple(op.namespace_prefix), op.query, op.limit, op.offset)
    if isinstance(op, ListNamespacesOp):
        return ("list", op.max_depth, op.limit, op.offset)
    return None


def _namespace_ids(namespace: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Span attributes identifying a call's namespace (recorded on opt-in only)."""
    namespace = kwargs.get("namespace", kwargs.get("namespace_prefix", namespace))
    if namespace is None:
        return {}
    return {"langgraph.store.namespace": ".".join(map(str, namespace))}


class AsyncSQLAlchemyStore(AsyncBatchedBaseStore):
    """A LangGraph ``BaseStore`` on the host's ``AsyncEngine`` (or ``AsyncConnection``).

    Reads and writes upstream ``langgraph-checkpoint-postgres``'s ``store`` and
    ``store_vectors`` tables. ``index`` is upstream's ``PostgresIndexConfig`` (vector search
    with pgvector), ``ttl`` its ``TTLConfig`` (plus ``omit_expired``). Must be created inside a
    running event loop (the loop the batched calls run on).

    ``ttl_config``, ``index_config`` and ``embeddings`` are read at every call, as upstream
    reads them: assigning them (or changing ``ttl_config`` in place) takes effect on the next
    call. ``conn`` and ``schema`` are fixed at construction.
    """

    supports_ttl: bool = True

    def __init__(
        self,
        conn: AsyncEngine | AsyncConnection,
        *,
        index: Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
        deserializer: Callable[[bytes], dict[str, Any]] | None = None,
        schema: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        # The base class's __del__ reads _task; a constructor that fails validation below
        # must not leave it missing.
        self._task = None
        self.db = Database(conn, retry=retry)
        self._schema = validate_schema_name(schema)
        self._tables = get_tables(self._schema)
        self._loads = deserializer
        self.ttl_config: TTLConfig | None = check_ttl_config(ttl)
        # A copy, as upstream keeps one: the caller's dict can change without reaching us;
        # the store's own can (see _current_index).
        self.index_config: dict[str, Any] | None = dict(index) if index else None
        self.embeddings: Embeddings | None = None
        # The index_config last parsed (a copy, to notice changes made in place) and its
        # settings; the statement builders per (omit_expired, index settings).
        self._parsed_index: tuple[dict[str, Any], IndexSettings] | None = None
        self._built: dict[tuple[bool, int], _Statements] = {}
        self._current_index()
        # Upstream exposes the loop it was created on; the batched calls run there.
        self.loop = asyncio.get_running_loop()
        # Through a weak reference: a bound method here would make the store part of a
        # reference cycle, freed only by the cycle collector, which LangGraph's batching base
        # class does not survive quietly (its batch task is cancelled in __del__ and destroyed
        # pending in the same collection: "Task was destroyed but it is pending!").
        self._sweeper = TTLSweeper(_weak_sweep(self))
        # Tracing contexts of callers whose ops wait for the batch task (see telemetry).
        self._callers = WaitingCallers()
        # The batching base class starts its batch task here; in an empty context, so that
        # the task's batches are not part of whatever span was current at construction.
        contextvars.Context().run(super().__init__)

    @property
    def conn(self) -> AsyncEngine | AsyncConnection:
        """The engine or connection the store was created on (upstream: its psycopg
        connection or pool). Fixed: create another store for another database."""
        return self.db.bind

    @property
    def schema(self) -> str | None:
        """The Postgres schema the tables are in (None: unqualified). Fixed at construction."""
        return self._schema

    # --- configuration read at call time ---------------------------------------------------------

    def _omit_expired(self) -> bool:
        config = self.ttl_config
        if not config:
            return False
        if not isinstance(config, Mapping):
            raise InvalidInputError(
                f"store.ttl_config must be a TTLConfig dict or None, got {type(config).__name__}"
            )
        return bool(config.get("omit_expired"))

    def _default_ttl(self) -> float | None:
        config = self.ttl_config
        if not config or not isinstance(config, Mapping):
            return None
        return check_ttl(config.get("default_ttl"), what="ttl_config['default_ttl']")

    def _current_index(self) -> IndexSettings | None:
        """The index settings of ``index_config`` as it is now (None: no index).

        Upstream reads ``index_config`` at every put and search; so do we. The last parsed
        settings are reused while the config compares equal (an in-place change, such as a
        new ``distance_type``, is noticed too); a config whose ``embed`` changed also becomes
        the store's ``embeddings``.
        """
        config = self.index_config
        if not config:
            return None
        parsed = self._parsed_index
        if parsed is not None and parsed[0] == config:
            return parsed[1]
        if not isinstance(config, Mapping):
            raise InvalidInputError(
                f"store.index_config must be an index config dict or None, "
                f"got {type(config).__name__}"
            )
        settings = parse_index_config(config)
        if parsed is None or parsed[0].get("embed") is not config.get("embed"):
            self.embeddings = settings.embeddings
        self._parsed_index = (dict(config), settings)
        self._built.clear()
        return settings

    def _current_embeddings(self) -> Embeddings:
        embeddings = self.embeddings
        if embeddings is None:
            raise InvalidInputError(
                "an index is configured but store.embeddings is None: set it to an Embeddings "
                "(or an embedding function), or set store.index_config to None"
            )
        if not isinstance(embeddings, Embeddings):
            # A function, as index_config["embed"] may be one.
            embeddings = self.embeddings = ensure_embeddings(embeddings)
        return embeddings

    def _statements(self, omit_expired: bool, index: IndexSettings | None) -> _Statements:
        key = (omit_expired, id(index))
        built = self._built.get(key)
        if built is None:
            vectors = (
                vector_embedding_table(self._schema, index.vector_type, index.dims)
                if index is not None
                else None
            )
            repo = StoreRepository(
                self._tables,
                vectors=vectors,
                index=index,
                omit_expired=omit_expired,
                loads=self._loads,
            )
            searcher = VectorSearcher(repo) if index is not None else None
            built = self._built[key] = _Statements(repo, searcher)
        return built

    def _statements_now(self) -> _Statements:
        """The statement builders for a call that needs no index (sweeps, reads without a
        query): the last index settings stay, so the cache is not rebuilt needlessly."""
        index = self._parsed_index[1] if self._parsed_index is not None else None
        return self._statements(self._omit_expired(), index)

    # --- construction and schema -----------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        pipeline: bool = False,
        pool_config: Mapping[str, Any] | None = None,
        index: Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
        deserializer: Callable[[bytes], dict[str, Any]] | None = None,
        schema: str | None = None,
        pgbouncer: bool = False,
        retry: RetryPolicy | None = None,
        **engine_kwargs: Any,
    ) -> AsyncIterator[AsyncSQLAlchemyStore]:
        """A store on an engine of its own, disposed on exit.

        ``pipeline`` is accepted for upstream's callers and changes nothing: a batch is
        already one statement (or one transaction) on one connection.
        """
        engine = create_engine(
            conn_string, pool_config=pool_config, pgbouncer=pgbouncer, **engine_kwargs
        )
        try:
            store = cls(
                engine,
                index=index,
                ttl=ttl,
                deserializer=deserializer,
                schema=schema,
                retry=retry,
            )
            try:
                yield store
            finally:
                await store.stop_ttl_sweeper()
        finally:
            await engine.dispose()

    @traced("setup", "store")
    async def setup(self) -> None:
        """Migrate the schema to head and, with an index configured, create the vector layer.

        Idempotent and safe to run from several processes at once.
        """
        await migrations.upgrade(self.db.bind, schema=self._schema)
        index = self._current_index()
        if index is not None:
            await ensure_vector_layer(
                self.db.bind,
                dims=index.dims,
                vector_type=index.vector_type,
                distance_type=index.distance_type,
                kind=index.kind,
                index_params=index.index_params,
                schema=self._schema,
            )

    # --- TTL -------------------------------------------------------------------------------------

    @traced("sweep_ttl", "store")
    async def sweep_ttl(self) -> int:
        """Delete expired items now; returns how many were deleted."""
        repo = self._statements_now().repo
        return await self.db.run(repo.delete_expired, op="store.sweep_ttl", single_statement=True)

    async def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> asyncio.Task[None]:
        """Sweep expired items every ``sweep_interval_minutes`` (default: the TTLConfig's, else
        5) in a background task; returns the task (already running: the same task)."""
        config = self.ttl_config if isinstance(self.ttl_config, Mapping) else None
        interval = (
            sweep_interval_minutes or (config or {}).get("sweep_interval_minutes") or 5
        )
        return self._sweeper.start(check_sweep_interval(interval))

    async def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; False if it did not stop within ``timeout`` seconds."""
        return await self._sweeper.stop(timeout)

    async def __aenter__(self) -> AsyncSQLAlchemyStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.stop_ttl_sweeper()

    # --- per-call validation --------------------------------------------------------------------
    # Concurrent calls coalesce into one abatch, and one failing op fails every call of that
    # batch. Bad input is therefore refused here, in the caller's own call, before it joins a
    # batch; abatch validates again for ops passed to it directly. Namespaces leave here as
    # tuples: the batching base class keys its de-duplication on them.

    @traced("aget", "store", _namespace_ids)
    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        labels = validate_labels(namespace)
        text_key = _check_key(key, "get")
        self._callers.note(("get", labels, text_key))
        return await super().aget(labels, text_key, refresh_ttl=refresh_ttl)

    @traced("asearch", "store", _namespace_ids)
    async def asearch(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool | None = None,
    ) -> list[SearchItem]:
        labels = validate_labels(namespace_prefix, what="namespace prefix")
        _check_page(limit, offset, "search")
        parse_filter(filter)
        self._check_query(query)
        self._callers.note(("search", labels, query, limit, offset))
        return await super().asearch(
            labels,
            query=query,
            filter=filter,
            limit=limit,
            offset=offset,
            refresh_ttl=refresh_ttl,
        )

    @traced("aput", "store", _namespace_ids)
    async def aput(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Mapping[str, Any],
        index: Literal[False] | list[str] | None = None,
        *,
        ttl: float | NotProvided | None = NOT_PROVIDED,
    ) -> None:
        labels = validate_labels(namespace)
        what = f"put {labels!r}/{key!r}"
        text_key = _check_key(key, what)
        # A put without a value is a delete (PutOp's contract); its ttl and index mean nothing.
        if value is not None:
            check_value_type(value, what=what)
            check_json_value(value, what=what)
            if isinstance(ttl, NotProvided):
                self._default_ttl()
            else:
                check_ttl(ttl)
            if index not in (None, False) and self._current_index() is not None:
                _index_paths(index, what)
        self._callers.note(("put", labels, text_key))
        await super().aput(labels, text_key, value, index, ttl=ttl)

    @traced("adelete", "store", _namespace_ids)
    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        labels = validate_labels(namespace)
        text_key = _check_key(key, "delete")
        self._callers.note(("put", labels, text_key))
        await super().adelete(labels, text_key)

    @traced("alist_namespaces", "store")
    async def alist_namespaces(
        self,
        *,
        prefix: NamespacePath | None = None,
        suffix: NamespacePath | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        prefix_labels = validate_labels(prefix, what="prefix") if prefix is not None else None
        suffix_labels = validate_labels(suffix, what="suffix") if suffix is not None else None
        _check_max_depth(max_depth)
        _check_page(limit, offset, "list_namespaces")
        self._callers.note(("list", max_depth, limit, offset))
        return await super().alist_namespaces(
            prefix=prefix_labels,
            suffix=suffix_labels,
            max_depth=max_depth,
            limit=limit,
            offset=offset,
        )

    def _batch_callers(self, ops: object) -> list[Any]:
        """The tracing contexts of the callers whose queued ops this batch runs."""
        if not isinstance(ops, Sequence):
            return []
        return self._callers.take([_op_key(op) for op in ops])

    def _check_query(self, query: object) -> None:
        # Without an index upstream ignores the query (a plain search), whatever it is.
        if query is not None and not isinstance(query, str) and self._current_index() is not None:
            raise InvalidInputTypeError(
                f"search query must be a string, got {type(query).__name__}"
            )

    # --- batches ---------------------------------------------------------------------------------

    def _plan(self, ops: Sequence[Op], index: IndexSettings | None) -> _Plan:
        plan = _Plan()
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                labels = validate_labels(op.namespace)
                key = _check_key(op.key, "get")
                if labels is not op.namespace or key is not op.key or op.refresh_ttl not in _BOOLS:
                    op = op._replace(namespace=labels, key=key, refresh_ttl=bool(op.refresh_ttl))
                plan.gets.append((i, op, (namespace_to_prefix(labels), key)))
            elif isinstance(op, SearchOp):
                labels = validate_labels(op.namespace_prefix, what="namespace prefix")
                _check_page(op.limit, op.offset, "search")
                if index is None:
                    op = op._replace(query=None)
                elif op.query is not None and not isinstance(op.query, str):
                    raise InvalidInputTypeError(
                        f"search query must be a string, got {type(op.query).__name__}"
                    )
                op = op._replace(namespace_prefix=labels, refresh_ttl=bool(op.refresh_ttl))
                plan.searches.append((i, op, parse_filter(op.filter)))
            elif isinstance(op, ListNamespacesOp):
                for condition in op.match_conditions or ():
                    validate_labels(condition.path, what=f"{condition.match_type} condition")
                    if condition.match_type not in ("prefix", "suffix"):
                        raise InvalidInputError(f"unknown match_type {condition.match_type!r}")
                _check_max_depth(op.max_depth)
                _check_page(op.limit, op.offset, "list_namespaces")
                plan.listings.append((i, op))
            elif isinstance(op, PutOp):
                labels = validate_labels(op.namespace)
                key = _check_key(op.key, "put")
                put = _Put((namespace_to_prefix(labels), key), op)
                if op.value is not None:
                    if not labels:
                        raise InvalidInputError("put: the namespace cannot be empty")
                    what = f"put {labels!r}/{key!r}"
                    put.encoded = encode_value(op.value, what=what)
                    put.ttl = check_ttl(op.ttl)
                    if index is not None and op.index is not False:
                        put.paths = (
                            index.fields if op.index is None else _index_paths(op.index, what)
                        )
                # Re-inserting moves the entry to the end: writes apply in last-put order.
                plan.puts.pop(put.pair, None)
                plan.puts[put.pair] = put
            else:
                raise InvalidInputError(f"unknown store operation {type(op).__name__}")
        return plan

    async def _embed_queries(
        self,
        searches: Sequence[tuple[int, SearchOp, ParsedFilter | None]],
        index: IndexSettings | None,
    ) -> dict[str, list[float]]:
        if index is None:
            return {}
        queries = list(dict.fromkeys(op.query for _, op, _ in searches if op.query))
        if not queries:
            return {}
        embeddings = self._current_embeddings()
        vectors = await asyncio.gather(*(embeddings.aembed_query(q) for q in queries))
        return {q: _check_vector(index, v) for q, v in zip(queries, vectors, strict=True)}

    async def _embed_puts(
        self, plan: _Plan, index: IndexSettings | None
    ) -> tuple[list[Pair], list[VectorRow]]:
        """The items whose vectors this batch replaces, and their new vectors."""
        if index is None:
            return [], []
        owners: list[Pair] = []
        wanted: list[tuple[Pair, str, str]] = []
        for put in plan.puts.values():
            if put.encoded is None or put.op.value is None:
                continue
            owners.append(put.pair)
            wanted.extend(
                (put.pair, name, text) for name, text in texts_to_embed(put.op.value, put.paths)
            )
        owners.sort()
        if not wanted:
            return owners, []
        texts, where = unique_texts([text for _, _, text in wanted])
        embedded = await self._current_embeddings().aembed_documents(texts)
        if len(embedded) != len(texts):
            raise InvalidInputError(
                f"the embedding function returned {len(embedded)} vectors for {len(texts)} texts"
            )
        vectors = [_check_vector(index, v) for v in embedded]
        rows = [
            VectorRow(prefix=pair[0], key=pair[1], field_name=name, embedding=vectors[where[i]])
            for i, (pair, name, _) in enumerate(wanted)
        ]
        rows.sort(key=lambda r: (r.prefix, r.key, r.field_name))
        return owners, rows

    @traced("abatch", "store", parents=lambda self, ops, *_, **__: self._batch_callers(ops))
    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        # The index matters only to puts of values and to searches with a query.
        embeds = any(
            (isinstance(op, PutOp) and op.value is not None)
            or (isinstance(op, SearchOp) and op.query)
            for op in ops
        )
        index = self._current_index() if embeds else None
        plan = self._plan(ops, index)
        query_vectors = await self._embed_queries(plan.searches, index)
        vector_owners, vector_rows = await self._embed_puts(plan, index)
        built = (
            self._statements(self._omit_expired(), index) if embeds else self._statements_now()
        )
        repo = built.repo

        # Rows are written in (prefix, key) order: concurrent batches touching the same keys
        # then lock them in one order and cannot deadlock each other.
        deletes = sorted(put.pair for put in plan.puts.values() if put.encoded is None)
        upserts = sorted(
            (put.pair[0], put.pair[1], put.encoded, put.ttl)
            for put in plan.puts.values()
            if put.encoded is not None
        )
        vector_search = index is not None and any(op.query for _, op, _ in plan.searches)
        writes = repo.bound_writes(deletes, upserts, vector_owners, vector_rows)
        statements = (
            bool(plan.gets) + len(plan.searches) + len(plan.listings) + (writes is not None)
        )

        # A lone vector search on an engine starts with one statement outside any transaction
        # (the ANN scan with its settings, or the filter probe); a transaction follows only if
        # that step could not answer.
        lone: tuple[int, VectorSearch] | None = None
        searcher = built.searcher
        engine_bound = self.db.engine is not None
        if searcher is not None and vector_search and statements == 1 and engine_bound:
            i, search, parsed = plan.searches[0]
            if search.limit > 0 and search.query is not None:
                lone = (i, searcher.start(search, parsed, query_vectors[search.query]))

        refresh: dict[Pair, bool] = {}
        for _, get, pair in plan.gets:
            refresh[pair] = refresh.get(pair, False) or get.refresh_ttl
        ordered = sorted(refresh.items())

        def fill_gets(results: list[Result], found: Mapping[Pair, ItemRow]) -> None:
            for i, _, pair in plan.gets:
                row = found.get(pair)
                results[i] = _to_item(row) if row is not None else None

        async def work(conn: AsyncConnection) -> list[Result]:
            results: list[Result] = [None] * len(ops)
            # Reads first: they see the database as it was before this batch's writes.
            if plan.gets:
                found = await repo.get_items(
                    conn, [pair for pair, _ in ordered], [flag for _, flag in ordered]
                )
                fill_gets(results, found)
            for i, search, parsed in plan.searches:
                if search.query and searcher is not None:
                    rows = await searcher.search(
                        conn,
                        search,
                        parsed,
                        query_vectors[search.query],
                        search=lone[1] if lone is not None and lone[0] == i else None,
                    )
                else:
                    rows = await repo.search_items(conn, search, parsed)
                results[i] = [_to_search_item(row) for row in rows]
            for i, listing in plan.listings:
                results[i] = await repo.list_namespaces(conn, listing)
            # Then the writes, all in this one transaction.
            if writes is not None:
                await writes.execute(conn)
            return results

        Fill = Callable[[list[Result], Rows], None]

        def single_statement() -> tuple[BoundStatement, Fill]:
            """The batch's one statement, and how its rows fill the results."""
            if plan.gets:
                pairs, flags = [pair for pair, _ in ordered], [flag for _, flag in ordered]

                def fill_items(results: list[Result], rows: Rows) -> None:
                    fill_gets(results, repo.items_from_rows(rows))

                return repo.bound_get_items(pairs, flags), fill_items
            if plan.searches:
                i, search, parsed = plan.searches[0]

                def fill_search(results: list[Result], rows: Rows) -> None:
                    results[i] = [_to_search_item(row) for row in repo.items_from_list(rows)]

                return repo.bound_search(search, parsed), fill_search
            if plan.listings:
                j, listing = plan.listings[0]

                def fill_listing(results: list[Result], rows: Rows) -> None:
                    results[j] = repo.namespaces_from_rows(rows)

                return repo.bound_list_namespaces(listing), fill_listing
            assert writes is not None
            return writes, lambda results, rows: None

        # A batch of one statement (a lone get, put, search or listing, the common case) needs
        # no BEGIN/COMMIT around it: one statement is atomic on its own. It goes on the
        # fastest path Database has for a single idempotent statement.
        single = statements == 1 and not vector_search
        try:
            results: list[Result] = [None] * len(ops)
            if single:
                statement, fill = single_statement()
                fill(results, await self.db.fetch(statement, op="store.batch"))
                return results
            if lone is not None and (step := lone[1].next_statement()) is not None:
                found_items = lone[1].consume(await self.db.fetch(step, op="store.batch"))
                if found_items is not None:
                    results[lone[0]] = [_to_search_item(row) for row in found_items]
                    return results
            return await self.db.run(work, op="store.batch")
        except DatabaseError as exc:
            if sqlstate(exc) == _PROGRAM_LIMIT_EXCEEDED:
                raise InvalidInputError(
                    f"a namespace, key or value exceeds a PostgreSQL size limit; nothing of the "
                    f"batch was written ({exc})"
                ) from exc
            raise


def _to_item(row: ItemRow) -> Item:
    return Item(
        value=row.value,
        key=row.key,
        namespace=namespace_from_prefix(row.prefix),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _to_search_item(row: ItemRow) -> SearchItem:
    return SearchItem(
        namespace=namespace_from_prefix(row.prefix),
        key=row.key,
        value=row.value,
        created_at=row.created_at,
        updated_at=row.updated_at,
        score=row.score,
    )


def _weak_sweep(store: AsyncSQLAlchemyStore) -> Callable[[], Awaitable[int]]:
    """``store.sweep_ttl`` without a strong reference to the store (see its ``__init__``).
    A running sweeper keeps its store alive as long as a sweep runs, not between sweeps."""
    method = weakref.WeakMethod(store.sweep_ttl)

    async def sweep() -> int:
        bound = method()
        return 0 if bound is None else await bound()

    return sweep
