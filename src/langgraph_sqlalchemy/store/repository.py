"""The store's SQL: Core statements on the ``store`` / ``store_vectors`` tables.

Every method takes an ``AsyncConnection`` that :class:`~langgraph_sqlalchemy.database.Database`
opened and runs its statements there; nothing here begins, commits or retries. Lists of keys
travel as bound arrays (``unnest(:prefixes, :keys)``), so one statement text serves any batch
size and the compiled and prepared-statement caches stay warm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from langgraph.store.base import ListNamespacesOp, SearchOp
from sqlalchemy import (
    CTE,
    BigInteger,
    Boolean,
    ColumnElement,
    Delete,
    Double,
    Executable,
    FromClause,
    Select,
    Table,
    TableValuedAlias,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, Insert, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..db.statements import BoundStatement, Statement
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

__all__ = ["ItemRow", "StoreRepository", "VectorRow", "cached_statement"]

# Digits in a row that only a number of 19 digits or more has (see StoreRepository.decode).
_LONG_DIGIT_RUN = re.compile(r"[0-9]{19}")

Pair = tuple[str, str]  # (prefix, key)

# Built statements kept per shape for reuse (see cached_statement).
_STATEMENTS_KEPT = 128


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


def _unnest_pairs(prefixes: str, keys: str) -> TableValuedAlias:
    return (
        func.unnest(bindparam(prefixes, type_=ARRAY(Text)), bindparam(keys, type_=ARRAY(Text)))
        .table_valued("prefix", "key")
        .render_derived()
    )


def cached_statement(
    cache: dict[Any, Statement[Any]], shape: Any, build: Callable[[], Executable]
) -> Statement[Any]:
    """The statement kept in ``cache`` for ``shape``, built by ``build`` the first time."""
    statement = cache.get(shape)
    if statement is None:
        # Bounded: callers choose the shapes (filters, conditions), usually a handful.
        if len(cache) >= _STATEMENTS_KEPT:
            cache.clear()
        statement = cache[shape] = Statement(build())
    return statement


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
        self._namespace_statements: dict[Any, Statement[Any]] = {}
        self._search_statements: dict[Any, Statement[Any]] = {}
        self._write_statements: dict[Any, Statement[Any]] = {}
        # The hot read, built once: only its bound arrays change from call to call.
        self._get: Statement[Select[Any]] = Statement(self._get_items_statement())

    # --- shared pieces -----------------------------------------------------------------------

    def live_clause(self) -> ColumnElement[bool]:
        """Rows not past their expiry, when expired rows are to be hidden."""
        if not self.omit_expired:
            return true()
        s = self.store.c
        return or_(s.expires_at.is_(None), s.expires_at > func.now())

    def _refreshed_expiry(self) -> ColumnElement[datetime]:
        # make_interval's secs is double precision: fractional minutes stay exact (upstream's
        # ``ttl_minutes || ' minutes'`` on an integer column turned 0.1 into 0).
        return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, self.store.c.ttl_minutes * 60.0)

    def item_columns(self) -> list[ColumnElement[Any]]:
        s = self.store.c
        # The JSON text, decoded here (orjson, or the user's deserializer) rather than by
        # the driver's json.loads.
        return [s.prefix, s.key, cast(s.value, Text).label("value"), s.created_at, s.updated_at]

    def decode(self, raw: str) -> dict[str, Any]:
        if self._loads is not None:
            return self._loads(raw.encode())
        # orjson reads an integer beyond 64 bits as a float, losing digits that JSONB kept
        # (and that upstream's json.loads returns exactly). Such a number has at least 19
        # digits in a row; only a text holding a run that long (a rare value) is read with
        # the standard library, which is exact, and reads everything else the same.
        value = orjson.loads(raw) if _LONG_DIGIT_RUN.search(raw) is None else json.loads(raw)
        return value if isinstance(value, dict) else {"value": value}

    def _item_from_values(self, row: Sequence[Any]) -> ItemRow:
        # Positional: precompiled statements return the driver's records, not SQLAlchemy rows.
        prefix, key, value, created_at, updated_at = row
        return ItemRow(prefix, key, self.decode(value), created_at, updated_at)

    # --- reads ---------------------------------------------------------------------------------

    def refresh_cte(self, targets: FromClause, *extra: ColumnElement[bool]) -> CTE:
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
                self.live_clause(),
                *extra,
            )
            .returning(s.key)
            .cte("refreshed")
        )

    def _get_items_statement(self) -> Select[Any]:
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
            select(*self.item_columns())
            .select_from(
                self.store.join(keys, and_(s.prefix == keys.c.prefix, s.key == keys.c.key))
            )
            .where(self.live_clause())
            .add_cte(self.refresh_cte(keys, keys.c.refresh))
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
        statement = cached_statement(
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
    ) -> Select[Any]:
        s = self.store.c
        page = (
            select(*self.item_columns())
            .where(
                scope_clause(s.prefix, "search_scope") if scoped else true(),
                filter_clause(s.value, parsed),
                self.live_clause(),
            )
            .order_by(s.updated_at.desc(), s.prefix, s.key)
            # 64-bit: upstream takes any int, and a page past 2**31 is simply empty.
            .limit(bindparam("search_limit", type_=BigInteger))
            .offset(bindparam("search_offset", type_=BigInteger))
        )
        if not refresh:
            return page
        results = page.cte("results")
        return (
            select(results)
            .add_cte(self.refresh_cte(results))
            .order_by(results.c.updated_at.desc(), results.c.prefix, results.c.key)
        )

    def bound_list_namespaces(self, op: ListNamespacesOp) -> BoundStatement:
        """``list_namespaces`` as one statement for ``Database.fetch``; labels validated."""
        conditions = tuple((c.match_type, tuple(c.path)) for c in op.match_conditions or ())
        statement = cached_statement(
            self._namespace_statements,
            listing_shape(conditions, op.max_depth),
            lambda: list_namespaces_statement(
                self.store,
                conditions=conditions,
                max_depth=op.max_depth,
                live_only=self.live_clause() if self.omit_expired else None,
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
        statement = cached_statement(
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

    def _write_statement(self, deletes: bool, upserts: bool, vectors: bool) -> Insert | Delete:
        parts: list[Insert | Delete] = []
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

    def _delete_items_statement(self) -> Delete:
        keys = _unnest_pairs("delete_prefixes", "delete_keys")
        s = self.store.c
        return delete(self.store).where(s.prefix == keys.c.prefix, s.key == keys.c.key)

    def _upsert_items_statement(self) -> Insert:
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

    def _incoming_vectors(self) -> TableValuedAlias:
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

    def _stale_vectors_statement(self) -> Delete:
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

    def _upsert_vectors_statement(self) -> Insert:
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
