"""Vector search: the ANN index, exact ranking where the index would not do, and paging.

:class:`VectorSearcher` builds and runs the statements on the ``store_vectors`` table that the
store's index configuration describes; :class:`VectorSearch` is the state of one search, whose
steps are single statements where possible (a lone search on an engine then costs one round
trip: the ANN scan with its own settings, ranked into the page with the items' values, or the
exact ranking of the few items a filter passes). What needs planner settings first (a join for
a filter or ``omit_expired``, an IVFFlat index) runs several statements in one transaction.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.store.base import SearchOp
from sqlalchemy import (
    CTE,
    BigInteger,
    Boolean,
    ColumnElement,
    Double,
    FromClause,
    Integer,
    Select,
    Subquery,
    Text,
    and_,
    bindparam,
    collate,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ..db.statements import BoundStatement, Statement
from .filters import ParsedFilter, filter_clause
from .namespaces import scope_clause, scope_params
from .repository import ItemRow, StoreRepository, cached_statement
from .vector_layer import vector_extension_version

__all__ = ["VectorSearch", "VectorSearcher"]

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
# A filter or scope passing at most this many items is answered exactly (the passing items are
# found first, their vectors ranked by true distance) instead of through the ANN index, whose
# iterative scan has to wade through ~1/selectivity rows per match to find them.
_EXACT_RANK_MAX_ITEMS = 2000


def _version_at_least(version: str | None, wanted: tuple[int, ...]) -> bool:
    if not version:
        return False
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= wanted


def _settings_cte(names: Sequence[str], values: Sequence[Any]) -> CTE:
    """A one-row MATERIALIZED CTE that applies ``set_config(name, value, true)`` (SET LOCAL,
    which has no Core form) for each setting: column ``p<i>`` the value it replaces, ``s<i>``
    the new one. The previous values are read in a MATERIALIZED CTE of their own, which is
    scanned before the select list (and its set_config calls) is evaluated."""
    previous = (
        select(*(func.current_setting(n, True).label(f"p{i}") for i, n in enumerate(names)))
        .cte("previous")
        .prefix_with("MATERIALIZED")
    )
    return (
        select(
            previous,
            *(
                func.set_config(n, value, True).label(f"s{i}")
                for i, (n, value) in enumerate(zip(names, values, strict=True))
            ),
        )
        .cte("knobs")
        .prefix_with("MATERIALIZED")
    )


def _scan_order(distance: ColumnElement[float], exact: bool) -> ColumnElement[float]:
    # ORDER BY the bare operator is what lets pgvector serve it from the ANN index; adding
    # zero makes it an expression the index cannot serve: an exact scan.
    return (distance + literal(0.0, Double)) if exact else distance


class VectorSearcher:
    """The vector-search statements of one store (an index must be configured)."""

    def __init__(self, repo: StoreRepository) -> None:
        assert repo.vectors is not None and repo.index is not None
        self.repo = repo
        self.vectors = repo.vectors
        self.index = repo.index
        self.omit_expired = repo.omit_expired
        # Read once from the database, on the first search that needs it.
        self.pgvector_version: str | None = None
        self.statements: dict[Any, Statement[Select[Any]]] = {}

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

    def settings_for(self, candidates: int, restricted: bool, joined: bool) -> dict[str, str]:
        """The planner and pgvector settings that size the ANN scan for this query."""
        assert self.index is not None and self.pgvector_version is not None
        iterative = _version_at_least(self.pgvector_version, (0, 8))
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
        """SET LOCAL ``settings``; returns the values they replace."""
        names = list(settings)
        knobs = _settings_cte(names, list(settings.values()))
        row = (await conn.execute(select(knobs))).one()
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

    def may_stop_short(self, candidates: int, restricted: bool) -> bool:
        """Whether an ANN scan returning fewer rows than asked may have missed some.

        HNSW yields at most ef_search rows (more only with an iterative scan, which stops
        after max_scan_tuples), and filters drop rows after the index produced them; IVFFlat
        only looks into ``probes`` lists.
        """
        assert self.index is not None
        return self.index.kind == "ivfflat" or restricted or candidates > _EF_SEARCH_MAX

    def _candidates_statement(
        self, op: SearchOp, parsed: ParsedFilter | None, *, exact: bool
    ) -> Select[Any]:
        assert self.vectors is not None
        v = self.vectors.c
        s = self.repo.store.c
        distance = self._distance()
        where: list[ColumnElement[bool]] = [
            scope_clause(v.prefix, "search_scope") if op.namespace_prefix else true()
        ]
        source: FromClause = self.vectors
        if parsed is not None or self.omit_expired:
            source = self.vectors.join(self.repo.store, and_(s.prefix == v.prefix, s.key == v.key))
            where += [filter_clause(s.value, parsed), self.repo.live_clause()]
        return (
            select(v.prefix, v.key, distance.label("distance"))
            .select_from(source)
            .where(*where)
            .order_by(_scan_order(distance, exact))
            # Inlined at execution (still cached as one compiled form): a LIMIT the planner can
            # see makes it choose the ANN index scan; a generic plan's guess may not.
            .limit(bindparam("candidate_limit", type_=Integer, literal_execute=True))
        )

    # --- one statement per step ------------------------------------------------

    def _page_with_items(self, head: Subquery, page: CTE, refresh: bool) -> Select[Any]:
        """``head``'s one row, joined with the page's items (value and distance), best first.

        ``head`` always yields its row, so the step's verdict arrives even for an empty page;
        the page's TTLs are refreshed in the same statement when asked.
        """
        s = self.repo.store.c
        items = page.join(self.repo.store, and_(s.prefix == page.c.prefix, s.key == page.c.key))
        stmt = (
            select(*head.c, *self.repo.item_columns(), page.c.distance)
            .select_from(head.outerjoin(items, true()))
            .order_by(page.c.distance, collate(s.prefix, "C"), collate(s.key, "C"))
        )
        return stmt.add_cte(self.repo.refresh_cte(page)) if refresh else stmt

    def _ranked_page(self, scored: Subquery | CTE, head_filter: ColumnElement[bool]) -> CTE:
        """Items of ``scored`` (vector rows with a distance) by their best field, one page."""
        best = func.min(scored.c.distance).label("distance")
        return (
            select(scored.c.prefix, scored.c.key, best)
            .where(head_filter)
            .group_by(scored.c.prefix, scored.c.key)
            # Code-point order for ties, as the Python-side ranking of the other paths.
            .order_by(best, collate(scored.c.prefix, "C"), collate(scored.c.key, "C"))
            # 64-bit: upstream takes any int, and a page past 2**31 is simply empty.
            .limit(bindparam("page_limit", type_=BigInteger))
            .offset(bindparam("page_offset", type_=BigInteger))
            .cte("page")
            .prefix_with("MATERIALIZED")
        )

    def probe_statement(
        self, scoped: bool, parsed: ParsedFilter, refresh: bool
    ) -> Select[Any]:
        """Rank exactly the items passing the filter and scope, if fewer than ``exact_cap``.

        Head row: ``final`` (fewer passed than the cap: the page is the answer) and how many
        passed. Finding out costs at most one pass over the matching store rows (the filter's
        containment test finds them in the GIN index), stopping at the cap; ranking them is a
        primary-key lookup per item, cheaper than wading through the ANN index for rare items.
        """
        assert self.vectors is not None
        v = self.vectors.c
        s = self.repo.store.c
        cap = bindparam("exact_cap", type_=Integer)
        passing = (
            select(s.prefix, s.key)
            .where(
                scope_clause(s.prefix, "search_scope") if scoped else true(),
                filter_clause(s.value, parsed),
                self.repo.live_clause(),
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
        # Exact distances: these few rows are ranked without pgvector's index.
        distance = _scan_order(self._distance(), exact=True)
        scored = (
            select(v.prefix, v.key, distance.label("distance"))
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

    def ann_statement(
        self, scoped: bool, names: tuple[str, ...], refresh: bool, exact: bool
    ) -> Select[Any]:
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
        limit = bindparam("candidate_limit", type_=Integer)
        nearest = (
            select(v.prefix, v.key, distance.label("distance"))
            .where(scope_clause(v.prefix, "search_scope") if scoped else true())
            .order_by(_scan_order(distance, exact))
            .limit(limit)
        )
        head_columns: list[ColumnElement[Any]] = []
        if names:
            knobs = _settings_cte(
                names, [bindparam(f"knob_{i}", type_=Text) for i in range(len(names))]
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

    def start(
        self, op: SearchOp, parsed: ParsedFilter | None, query_vector: Sequence[float]
    ) -> VectorSearch:
        """The state of one vector search; see :class:`VectorSearch`."""
        return VectorSearch(self, op, parsed, query_vector)

    # --- the multi-statement path -----------------------------------------------

    async def search(
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
        if self.pgvector_version is None:
            self.pgvector_version = await vector_extension_version(conn) or "0"
        if search is not None:
            # A retried transaction must start from the same state again: work on a copy.
            state = copy.copy(search)
            state.previous = dict(search.previous)
        else:
            state = self.start(op, parsed, query_vector)
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
                settings = self.settings_for(candidates, state.restricted, state.joined)
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
                if exact or not self.may_stop_short(candidates, state.restricted):
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
        items = await self.repo.get_items(
            conn, [pair for pair, _ in ranked], [op.refresh_ttl] * len(ranked)
        )
        return [
            ItemRow(**{**items[pair].__dict__, "score": self._score(dist)})
            for pair, dist in ranked
            if pair in items
        ]

    def items(self, rows: Sequence[Sequence[Any]], head: int) -> list[ItemRow]:
        """The page's items from a one-statement step's rows (after ``head`` columns)."""
        items = []
        for row in rows:
            prefix, key, value, created_at, updated_at, distance = row[head:]
            if prefix is not None:
                items.append(
                    ItemRow(
                        prefix,
                        key,
                        self.repo.decode(value),
                        created_at,
                        updated_at,
                        self._score(distance),
                    )
                )
        return items


class VectorSearch:
    """One vector search as a series of one-statement steps, for paths that can take them.

    :meth:`next_statement` gives the next step (None: the search must go on through
    :meth:`VectorSearcher.search`'s multi-statement path), :meth:`consume` reads the
    step's rows and returns the items once a step answered. A lone search thus usually costs
    one round trip: the filter probe, or the ANN scan with its settings, page and values.
    """

    def __init__(
        self,
        searcher: VectorSearcher,
        op: SearchOp,
        parsed: ParsedFilter | None,
        query_vector: Sequence[float],
    ) -> None:
        index = searcher.index
        assert index is not None
        self.searcher, self.op, self.parsed = searcher, op, parsed
        self.query_vector = query_vector
        self.wanted = op.offset + op.limit
        self.restricted = bool(op.namespace_prefix or parsed is not None or searcher.omit_expired)
        self.joined = bool(parsed is not None or searcher.omit_expired)
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
        searcher, op = self.searcher, self.op
        assert searcher.index is not None
        scoped, refresh = bool(op.namespace_prefix), bool(op.refresh_ttl)
        params = self.scope_and_filter_params()
        params.update(page_limit=op.limit, page_offset=op.offset)
        parsed = self.parsed
        if self.probe and parsed is not None:
            probe = cached_statement(
                searcher.statements,
                ("probe", scoped, parsed.shape, refresh),
                lambda: searcher.probe_statement(scoped, parsed, refresh),
            )
            params["exact_cap"] = _EXACT_RANK_MAX_ITEMS
            return probe.bind(params)
        # IVFFlat reads its settings when the scan starts, before a row of the statement
        # exists; a join needs planner settings. Both take the multi-statement path.
        if self.joined or searcher.index.kind == "ivfflat" or searcher.pgvector_version is None:
            return None
        settings = (
            {} if self.exact else searcher.settings_for(self.candidates, self.restricted, False)
        )
        names = self._names = tuple(settings)
        exact = self.exact
        ann = cached_statement(
            searcher.statements,
            ("ann", scoped, names, refresh, exact),
            lambda: searcher.ann_statement(scoped, names, refresh, exact),
        )
        params.update({f"knob_{i}": value for i, value in enumerate(settings.values())})
        params.update(
            candidate_limit=self.candidates,
            wanted=self.wanted,
            short_is_final=(
                exact or not searcher.may_stop_short(self.candidates, self.restricted)
            ),
        )
        return ann.bind(params)

    def consume(self, rows: Sequence[Sequence[Any]]) -> list[ItemRow] | None:
        head = rows[0]
        if self.probe:
            self.probe = False
            return self.searcher.items(rows, 2) if head[0] else None
        for i, name in enumerate(self._names):
            self.previous.setdefault(name, head[2 + i])
        if head[0]:
            return self.searcher.items(rows, 2 + len(self._names))
        if head[1] < self.candidates:
            # The ANN scan may have given up before it found enough rows; only an exact scan
            # can say there are no more.
            self.exact = True
        else:
            self.candidates *= 4
        return None
