"""The store's SQL: Core statements on the ``store`` / ``store_vectors`` tables.

Every method takes an ``AsyncConnection`` that :class:`~langgraph_sqlalchemy.database.Database`
opened and runs its statements there; nothing here begins, commits or retries. Lists of keys
travel as bound arrays (``unnest(:prefixes, :keys)``), so one statement text serves any batch
size and the compiled and prepared-statement caches stay warm.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from langgraph.store.base import ListNamespacesOp, SearchOp
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Double,
    Integer,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    collate,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..checkpoint.precompiled import BoundStatement, PrecompiledStatement
from ..schema import Tables
from .embedding import IndexSettings
from .filters import ParsedFilter, filter_clause
from .namespaces import (
    list_namespaces_statement,
    listing_params,
    listing_shape,
    namespace_from_prefix,
    scope_clause,
    scope_params,
)
from .vector_layer import vector_extension_version

__all__ = ["ItemRow", "StoreRepository", "VectorRow", "VectorSearch"]

Pair = tuple[str, str]  # (prefix, key)

# pgvector's HNSW search keeps at most this many candidates (hnsw.ef_search's maximum).
_EF_SEARCH_MAX = 1000
# pgvector's default is 40, which on clustered data gave recall@10 between 0.94 and 0.995 from
# one HNSW build to the next (20k 64-d vectors, 20 queries); 64 gave 1.000 on most builds but
# 0.950 on one, and 0.974 at 100k. 100 leaves a margin over the 0.95 the store promises, for
# well under a millisecond more per query at 100k items.
_EF_SEARCH_MIN = 100
# A filtered (iterative, relaxed_order) scan hands rows over in batches only roughly sorted, so
# its first ``limit`` passing rows are not the best ``limit``: with LIMIT 10 recall@10 stayed
# near 0.89 at a 1%-selective filter on 100k clustered vectors whatever ef_search was. Asking
# for a few times more rows and re-sorting them by exact distance gave 1.000.
_FILTERED_OVERFETCH = 4
_FILTERED_MIN_ROWS = 40
# Built list_namespaces / search statements kept for reuse (see list_namespaces).
_STATEMENTS_KEPT = 128
# A filter or scope passing at most this many items is answered exactly (the passing items are
# found first, their vectors ranked by true distance) instead of through the ANN index, whose
# iterative scan has to wade through ~1/selectivity rows per match to find them.
_EXACT_RANK_MAX_ITEMS = 2000


@dataclass(frozen=True)
class ItemRow:
    prefix: str
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    score: float | None = None


@dataclass(frozen=True)
class VectorRow:
    prefix: str
    key: str
    field_name: str
    embedding: list[float]


def _unnest_pairs(prefixes: str, keys: str) -> Any:
    return (
        func.unnest(bindparam(prefixes, type_=ARRAY(Text)), bindparam(keys, type_=ARRAY(Text)))
        .table_valued("prefix", "key")
        .render_derived()
    )


def _version_at_least(version: str | None, wanted: tuple[int, ...]) -> bool:
    if not version:
        return False
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= wanted


class StoreRepository:
    """Builds and runs the store's statements on a given connection; never commits."""

    def __init__(
        self,
        tables: Tables,
        *,
        vectors: Table | None,
        index: IndexSettings | None,
        omit_expired: bool,
        loads: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> None:
        self.store = tables.store
        self.vectors = vectors
        self.index = index
        self.omit_expired = omit_expired
        self._loads = loads
        self._pgvector_version: str | None = None
        self._namespace_statements: dict[Any, PrecompiledStatement] = {}
        self._search_statements: dict[Any, PrecompiledStatement] = {}
        self._vector_statements: dict[Any, PrecompiledStatement] = {}
        self._write_statements: dict[Any, PrecompiledStatement] = {}
        # The hot read, built once: only its bound arrays change from call to call.
        self._get = PrecompiledStatement(self._get_items_statement())

    # --- shared pieces -----------------------------------------------------------------------

    def _live(self) -> ColumnElement[bool]:
        """Rows not past their expiry, when expired rows are to be hidden."""
        if not self.omit_expired:
            return true()
        s = self.store.c
        return or_(s.expires_at.is_(None), s.expires_at > func.now())

    def _refreshed_expiry(self) -> ColumnElement[datetime]:
        # make_interval's secs is double precision: fractional minutes stay exact (upstream's
        # ``ttl_minutes || ' minutes'`` on an integer column turned 0.1 into 0).
        return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, self.store.c.ttl_minutes * 60.0)

    def _item_columns(self) -> list[ColumnElement[Any]]:
        s = self.store.c
        # The JSON text, decoded here (orjson, or the user's deserializer) rather than by
        # the driver's json.loads.
        return [s.prefix, s.key, cast(s.value, Text).label("value"), s.created_at, s.updated_at]

    def _decode(self, raw: str) -> dict[str, Any]:
        if self._loads is not None:
            return self._loads(raw.encode())
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else {"value": value}

    def _item_from_values(self, row: Sequence[Any]) -> ItemRow:
        # Positional: precompiled statements return the driver's records, not SQLAlchemy rows.
        prefix, key, value, created_at, updated_at = row
        return ItemRow(prefix, key, self._decode(value), created_at, updated_at)

    # --- reads ---------------------------------------------------------------------------------

    def _refresh(self, targets: Any, *extra: ColumnElement[bool]) -> Any:
        """An UPDATE restarting the TTL clock of the items in ``targets`` (a FROM item with
        prefix and key columns), as a CTE. Only items with a TTL are touched, and with
        ``omit_expired`` an expired item is never revived."""
        s = self.store.c
        return (
            update(self.store)
            .values(expires_at=self._refreshed_expiry())
            .where(
                s.prefix == targets.c.prefix,
                s.key == targets.c.key,
                s.ttl_minutes.is_not(None),
                self._live(),
                *extra,
            )
            .returning(s.key)
            .cte("refreshed")
        )

    def _get_items_statement(self) -> Any:
        keys = (
            func.unnest(
                bindparam("get_prefixes", type_=ARRAY(Text)),
                bindparam("get_keys", type_=ARRAY(Text)),
                bindparam("get_refresh", type_=ARRAY(Boolean)),
            )
            .table_valued("prefix", "key", "refresh")
            .render_derived()
        )
        s = self.store.c
        # A data-modifying CTE runs to completion even though the SELECT does not read it;
        # the SELECT sees the rows as they were before it (values are unchanged by a refresh).
        return (
            select(*self._item_columns())
            .select_from(
                self.store.join(keys, and_(s.prefix == keys.c.prefix, s.key == keys.c.key))
            )
            .where(self._live())
            .add_cte(self._refresh(keys, keys.c.refresh))
        )

    def bound_get_items(self, pairs: Sequence[Pair], refresh: Sequence[bool]) -> BoundStatement:
        """The read of :meth:`get_items` as one statement for ``Database.fetch``."""
        return self._get.bind(
            {
                "get_prefixes": [p for p, _ in pairs],
                "get_keys": [k for _, k in pairs],
                "get_refresh": list(refresh),
            }
        )

    def items_from_rows(self, rows: Sequence[Sequence[Any]]) -> dict[Pair, ItemRow]:
        items = (self._item_from_values(row) for row in rows)
        return {(item.prefix, item.key): item for item in items}

    async def get_items(
        self, conn: AsyncConnection, pairs: Sequence[Pair], refresh: Sequence[bool]
    ) -> dict[Pair, ItemRow]:
        """The items at ``pairs`` (missing ones absent), refreshing the TTL of those whose
        ``refresh`` flag is set — one statement."""
        if not pairs:
            return {}
        rows = await self.bound_get_items(pairs, refresh).execute(conn)
        return self.items_from_rows(rows)

    @staticmethod
    def _cached(
        cache: dict[Any, PrecompiledStatement], shape: Any, build: Callable[[], Any]
    ) -> PrecompiledStatement:
        statement = cache.get(shape)
        if statement is None:
            # Bounded: callers choose the shapes (filters, conditions), usually a handful.
            if len(cache) >= _STATEMENTS_KEPT:
                cache.clear()
            statement = cache[shape] = PrecompiledStatement(build())
        return statement

    def bound_search(self, op: SearchOp, parsed: ParsedFilter | None) -> BoundStatement:
        """Filtered listing without a query, as one statement for ``Database.fetch``.

        Newest first, ties broken by namespace and key so pages never overlap; the TTLs of
        the returned items refreshed in the same statement. Built once per shape (scope or
        not, the filter's shape, refresh or not); namespace, filter values and the page are
        bound.
        """
        refresh = bool(op.refresh_ttl)
        scoped = bool(op.namespace_prefix)
        shape = (scoped, parsed.shape if parsed is not None else None, refresh)
        statement = self._cached(
            self._search_statements,
            shape,
            lambda: self._search_statement(scoped, parsed, refresh),
        )
        params: dict[str, Any] = {"search_limit": op.limit, "search_offset": op.offset}
        if scoped:
            params.update(scope_params(op.namespace_prefix, "search_scope"))
        if parsed is not None:
            params.update(parsed.params)
        return statement.bind(params)

    def items_from_list(self, rows: Sequence[Sequence[Any]]) -> list[ItemRow]:
        return [self._item_from_values(row) for row in rows]

    async def search_items(
        self, conn: AsyncConnection, op: SearchOp, parsed: ParsedFilter | None
    ) -> list[ItemRow]:
        return self.items_from_list(await self.bound_search(op, parsed).execute(conn))

    def _search_statement(
        self, scoped: bool, parsed: ParsedFilter | None, refresh: bool
    ) -> Any:
        s = self.store.c
        page = (
            select(*self._item_columns())
            .where(
                scope_clause(s.prefix, "search_scope") if scoped else true(),
                filter_clause(s.value, parsed),
                self._live(),
            )
            .order_by(s.updated_at.desc(), s.prefix, s.key)
            .limit(bindparam("search_limit", type_=Integer))
            .offset(bindparam("search_offset", type_=Integer))
        )
        if not refresh:
            return page
        results = page.cte("results")
        return (
            select(results)
            .add_cte(self._refresh(results))
            .order_by(results.c.updated_at.desc(), results.c.prefix, results.c.key)
        )

    def bound_list_namespaces(self, op: ListNamespacesOp) -> BoundStatement:
        """``list_namespaces`` as one statement for ``Database.fetch``; labels validated."""
        conditions = tuple((c.match_type, tuple(c.path)) for c in op.match_conditions or ())
        statement = self._cached(
            self._namespace_statements,
            listing_shape(conditions, op.max_depth),
            lambda: list_namespaces_statement(
                self.store,
                conditions=conditions,
                max_depth=op.max_depth,
                live_only=self._live() if self.omit_expired else None,
            ),
        )
        params = listing_params(conditions)
        params.update(list_limit=op.limit, list_offset=op.offset)
        return statement.bind(params)

    @staticmethod
    def namespaces_from_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[str, ...]]:
        return [namespace_from_prefix(row[0]) for row in rows]

    async def list_namespaces(
        self, conn: AsyncConnection, op: ListNamespacesOp
    ) -> list[tuple[str, ...]]:
        return self.namespaces_from_rows(await self.bound_list_namespaces(op).execute(conn))

    # --- vector search -------------------------------------------------------------------------

    def _distance(self) -> ColumnElement[float]:
        """Distance to the query vector, bound at execution as ``query_vector``."""
        assert self.vectors is not None and self.index is not None
        embedding = self.vectors.c.embedding
        query_vector = bindparam("query_vector", type_=embedding.type)
        distance = self.index.distance_type
        if distance == "l2":
            return embedding.l2_distance(query_vector)  # type: ignore[no-any-return]
        if distance == "inner_product":
            return embedding.max_inner_product(query_vector)  # type: ignore[no-any-return]
        return embedding.cosine_distance(query_vector)  # type: ignore[no-any-return]

    def _score(self, distance: float) -> float:
        assert self.index is not None
        if self.index.distance_type == "cosine":
            return 1.0 - distance
        # l2: the negated distance (larger is closer); inner product: pgvector's <#> is the
        # negated inner product, so negating it gives the inner product itself.
        return -distance

    def _settings_for(self, candidates: int, restricted: bool, joined: bool) -> dict[str, str]:
        """The planner and pgvector settings that size the ANN scan for this query."""
        assert self.index is not None and self._pgvector_version is not None
        iterative = _version_at_least(self._pgvector_version, (0, 8))
        settings: dict[str, str] = {}
        if self.index.kind == "hnsw":
            settings["hnsw.ef_search"] = str(max(_EF_SEARCH_MIN, min(candidates, _EF_SEARCH_MAX)))
            if iterative and (restricted or candidates > _EF_SEARCH_MAX):
                # Filters drop candidates after the index produced them; relaxed_order keeps
                # the scan going until enough rows pass (we re-sort by distance ourselves).
                settings["hnsw.iterative_scan"] = "relaxed_order"
                settings["hnsw.max_scan_tuples"] = str(max(20_000, candidates * 20))
        else:
            settings["ivfflat.probes"] = str(self.index.ivfflat_probes)
            if iterative and restricted:
                settings["ivfflat.iterative_scan"] = "relaxed_order"
        if joined:
            # With a JSONB filter the planner underestimates how many rows pass and prefers
            # "scan store, join, sort everything", which reads every row: at 20k items 37 ms
            # against 6 ms for the index-ordered scan (10% selective filter, measured). Without
            # the Sort alternative it walks the ANN index and filters as it goes.
            settings["enable_sort"] = "off"
        return settings

    async def _apply_settings(
        self, conn: AsyncConnection, settings: Mapping[str, str]
    ) -> dict[str, str | None]:
        """SET LOCAL ``settings``; returns the values they replace.

        SET LOCAL has no Core form; ``set_config(name, value, true)`` is the same as a
        function. The previous values are read in a MATERIALIZED CTE, which is scanned
        before the SELECT list (and its set_config calls) is evaluated.
        """
        names = list(settings)
        previous = (
            select(
                *(func.current_setting(name, True).label(f"p{i}") for i, name in enumerate(names))
            )
            .cte("previous")
            .prefix_with("MATERIALIZED")
        )
        row = (
            await conn.execute(
                select(
                    previous,
                    *(
                        func.set_config(name, value, True).label(f"s{i}")
                        for i, (name, value) in enumerate(settings.items())
                    ),
                )
            )
        ).one()
        return {name: row[i] for i, name in enumerate(names)}

    async def _restore_settings(
        self, conn: AsyncConnection, previous: Mapping[str, str | None]
    ) -> None:
        # A host connection's transaction goes on after our call (we run in a savepoint of it,
        # and releasing a savepoint keeps SET LOCAL values): leave its settings as found. Our
        # own transaction (engine-bound) resets them when it ends: no statement needed.
        if not conn.in_nested_transaction():
            return
        restore = {name: value for name, value in previous.items() if value is not None}
        if restore:
            await conn.execute(
                select(*(func.set_config(name, value, True) for name, value in restore.items()))
            )

    def _ann_may_stop_short(self, candidates: int, restricted: bool) -> bool:
        """Whether an ANN scan returning fewer rows than asked may have missed some.

        HNSW yields at most ef_search rows (more only with an iterative scan, which stops
        after max_scan_tuples), and filters drop rows after the index produced them; IVFFlat
        only looks into ``probes`` lists.
        """
        assert self.index is not None
        return self.index.kind == "ivfflat" or restricted or candidates > _EF_SEARCH_MAX

    def _candidates_statement(
        self, op: SearchOp, parsed: ParsedFilter | None, *, exact: bool
    ) -> Any:
        assert self.vectors is not None
        v = self.vectors.c
        s = self.store.c
        distance = self._distance()
        where: list[ColumnElement[bool]] = [
            scope_clause(v.prefix, "search_scope") if op.namespace_prefix else true()
        ]
        source: Any = self.vectors
        if parsed is not None or self.omit_expired:
            source = self.vectors.join(self.store, and_(s.prefix == v.prefix, s.key == v.key))
            where += [filter_clause(s.value, parsed), self._live()]
        # ORDER BY the bare operator is what lets pgvector serve it from the ANN index; adding
        # zero makes it an expression the index cannot serve: an exact scan.
        order = (distance + literal(0.0, Double)) if exact else distance
        return (
            select(v.prefix, v.key, distance.label("distance"))
            .select_from(source)
            .where(*where)
            .order_by(order)
            # Inlined at execution (still cached as one compiled form): a LIMIT the planner can
            # see makes it choose the ANN index scan; a generic plan's guess may not.
            .limit(bindparam("candidate_limit", type_=Integer, literal_execute=True))
        )

    # --- vector search: one statement per step ------------------------------------------------

    def _page_with_items(self, head: Any, page: Any, refresh: bool) -> Any:
        """``head``'s one row, joined with the page's items (value and distance), best first.

        ``head`` always yields its row, so the step's verdict arrives even for an empty page;
        the page's TTLs are refreshed in the same statement when asked.
        """
        s = self.store.c
        items = page.join(self.store, and_(s.prefix == page.c.prefix, s.key == page.c.key))
        stmt = (
            select(*head.c, *self._item_columns(), page.c.distance)
            .select_from(head.outerjoin(items, true()))
            .order_by(page.c.distance, collate(s.prefix, "C"), collate(s.key, "C"))
        )
        return stmt.add_cte(self._refresh(page)) if refresh else stmt

    def _ranked_page(self, scored: Any, head_filter: ColumnElement[bool]) -> Any:
        """Items of ``scored`` (vector rows with a distance) by their best field, one page."""
        best = func.min(scored.c.distance).label("distance")
        return (
            select(scored.c.prefix, scored.c.key, best)
            .where(head_filter)
            .group_by(scored.c.prefix, scored.c.key)
            # Code-point order for ties, as the Python-side ranking of the other paths.
            .order_by(best, collate(scored.c.prefix, "C"), collate(scored.c.key, "C"))
            .limit(bindparam("page_limit", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .cte("page")
            .prefix_with("MATERIALIZED")
        )

    def _probe_statement(self, scoped: bool, parsed: ParsedFilter, refresh: bool) -> Any:
        """Rank exactly the items passing the filter and scope, if fewer than ``exact_cap``.

        Head row: ``final`` (fewer passed than the cap: the page is the answer) and how many
        passed. Finding out costs at most one pass over the matching store rows (the filter's
        containment test finds them in the GIN index), stopping at the cap; ranking them is a
        primary-key lookup per item, cheaper than wading through the ANN index for rare items.
        """
        assert self.vectors is not None
        v = self.vectors.c
        s = self.store.c
        cap = bindparam("exact_cap", type_=Integer)
        passing = (
            select(s.prefix, s.key)
            .where(
                scope_clause(s.prefix, "search_scope") if scoped else true(),
                filter_clause(s.value, parsed),
                self._live(),
            )
            .limit(cap)
            .cte("passing")
            .prefix_with("MATERIALIZED")
        )
        counted = (
            select(func.count().label("passing"))
            .select_from(passing)
            .cte("counted")
            .prefix_with("MATERIALIZED")
        )
        # The extra term keeps pgvector's index out: these few rows are ranked exactly.
        scored = (
            select(v.prefix, v.key, (self._distance() + literal(0.0, Double)).label("distance"))
            .select_from(
                passing.join(
                    self.vectors, and_(v.prefix == passing.c.prefix, v.key == passing.c.key)
                )
            )
            .subquery("scored")
        )
        page = self._ranked_page(
            scored, select(counted.c.passing).scalar_subquery() < cap
        )
        head = select((counted.c.passing < cap).label("final"), counted.c.passing).subquery(
            "head"
        )
        return self._page_with_items(head, page, refresh)

    def _ann_statement(
        self, scoped: bool, names: tuple[str, ...], refresh: bool, exact: bool
    ) -> Any:
        """One ANN (or exact) scan for ``candidate_limit`` vector rows, ranked into a page.

        The scan's settings (``hnsw.ef_search`` ...) are applied by ``set_config(..., true)``
        in the same statement: in a MATERIALIZED CTE that the scan joins LATERALly and refers
        to, so its row exists (and the settings are in force) before the index is read; HNSW
        reads them when the scan fetches its first row. The values they replace come back in
        the head row (a host's transaction gets them restored). Head row: ``final``, how many
        vector rows the scan returned, then the replaced values.

        ``final`` is decided in SQL from the bound ``wanted`` and ``short_is_final`` (whether
        a scan returning fewer rows than asked has seen them all) so that the TTL refresh
        touches exactly the items returned, and only when the page is the answer.
        """
        assert self.vectors is not None
        v = self.vectors.c
        distance = self._distance()
        # ORDER BY the bare operator is what lets pgvector serve it from the ANN index; adding
        # zero makes it an expression the index cannot serve: an exact scan.
        order = (distance + literal(0.0, Double)) if exact else distance
        limit = bindparam("candidate_limit", type_=Integer)
        nearest = (
            select(v.prefix, v.key, distance.label("distance"))
            .where(scope_clause(v.prefix, "search_scope") if scoped else true())
            .order_by(order)
            .limit(limit)
        )
        head_columns: list[ColumnElement[Any]] = []
        if names:
            previous = (
                select(
                    *(func.current_setting(n, True).label(f"p{i}") for i, n in enumerate(names))
                )
                .cte("previous")
                .prefix_with("MATERIALIZED")
            )
            knobs = (
                select(
                    previous,
                    *(
                        func.set_config(n, bindparam(f"knob_{i}", type_=Text), True).label(f"s{i}")
                        for i, n in enumerate(names)
                    ),
                )
                .cte("knobs")
                .prefix_with("MATERIALIZED")
            )
            after_knobs = nearest.where(knobs.c.s0.is_not(None)).lateral("nearest")
            scan = (
                select(after_knobs.c.prefix, after_knobs.c.key, after_knobs.c.distance)
                .select_from(knobs.join(after_knobs, true()))
                .cte("scan")
                .prefix_with("MATERIALIZED")
            )
            head_columns = [
                select(knobs.c[f"p{i}"]).scalar_subquery().label(f"p{i}")
                for i in range(len(names))
            ]
        else:
            scan = nearest.cte("scan").prefix_with("MATERIALIZED")
        scanned = select(func.count()).select_from(scan).scalar_subquery()
        found = (
            select(func.count())
            .select_from(select(scan.c.prefix, scan.c.key).distinct().subquery())
            .scalar_subquery()
        )
        final = or_(
            found >= bindparam("wanted", type_=Integer),
            and_(scanned < limit, bindparam("short_is_final", type_=Boolean)),
        )
        page = self._ranked_page(scan, final)
        head = select(final.label("final"), scanned.label("scanned"), *head_columns).subquery(
            "head"
        )
        return self._page_with_items(head, page, refresh)

    def start_vector_search(
        self, op: SearchOp, parsed: ParsedFilter | None, query_vector: Sequence[float]
    ) -> VectorSearch:
        """The state of one vector search; see :class:`VectorSearch`."""
        return VectorSearch(self, op, parsed, query_vector)

    # --- vector search: the multi-statement path -----------------------------------------------

    async def vector_search(
        self,
        conn: AsyncConnection,
        op: SearchOp,
        parsed: ParsedFilter | None,
        query_vector: Sequence[float],
        *,
        search: VectorSearch | None = None,
    ) -> list[ItemRow]:
        """Items ranked by their best field, ``op.offset`` .. ``op.offset + op.limit``.

        The ANN index yields vector rows, not items: an item with several fields appears
        several times. Rows are fetched in growing batches until ``offset + limit`` distinct
        items are known, so deep pages are exact (upstream over-fetches a fixed amount and
        returns short or empty pages). ``search``: a search already under way (its first
        step ran elsewhere); it is copied, not changed.
        """
        assert self.index is not None
        if op.limit <= 0:
            return []
        if self._pgvector_version is None:
            self._pgvector_version = await vector_extension_version(conn) or "0"
        if search is not None:
            # A retried transaction must start from the same state again: work on a copy.
            state = copy.copy(search)
            state.previous = dict(search.previous)
        else:
            state = self.start_vector_search(op, parsed, query_vector)
        # On an error the transaction (or savepoint) rolls back, undoing SET LOCAL too.
        while (step := state.next_statement()) is not None:
            items = state.consume(await step.execute(conn))
            if items is not None:
                await self._restore_settings(conn, state.previous)
                return items
        await self._restore_settings(conn, state.previous)
        return await self._joined_search(conn, state)

    async def _joined_search(self, conn: AsyncConnection, state: VectorSearch) -> list[ItemRow]:
        """ANN search whose rows need the store row (a filter or ``omit_expired``), or on an
        IVFFlat index: planner settings first, so several statements in one transaction."""
        assert self.index is not None
        op, parsed = state.op, state.parsed
        wanted = op.offset + op.limit
        candidates, exact = state.candidates, state.exact
        params = state.scope_and_filter_params()
        previous: dict[str, str | None] = {}
        best: dict[Pair, float] = {}
        while True:
            if not exact:
                settings = self._settings_for(candidates, state.restricted, state.joined)
                replaced = await self._apply_settings(conn, settings)
                for name, value in replaced.items():
                    previous.setdefault(name, value)
            stmt = self._candidates_statement(op, parsed, exact=exact)
            rows = (await conn.execute(stmt, {**params, "candidate_limit": candidates})).all()
            best = {}
            # relaxed_order scans return rows roughly sorted; sort before keeping the
            # first (best) row of each item.
            for row in sorted(
                (r for r in rows if r.distance is not None), key=lambda r: r.distance
            ):
                best.setdefault((row.prefix, row.key), row.distance)
            if len(best) >= wanted:
                break
            if len(rows) < candidates:
                if exact or not self._ann_may_stop_short(candidates, state.restricted):
                    break
                # The ANN scan may have given up before it found enough rows; only an
                # exact scan can say there are no more.
                exact = True
                await self._restore_settings(conn, previous)
                previous = {}
                continue
            candidates *= 4
        await self._restore_settings(conn, previous)
        ranked = sorted(best.items(), key=lambda kv: (kv[1], kv[0]))[op.offset : wanted]
        if not ranked:
            return []
        items = await self.get_items(
            conn, [pair for pair, _ in ranked], [op.refresh_ttl] * len(ranked)
        )
        return [
            ItemRow(**{**items[pair].__dict__, "score": self._score(dist)})
            for pair, dist in ranked
            if pair in items
        ]

    def vector_items(self, rows: Sequence[Sequence[Any]], head: int) -> list[ItemRow]:
        """The page's items from a one-statement step's rows (after ``head`` columns)."""
        items = []
        for row in rows:
            prefix, key, value, created_at, updated_at, distance = row[head:]
            if prefix is not None:
                items.append(
                    ItemRow(
                        prefix,
                        key,
                        self._decode(value),
                        created_at,
                        updated_at,
                        self._score(distance),
                    )
                )
        return items

    # --- writes --------------------------------------------------------------------------------

    def bound_writes(
        self,
        deletes: Sequence[Pair],
        upserts: Sequence[tuple[str, str, str, float | None]],
        vector_owners: Sequence[Pair],
        vector_rows: Sequence[VectorRow],
    ) -> BoundStatement | None:
        """A batch's writes as one statement (None: nothing to write).

        ``deletes``: items to delete (their vectors go with them, ON DELETE CASCADE).
        ``upserts``: ``(prefix, key, value JSON text, ttl minutes or None)`` to insert or
        replace. ``vector_rows`` become the complete set of vectors of ``vector_owners``
        (fields no longer embedded are removed). Every list must be sorted by (prefix, key):
        rows are then written (and locked) in one order, which keeps concurrent batches on
        the same keys from deadlocking.

        One statement: the store rows are written in data-modifying CTEs and the vectors by
        the statement itself, so a batch costs one round trip, needs no BEGIN/COMMIT and is
        atomic. The foreign key from a new vector to its new item is checked at the end of
        the statement, when the item exists.
        """
        has_vectors = self.vectors is not None and bool(vector_owners)
        shape = (bool(deletes), bool(upserts), has_vectors)
        if shape == (False, False, False):
            return None
        statement = self._cached(
            self._write_statements, shape, lambda: self._write_statement(*shape)
        )
        params: dict[str, Any] = {}
        if deletes:
            params["delete_prefixes"] = [p for p, _ in deletes]
            params["delete_keys"] = [k for _, k in deletes]
        if upserts:
            params["put_prefixes"] = [r[0] for r in upserts]
            params["put_keys"] = [r[1] for r in upserts]
            params["put_values"] = [r[2] for r in upserts]
            params["put_ttls"] = [r[3] for r in upserts]
        if has_vectors:
            params["owner_prefixes"] = [p for p, _ in vector_owners]
            params["owner_keys"] = [k for _, k in vector_owners]
            params["vector_prefixes"] = [r.prefix for r in vector_rows]
            params["vector_keys"] = [r.key for r in vector_rows]
            params["vector_fields"] = [r.field_name for r in vector_rows]
            # pgvector's text form is a JSON array of numbers; orjson writes it exactly
            # (shortest round-trip repr), several times faster than str() per element.
            params["vector_texts"] = [orjson.dumps(r.embedding).decode() for r in vector_rows]
        return statement.bind(params)

    def _write_statement(self, deletes: bool, upserts: bool, vectors: bool) -> Any:
        parts: list[Any] = []
        if deletes:
            parts.append(self._delete_items_statement())
        if upserts:
            parts.append(self._upsert_items_statement())
        if vectors:
            parts.append(self._stale_vectors_statement())
            parts.append(self._upsert_vectors_statement())
        *ctes, main = parts
        for i, part in enumerate(ctes):
            main = main.add_cte(part.cte(f"write_{i}"))
        return main

    def _delete_items_statement(self) -> Any:
        keys = _unnest_pairs("delete_prefixes", "delete_keys")
        s = self.store.c
        return delete(self.store).where(s.prefix == keys.c.prefix, s.key == keys.c.key)

    def _upsert_items_statement(self) -> Any:
        incoming = (
            func.unnest(
                bindparam("put_prefixes", type_=ARRAY(Text)),
                bindparam("put_keys", type_=ARRAY(Text)),
                bindparam("put_values", type_=ARRAY(Text)),
                bindparam("put_ttls", type_=ARRAY(Double)),
            )
            # WITH ORDINALITY: rows are inserted (and locked) in the order the caller sorted
            # them, which keeps concurrent batches on the same keys from deadlocking.
            .table_valued("prefix", "key", "value", "ttl_minutes", with_ordinality="ordinality")
            .render_derived()
        )
        ttl = incoming.c.ttl_minutes
        expires_at = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl * 60.0)
        select_rows = select(
            incoming.c.prefix,
            incoming.c.key,
            cast(incoming.c.value, JSONB),
            func.now(),
            func.now(),
            # NULL ttl -> NULL expiry, by SQL's NULL arithmetic.
            expires_at,
            ttl,
        ).order_by(incoming.c.ordinality)
        stmt = insert(self.store).from_select(
            ["prefix", "key", "value", "created_at", "updated_at", "expires_at", "ttl_minutes"],
            select_rows,
        )
        return stmt.on_conflict_do_update(
            index_elements=[self.store.c.prefix, self.store.c.key],
            set_={
                "value": stmt.excluded.value,
                "updated_at": func.now(),
                "expires_at": stmt.excluded.expires_at,
                "ttl_minutes": stmt.excluded.ttl_minutes,
            },
        )

    def _incoming_vectors(self) -> Any:
        return (
            func.unnest(
                bindparam("vector_prefixes", type_=ARRAY(Text)),
                bindparam("vector_keys", type_=ARRAY(Text)),
                bindparam("vector_fields", type_=ARRAY(Text)),
                bindparam("vector_texts", type_=ARRAY(Text)),
            )
            .table_valued("prefix", "key", "field_name", "embedding", with_ordinality="ordinality")
            .render_derived()
        )

    def _stale_vectors_statement(self) -> Any:
        """Vectors of the owners that the batch does not write again (fields no longer
        embedded, ``index=False``): deleted."""
        assert self.vectors is not None
        v = self.vectors.c
        owners = _unnest_pairs("owner_prefixes", "owner_keys")
        kept = self._incoming_vectors()
        return delete(self.vectors).where(
            v.prefix == owners.c.prefix,
            v.key == owners.c.key,
            ~exists(
                select(kept.c.prefix).where(
                    kept.c.prefix == v.prefix,
                    kept.c.key == v.key,
                    kept.c.field_name == v.field_name,
                )
            ),
        )

    def _upsert_vectors_statement(self) -> Any:
        assert self.vectors is not None
        v = self.vectors.c
        incoming = self._incoming_vectors()
        rows = select(
            incoming.c.prefix,
            incoming.c.key,
            incoming.c.field_name,
            cast(incoming.c.embedding, v.embedding.type),
        ).order_by(incoming.c.ordinality)
        stmt = insert(self.vectors).from_select(["prefix", "key", "field_name", "embedding"], rows)
        return stmt.on_conflict_do_update(
            index_elements=[v.prefix, v.key, v.field_name],
            set_={"embedding": stmt.excluded.embedding, "updated_at": func.now()},
        )

    async def delete_expired(self, conn: AsyncConnection) -> int:
        s = self.store.c
        result = await conn.execute(
            delete(self.store).where(s.expires_at.is_not(None), s.expires_at < func.now())
        )
        return int(result.rowcount)


class VectorSearch:
    """One vector search as a series of one-statement steps, for paths that can take them.

    :meth:`next_statement` gives the next step (None: the search must go on through
    :meth:`StoreRepository.vector_search`'s multi-statement path), :meth:`consume` reads the
    step's rows and returns the items once a step answered. A lone search thus usually costs
    one round trip: the filter probe, or the ANN scan with its settings, page and values.
    """

    def __init__(
        self,
        repo: StoreRepository,
        op: SearchOp,
        parsed: ParsedFilter | None,
        query_vector: Sequence[float],
    ) -> None:
        index = repo.index
        assert index is not None
        self.repo, self.op, self.parsed, self.query_vector = repo, op, parsed, query_vector
        self.wanted = op.offset + op.limit
        self.restricted = bool(op.namespace_prefix or parsed is not None or repo.omit_expired)
        self.joined = bool(parsed is not None or repo.omit_expired)
        self.candidates = max(self.wanted * index.vectors_per_item, self.wanted)
        self.exact = index.kind == "flat"
        if self.restricted and not self.exact:
            self.candidates = max(_FILTERED_MIN_ROWS, self.candidates * _FILTERED_OVERFETCH)
        # Only for filters: a namespace scope is checked on the vector rows themselves,
        # cheaply enough that the over-fetching index scan keeps up, and the probe would cost
        # every scoped search (the common case) a pass over the scope's store rows.
        self.probe = parsed is not None
        # Settings the steps replaced, with their values from before the first one.
        self.previous: dict[str, str | None] = {}
        self._names: tuple[str, ...] = ()

    def scope_and_filter_params(self) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.parsed.params) if self.parsed is not None else {}
        if self.op.namespace_prefix:
            params.update(scope_params(self.op.namespace_prefix, "search_scope"))
        params["query_vector"] = self.query_vector
        return params

    def next_statement(self) -> BoundStatement | None:
        repo, op = self.repo, self.op
        assert repo.index is not None
        scoped, refresh = bool(op.namespace_prefix), bool(op.refresh_ttl)
        params = self.scope_and_filter_params()
        params.update(page_limit=op.limit, page_offset=op.offset)
        parsed = self.parsed
        if self.probe and parsed is not None:
            probe = repo._cached(
                repo._vector_statements,
                ("probe", scoped, parsed.shape, refresh),
                lambda: repo._probe_statement(scoped, parsed, refresh),
            )
            params["exact_cap"] = _EXACT_RANK_MAX_ITEMS
            return probe.bind(params)
        # IVFFlat reads its settings when the scan starts, before a row of the statement
        # exists; a join needs planner settings. Both take the multi-statement path.
        if self.joined or repo.index.kind == "ivfflat" or repo._pgvector_version is None:
            return None
        settings = (
            {} if self.exact else repo._settings_for(self.candidates, self.restricted, False)
        )
        names = self._names = tuple(settings)
        exact = self.exact
        ann = repo._cached(
            repo._vector_statements,
            ("ann", scoped, names, refresh, exact),
            lambda: repo._ann_statement(scoped, names, refresh, exact),
        )
        params.update({f"knob_{i}": value for i, value in enumerate(settings.values())})
        params.update(
            candidate_limit=self.candidates,
            wanted=self.wanted,
            short_is_final=exact or not repo._ann_may_stop_short(self.candidates, self.restricted),
        )
        return ann.bind(params)

    def consume(self, rows: Sequence[Sequence[Any]]) -> list[ItemRow] | None:
        head = rows[0]
        if self.probe:
            self.probe = False
            return self.repo.vector_items(rows, 2) if head[0] else None
        for i, name in enumerate(self._names):
            self.previous.setdefault(name, head[2 + i])
        if head[0]:
            return self.repo.vector_items(rows, 2 + len(self._names))
        if head[1] < self.candidates:
            # The ANN scan may have given up before it found enough rows; only an exact scan
            # can say there are no more.
            self.exact = True
        else:
            self.candidates *= 4
        return None
