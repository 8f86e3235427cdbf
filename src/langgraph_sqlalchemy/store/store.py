"""``AsyncSQLAlchemyStore``: LangGraph's long-term memory store on SQLAlchemy Core + asyncpg.

The class is thin: it validates a batch, embeds what needs embedding (before any connection
is taken: embedding calls can be slow), then runs the whole batch in one
:meth:`Database.run` transaction — reads first, then writes — through
:class:`~langgraph_sqlalchemy.store.repository.StoreRepository`. Concurrent calls coalesce into
one :meth:`abatch` through ``AsyncBatchedBaseStore``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

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
)
from langgraph.store.base.batch import AsyncBatchedBaseStore
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import migrations
from ..db import Database, RetryPolicy, Rows
from ..db.statements import BoundStatement
from ..engine import create_engine
from ..errors import DatabaseError, InvalidInputError
from ..schema import get_tables, validate_schema_name, vector_embedding_table
from ..telemetry import traced
from .embedding import IndexSettings, parse_index_config, parse_paths, texts_to_embed, unique_texts
from .filters import ParsedFilter, parse_filter
from .namespaces import namespace_from_prefix, namespace_to_prefix, validate_labels
from .repository import ItemRow, StoreRepository, VectorRow
from .ttl import TTLSweeper
from .values import check_json_value, encode_value
from .vector_layer import ensure_vector_layer
from .vector_search import VectorSearch, VectorSearcher

__all__ = ["AsyncSQLAlchemyStore"]

Pair = tuple[str, str]

# Postgres' "program limit exceeded" (54000): e.g. a namespace + key too large for the
# primary-key btree (about 2.7 kB after compression).
_PROGRAM_LIMIT_EXCEEDED = "54000"


@dataclass
class _Plan:
    """A validated batch: what to read, what to write, what to embed."""

    gets: list[tuple[int, GetOp, Pair]] = field(default_factory=list)
    searches: list[tuple[int, SearchOp, ParsedFilter | None]] = field(default_factory=list)
    listings: list[tuple[int, ListNamespacesOp]] = field(default_factory=list)
    # (namespace, key) -> (pair, op, encoded value or None for a delete); last put wins.
    puts: dict[tuple[tuple[str, ...], str], tuple[Pair, PutOp, str | None]] = field(
        default_factory=dict
    )


def _check_key(key: object, what: str) -> str:
    if not isinstance(key, str):
        raise InvalidInputError(f"{what}: keys must be strings, got {type(key).__name__}")
    if "\x00" in key:
        raise InvalidInputError(f"{what}: key {key!r} contains a NUL character")
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


def _check_ttl(ttl: object) -> float | None:
    if ttl is None:
        return None
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, (int, float))
        or not math.isfinite(ttl)
        or ttl < 0
    ):
        raise InvalidInputError(
            f"ttl must be a non-negative number of minutes or None, got {ttl!r}"
        )
    return float(ttl)


def _sqlstate(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlstate", None) or getattr(
            getattr(current, "orig", None), "sqlstate", None
        )
        if isinstance(code, str):
            return code
        current = current.__cause__
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
    """

    supports_ttl: bool = True

    def __init__(
        self,
        bind: AsyncEngine | AsyncConnection,
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
        self.db = Database(bind, retry=retry)
        self.schema = validate_schema_name(schema)
        self.ttl_config: TTLConfig | None = self._check_ttl_config(ttl)
        self._index: IndexSettings | None = parse_index_config(index) if index else None
        self.index_config = dict(index) if index else None
        self.embeddings = self._index.embeddings if self._index else None
        tables = get_tables(self.schema)
        vectors = (
            vector_embedding_table(self.schema, self._index.vector_type, self._index.dims)
            if self._index
            else None
        )
        self._repo = StoreRepository(
            tables,
            vectors=vectors,
            index=self._index,
            omit_expired=bool(self.ttl_config and self.ttl_config.get("omit_expired")),
            loads=deserializer,
        )
        self._vectors = VectorSearcher(self._repo) if self._index is not None else None
        self._sweeper = TTLSweeper(self.sweep_ttl)
        super().__init__()

    @staticmethod
    def _check_ttl_config(ttl: TTLConfig | Mapping[str, Any] | None) -> TTLConfig | None:
        if ttl is None:
            return None
        if not isinstance(ttl, Mapping):
            raise InvalidInputError(f"ttl must be a TTLConfig dict, got {type(ttl).__name__}")
        unknown = set(ttl) - {
            "default_ttl",
            "refresh_on_read",
            "sweep_interval_minutes",
            "omit_expired",
        }
        if unknown:
            raise InvalidInputError(f"unknown TTLConfig keys: {sorted(unknown)}")
        _check_ttl(ttl.get("default_ttl"))
        interval = ttl.get("sweep_interval_minutes")
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0
        ):
            raise InvalidInputError(
                f"sweep_interval_minutes must be a positive number, got {interval!r}"
            )
        config: TTLConfig = {**ttl}  # type: ignore[typeddict-item]
        return config

    # --- construction and schema -----------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        index: Mapping[str, Any] | None = None,
        ttl: TTLConfig | Mapping[str, Any] | None = None,
        deserializer: Callable[[bytes], dict[str, Any]] | None = None,
        schema: str | None = None,
        pool_config: Mapping[str, Any] | None = None,
        pgbouncer: bool = False,
        **engine_kwargs: Any,
    ) -> AsyncIterator[AsyncSQLAlchemyStore]:
        """A store on an engine of its own, disposed on exit."""
        engine = create_engine(
            conn_string, pool_config=pool_config, pgbouncer=pgbouncer, **engine_kwargs
        )
        try:
            store = cls(engine, index=index, ttl=ttl, deserializer=deserializer, schema=schema)
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
        await migrations.upgrade(self.db.bind, schema=self.schema)
        if self._index is not None:
            await ensure_vector_layer(
                self.db.bind,
                dims=self._index.dims,
                vector_type=self._index.vector_type,
                distance_type=self._index.distance_type,
                kind=self._index.kind,
                index_params=self._index.index_params,
                schema=self.schema,
            )

    # --- TTL -------------------------------------------------------------------------------------

    @traced("sweep_ttl", "store")
    async def sweep_ttl(self) -> int:
        """Delete expired items now; returns how many were deleted."""
        return await self.db.run(
            self._repo.delete_expired, op="store.sweep_ttl", single_statement=True
        )

    async def start_ttl_sweeper(
        self, sweep_interval_minutes: float | None = None
    ) -> asyncio.Task[None]:
        """Sweep expired items every ``sweep_interval_minutes`` (default: the TTLConfig's, else
        5) in a background task; returns the task (already running: the same task)."""
        interval = (
            sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes") or 5
        )
        return self._sweeper.start(float(interval))

    async def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the sweeper; False if it did not stop within ``timeout`` seconds."""
        return await self._sweeper.stop(timeout)

    async def __aenter__(self) -> AsyncSQLAlchemyStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_ttl_sweeper()

    # --- per-call validation --------------------------------------------------------------------
    # Concurrent calls coalesce into one abatch, and one failing op fails every call of that
    # batch. Bad input is therefore refused here, in the caller's own call, before it joins a
    # batch; abatch validates again for ops passed to it directly.

    @traced("aget", "store", _namespace_ids)
    async def aget(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
    ) -> Item | None:
        validate_labels(namespace)
        _check_key(key, "get")
        return await super().aget(namespace, key, refresh_ttl=refresh_ttl)

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
        validate_labels(namespace_prefix, what="namespace prefix")
        _check_page(limit, offset, "search")
        parse_filter(filter)
        return await super().asearch(
            namespace_prefix,
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
        validate_labels(namespace)
        what = f"put {namespace!r}/{key!r}"
        _check_key(key, what)
        if not isinstance(value, Mapping):
            raise InvalidInputError(
                f"{what}: values must be dicts (JSON objects), got {type(value).__name__}"
            )
        check_json_value(value, what=what)
        if not isinstance(ttl, NotProvided):
            _check_ttl(ttl)
        if index not in (None, False):
            if not isinstance(index, list):
                raise InvalidInputError(f"{what}: index must be False, None or a list of paths")
            parse_paths(index)
        await super().aput(namespace, key, value, index, ttl=ttl)

    @traced("adelete", "store", _namespace_ids)
    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        validate_labels(namespace)
        _check_key(key, "delete")
        await super().adelete(namespace, key)

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
        validate_labels(tuple(prefix or ()), what="prefix")
        validate_labels(tuple(suffix or ()), what="suffix")
        _check_max_depth(max_depth)
        _check_page(limit, offset, "list_namespaces")
        return await super().alist_namespaces(
            prefix=prefix, suffix=suffix, max_depth=max_depth, limit=limit, offset=offset
        )

    # --- batches ---------------------------------------------------------------------------------

    def _plan(self, ops: Sequence[Op]) -> _Plan:
        plan = _Plan()
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                validate_labels(op.namespace)
                key = _check_key(op.key, "get")
                plan.gets.append((i, op, (namespace_to_prefix(op.namespace), key)))
            elif isinstance(op, SearchOp):
                validate_labels(op.namespace_prefix, what="namespace prefix")
                _check_page(op.limit, op.offset, "search")
                if op.query is not None and not isinstance(op.query, str):
                    raise InvalidInputError(
                        f"search query must be a string, got {type(op.query).__name__}"
                    )
                plan.searches.append((i, op, parse_filter(op.filter)))
            elif isinstance(op, ListNamespacesOp):
                for condition in op.match_conditions or ():
                    validate_labels(tuple(condition.path), what=f"{condition.match_type} condition")
                    if condition.match_type not in ("prefix", "suffix"):
                        raise InvalidInputError(f"unknown match_type {condition.match_type!r}")
                _check_max_depth(op.max_depth)
                _check_page(op.limit, op.offset, "list_namespaces")
                plan.listings.append((i, op))
            elif isinstance(op, PutOp):
                validate_labels(op.namespace)
                key = _check_key(op.key, "put")
                encoded: str | None = None
                if op.value is not None:
                    if not op.namespace:
                        raise InvalidInputError("put: the namespace cannot be empty")
                    encoded = encode_value(op.value, what=f"put {op.namespace!r}/{key!r}")
                    _check_ttl(op.ttl)
                    if op.index not in (None, False):
                        if not isinstance(op.index, list) or not all(
                            isinstance(p, str) for p in op.index
                        ):
                            raise InvalidInputError(
                                f"put index must be False, None or a list of paths: {op.index!r}"
                            )
                        parse_paths(op.index)
                pair = (namespace_to_prefix(op.namespace), key)
                # Re-inserting moves the entry to the end: writes apply in last-put order.
                plan.puts.pop((op.namespace, key), None)
                plan.puts[(op.namespace, key)] = (pair, op, encoded)
            else:
                raise InvalidInputError(f"unknown store operation {type(op).__name__}")
        return plan

    async def _embed_queries(
        self, searches: Sequence[tuple[int, SearchOp, ParsedFilter | None]]
    ) -> dict[str, list[float]]:
        if self._index is None:
            return {}
        queries = list(dict.fromkeys(op.query for _, op, _ in searches if op.query))
        if not queries:
            return {}
        vectors = await asyncio.gather(*(self._index.embeddings.aembed_query(q) for q in queries))
        return {q: self._check_vector(v) for q, v in zip(queries, vectors, strict=True)}

    def _check_vector(self, vector: Sequence[float]) -> list[float]:
        assert self._index is not None
        values = list(map(float, vector))
        if len(values) != self._index.dims:
            raise InvalidInputError(
                f"the embedding function returned {len(values)} dimensions; the index is "
                f"configured for dims={self._index.dims}"
            )
        # NaN and infinities carry into a sum, so a finite sum clears every element at C
        # speed; only a non-finite one (which may just be overflow) needs the close look.
        if not math.isfinite(sum(values)) and not all(map(math.isfinite, values)):
            raise InvalidInputError("the embedding function returned NaN or Infinity")
        return values

    async def _embed_puts(self, plan: _Plan) -> tuple[list[Pair], list[VectorRow]]:
        """The items whose vectors this batch replaces, and their new vectors."""
        if self._index is None:
            return [], []
        owners: list[Pair] = []
        wanted: list[tuple[Pair, str, str]] = []
        for pair, op, encoded in plan.puts.values():
            if encoded is None or op.value is None:
                continue
            owners.append(pair)
            if op.index is False:
                continue
            paths = self._index.fields if op.index is None else parse_paths(op.index)
            wanted.extend((pair, name, text) for name, text in texts_to_embed(op.value, paths))
        owners.sort()
        if not wanted:
            return owners, []
        texts, where = unique_texts([text for _, _, text in wanted])
        embedded = await self._index.embeddings.aembed_documents(texts)
        if len(embedded) != len(texts):
            raise InvalidInputError(
                f"the embedding function returned {len(embedded)} vectors for {len(texts)} texts"
            )
        vectors = [self._check_vector(v) for v in embedded]
        rows = [
            VectorRow(prefix=pair[0], key=pair[1], field_name=name, embedding=vectors[where[i]])
            for i, (pair, name, _) in enumerate(wanted)
        ]
        rows.sort(key=lambda r: (r.prefix, r.key, r.field_name))
        return owners, rows

    @traced("abatch", "store")
    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        plan = self._plan(ops)
        query_vectors = await self._embed_queries(plan.searches)
        vector_owners, vector_rows = await self._embed_puts(plan)
        repo = self._repo

        # Rows are written in (prefix, key) order: concurrent batches touching the same keys
        # then lock them in one order and cannot deadlock each other.
        deletes = sorted(pair for pair, _, encoded in plan.puts.values() if encoded is None)
        upserts = sorted(
            (pair[0], pair[1], encoded, _check_ttl(op.ttl))
            for pair, op, encoded in plan.puts.values()
            if encoded is not None
        )
        vector_search = self._index is not None and any(op.query for _, op, _ in plan.searches)
        writes = repo.bound_writes(deletes, upserts, vector_owners, vector_rows)
        statements = (
            bool(plan.gets) + len(plan.searches) + len(plan.listings) + (writes is not None)
        )

        # A lone vector search on an engine starts with one statement outside any transaction
        # (the ANN scan with its settings, or the filter probe); a transaction follows only if
        # that step could not answer.
        lone: tuple[int, VectorSearch] | None = None
        searcher = self._vectors
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
            if _sqlstate(exc) == _PROGRAM_LIMIT_EXCEEDED:
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
