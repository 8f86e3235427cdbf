"""Vector search with pgvector: vector/halfvec, hnsw/ivfflat/flat, the three distances,
embedding fields, exact pagination, filtered search, the ANN index and its recall."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langgraph.store.base import PutOp
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemyStore, InvalidInputError, SchemaMismatchError
from langgraph_sqlalchemy.schema import get_tables
from langgraph_sqlalchemy.store.vector_layer import ensure_vector_layer

pytestmark = pytest.mark.vector

DIMS = 16
TABLES = get_tables(None)


def bag_of_words(text_: str, dims: int = DIMS) -> list[float]:
    """Deterministic: each word adds to one hashed coordinate (plus a small constant so no
    vector is zero)."""
    v = [0.01] * dims
    for word in re.findall(r"\w+", text_.lower()):
        h = int(hashlib.sha256(word.encode()).hexdigest(), 16)
        v[h % dims] += 1.0 + (h >> 20) % 7 / 10
    return v


class CountingEmbeddings(Embeddings):
    """A fake embedder that records every text it is asked to embed."""

    def __init__(self, dims: int = DIMS, table: dict[str, list[float]] | None = None) -> None:
        self.dims = dims
        self.table = table
        self.documents: list[list[str]] = []
        self.queries: list[str] = []

    def _one(self, t: str) -> list[float]:
        if self.table is not None and t in self.table:
            return self.table[t]
        return bag_of_words(t, self.dims)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents.append(list(texts))
        return [self._one(t) for t in texts]

    def embed_query(self, text_: str) -> list[float]:
        self.queries.append(text_)
        return self._one(text_)


def exact_scores(
    distance: str, query: Sequence[float], docs: Sequence[Sequence[float]]
) -> np.ndarray:
    q = np.asarray(query, dtype=np.float64)
    d = np.asarray(docs, dtype=np.float64)
    if distance == "cosine":
        return (d @ q) / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))
    if distance == "inner_product":
        return d @ q
    return -np.linalg.norm(d - q, axis=1)


def make_store(
    engine: AsyncEngine, embed: Embeddings | None = None, **index: Any
) -> AsyncSQLAlchemyStore:
    config: dict[str, Any] = {"dims": DIMS, "embed": embed or CountingEmbeddings()}
    config.update(index)
    return AsyncSQLAlchemyStore(engine, index=config)  # type: ignore[arg-type]


async def vector_rows(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT prefix, key, field_name FROM store_vectors ORDER BY 1, 2, 3")
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


WORDS = [
    "apple",
    "banana",
    "cherry",
    "delta",
    "echo",
    "fox",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "nova",
    "oscar",
]


def corpus(n: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(n)]


# --- configurations ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector_type", ["vector", "halfvec"])
@pytest.mark.parametrize("kind", ["hnsw", "ivfflat", "flat"])
@pytest.mark.parametrize("distance", ["cosine", "l2", "inner_product"])
async def test_ranking_and_scores(
    engine: AsyncEngine, vector_type: str, kind: str, distance: str
) -> None:
    embed = CountingEmbeddings()
    ann: dict[str, Any] = {"kind": kind, "vector_type": vector_type}
    if kind == "ivfflat":
        ann["lists"] = 4
    store = make_store(engine, embed, distance_type=distance, ann_index_config=ann, fields=["text"])
    await store.setup()
    texts = corpus(40)
    await store.abatch(
        [PutOp(("docs", str(i % 2)), f"d{i}", {"text": t}) for i, t in enumerate(texts)]
    )
    query = "apple banana kilo"
    results = await store.asearch(("docs",), query=query, limit=10)
    expected = exact_scores(distance, bag_of_words(query), [bag_of_words(t) for t in texts])
    tolerance = 2e-2 if vector_type == "halfvec" else 1e-4
    assert len(results) == 10
    for item in results:
        i = int(item.key[1:])
        assert item.score == pytest.approx(expected[i], rel=tolerance, abs=tolerance)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    # The top-10 scores are the exact top-10 (ties may swap items of equal score).
    assert np.allclose(sorted(scores, reverse=True), np.sort(expected)[::-1][:10], atol=tolerance)
    async with engine.connect() as conn:
        versions = (
            (
                await conn.execute(
                    select(TABLES.vector_migrations.c.v).order_by(TABLES.vector_migrations.c.v)
                )
            )
            .scalars()
            .all()
        )
        ops = (
            await conn.execute(
                text(
                    "SELECT opc.opcname, am.amname FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                    "JOIN pg_opclass opc ON opc.oid = i.indclass[0] "
                    "WHERE c.relname = 'store_vectors_embedding_idx'"
                )
            )
        ).all()
    suffix = {"cosine": "cosine_ops", "l2": "l2_ops", "inner_product": "ip_ops"}[distance]
    if kind == "flat":
        assert versions == [0, 1] and ops == []
    else:
        assert versions == [0, 1, 2]
        assert [tuple(r) for r in ops] == [(f"{vector_type}_{suffix}", kind)]


async def test_no_index_configured_ignores_query(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine)
    await store.aput(("d",), "k", {"text": "apple"})
    [item] = await store.asearch(("d",), query="apple")
    assert item.key == "k" and item.score is None


# --- fields and paths -------------------------------------------------------------------------


async def test_fields_and_index_paths(engine: AsyncEngine) -> None:
    embed = CountingEmbeddings()
    store = make_store(engine, embed, fields=["title", "chunks[*].text"])
    await store.setup()
    doc = {
        "title": "fox golf",
        "chunks": [{"text": "apple"}, {"text": "banana cherry"}],
        "body": "x",
    }
    await store.aput(("d",), "a", doc)
    await store.aput(
        ("d",), "b", {"body": "kilo lima", "meta": {"tag": "oscar"}}, index=["body", "meta.tag"]
    )
    await store.aput(("d",), "c", {"note": "nova"}, index=["$"])
    await store.aput(("d",), "none", {"unrelated": 1})  # no configured field present
    assert await vector_rows(engine) == [
        ("d", "a", "chunks[*].text.0"),
        ("d", "a", "chunks[*].text.1"),
        ("d", "a", "title"),
        ("d", "b", "body"),
        ("d", "b", "meta.tag"),
        ("d", "c", "$"),
    ]
    # The whole document for "$" (as get_text_at_path reads it).
    assert '{"note": "nova"}' in [t for batch in embed.documents for t in batch]
    # Each item once, ranked by its best field.
    results = await store.asearch(("d",), query="banana cherry", limit=10)
    assert results[0].key == "a"
    assert len({r.key for r in results}) == len(results) == 3  # "none" has no vector
    assert (await store.asearch(("d",), query="oscar", limit=1))[0].key == "b"


async def test_re_put_replaces_vectors_and_index_false_removes_them(engine: AsyncEngine) -> None:
    store = make_store(engine, fields=["chunks[*]"])
    await store.setup()
    await store.aput(("d",), "k", {"chunks": ["apple", "banana", "cherry"]})
    assert [r[2] for r in await vector_rows(engine)] == [
        "chunks[*].0",
        "chunks[*].1",
        "chunks[*].2",
    ]
    await store.aput(("d",), "k", {"chunks": ["delta"]})
    assert [r[2] for r in await vector_rows(engine)] == ["chunks[*]"]
    top = await store.asearch(("d",), query="delta", limit=1)
    assert top[0].key == "k" and top[0].score == pytest.approx(1.0)
    await store.aput(("d",), "k", {"chunks": ["delta"]}, index=False)
    assert await vector_rows(engine) == []
    assert await store.asearch(("d",), query="delta") == []  # no vectors, not in vector results
    assert [i.key for i in await store.asearch(("d",))] == ["k"]  # still there for plain search
    await store.aput(("d",), "k", {"chunks": ["echo"]})
    await store.adelete(("d",), "k")
    assert await vector_rows(engine) == []


async def test_identical_texts_are_embedded_once(engine: AsyncEngine) -> None:
    embed = CountingEmbeddings()
    store = make_store(engine, embed, fields=["a", "b"])
    await store.setup()
    await store.abatch(
        [
            PutOp(("d",), f"k{i}", {"a": "same text", "b": "same text" if i % 2 else "other"})
            for i in range(6)
        ]
    )
    assert embed.documents == [["same text", "other"]]
    assert len(await vector_rows(engine)) == 12
    await store.abatch([PutOp(("d",), "k0", {"a": "x"}), PutOp(("d",), "k0", {"a": "y"})])
    assert embed.documents[-1] == ["y"]  # the overwritten put is never embedded
    embed.queries.clear()
    # Two searches with one query text, coalesced into one batch: one aembed_query.
    await asyncio.gather(
        store.asearch(("d",), query="same"), store.asearch(("d",), query="same", limit=3)
    )
    assert embed.queries == ["same"]


async def test_embedder_with_wrong_dims_writes_nothing(engine: AsyncEngine) -> None:
    store = make_store(engine, CountingEmbeddings(dims=DIMS + 1))
    # Build the layer with the right dims first, through a correctly configured store.
    await make_store(engine).setup()
    with pytest.raises(InvalidInputError, match="dimensions"):
        await store.aput(("d",), "k", {"text": "apple"})
    assert await AsyncSQLAlchemyStore(engine).aget(("d",), "k") is None


# --- pagination and filters -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hnsw", "flat"])
async def test_deep_pagination_is_exact(engine: AsyncEngine, kind: str) -> None:
    store = make_store(engine, fields=["a", "b"], ann_index_config={"kind": kind})
    await store.setup()
    texts = corpus(160, seed=3)
    docs = {f"k{i:03d}": {"a": texts[2 * i], "b": texts[2 * i + 1]} for i in range(80)}
    await store.abatch([PutOp(("p",), k, v) for k, v in docs.items()])
    query = "hotel india juliet"
    q = bag_of_words(query)
    best = {
        k: max(exact_scores("cosine", q, [bag_of_words(v["a"]), bag_of_words(v["b"])]))
        for k, v in docs.items()
    }
    pages = [await store.asearch(("p",), query=query, limit=7, offset=o) for o in range(0, 84, 7)]
    flat = [item for page in pages for item in page]
    assert [len(p) for p in pages] == [7] * 11 + [3]
    assert len({i.key for i in flat}) == 80  # every item exactly once
    scores = [i.score for i in flat]
    assert np.allclose(scores, sorted(best.values(), reverse=True), atol=1e-5)
    for item in flat:
        assert item.score == pytest.approx(best[item.key], abs=1e-5)
    assert await store.asearch(("p",), query=query, limit=5, offset=80) == []


async def test_scan_settings_apply_inside_the_one_statement(engine: AsyncEngine) -> None:
    """A lone unscoped search is one statement that sets ``hnsw.ef_search`` for its own scan.

    HNSW returns at most ef_search rows (pgvector's default is 40) and an unscoped scan that
    returns fewer rows than asked is taken as complete: without the setting in force when the
    index is read, this search would come back with 40 items instead of 100.
    """
    store = make_store(engine, fields=["text"])
    await store.setup()
    texts = corpus(150, seed=11)
    await store.abatch(
        [PutOp(("w", str(i % 3)), f"k{i}", {"text": t}) for i, t in enumerate(texts)]
    )
    await store.asearch((), query="alpha", limit=1)  # learns pgvector's version once
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        results = await store.asearch((), query="alpha bravo", limit=100)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(results) == 100 and len({r.key for r in results}) == 100
    assert len(statements) == 1 and "set_config" in statements[0]
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    async with engine.connect() as conn:  # transaction-local: nothing left on the connection
        assert (await conn.execute(text("SHOW hnsw.ef_search"))).scalar_one() == "40"


async def test_filtered_vector_search(engine: AsyncEngine) -> None:
    store = make_store(engine, fields=["text"])
    await store.setup()
    texts = corpus(1200, seed=11)
    ops = [
        PutOp(
            ("f", "even" if i % 2 == 0 else "odd"),
            f"k{i}",
            {"text": t, "i": i, "rare": i % 300 == 0},
        )
        for i, t in enumerate(texts)
    ]
    await store.abatch(ops)
    query = "mike nova oscar"
    q = bag_of_words(query)
    scores = exact_scores("cosine", q, [bag_of_words(t) for t in texts])

    def expected(keep: Any, limit: int) -> list[float]:
        return sorted((scores[i] for i in range(len(texts)) if keep(i)), reverse=True)[:limit]

    got = await store.asearch(("f", "odd"), query=query, filter={"i": {"$gte": 600}}, limit=20)
    assert all(r.namespace == ("f", "odd") and r.value["i"] >= 600 for r in got)
    assert np.allclose(
        [r.score for r in got], expected(lambda i: i % 2 == 1 and i >= 600, 20), atol=1e-5
    )
    # A very selective filter: 4 matches out of 1200 are all found, in order.
    rare = await store.asearch(("f",), query=query, filter={"rare": True}, limit=10)
    assert sorted(r.value["i"] for r in rare) == [0, 300, 600, 900]
    assert np.allclose([r.score for r in rare], expected(lambda i: i % 300 == 0, 10), atol=1e-5)
    # Scope on whole labels: ("f", "od") matches nothing.
    assert await store.asearch(("f", "od"), query=query) == []


# --- the ANN index at scale -------------------------------------------------------------------


def clustered(n: int, dims: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dims))
    labels = rng.integers(0, clusters, size=n)
    points = centers[labels] + rng.normal(scale=0.35, size=(n, dims))
    return points.astype(np.float32)


async def test_ann_index_is_used_with_recall_at_10(engine: AsyncEngine) -> None:
    n, dims, n_queries = 20_000, 64, 20
    points = clustered(n + n_queries, dims, clusters=50, seed=5)
    docs, queries = points[:n], points[n:]
    table = {f"doc {i}": docs[i].tolist() for i in range(n)}
    table.update({f"query {j}": queries[j].tolist() for j in range(n_queries)})
    embed = CountingEmbeddings(dims=dims, table=table)

    # Load without the index, then build it (as a DBA would on a populated table).
    flat = AsyncSQLAlchemyStore(
        engine,
        index={
            "dims": dims,
            "embed": embed,
            "fields": ["text"],
            "ann_index_config": {"kind": "flat"},
        },
    )
    await flat.setup()
    for start in range(0, n, 5000):
        await flat.abatch(
            [
                PutOp(("docs", str(i % 4)), f"d{i}", {"text": f"doc {i}", "i": i})
                for i in range(start, start + 5000)
            ]
        )
    await ensure_vector_layer(engine, dims=dims, kind="hnsw")
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE store_vectors"))
        await conn.execute(text("ANALYZE store"))
    store = AsyncSQLAlchemyStore(engine, index={"dims": dims, "embed": embed, "fields": ["text"]})

    statements: list[tuple[str, Any]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        statements.append((statement, parameters))

    async def explain_last_search() -> str:
        """EXPLAIN the store's last ANN query, under the settings it ran with: those of a
        separate set_config statement (the path with a join), or its own (one statement)."""
        candidates = next(
            s
            for s in reversed(statements)
            if "ORDER BY" in s[0] and "store_vectors" in s[0] and "passing" not in s[0]
        )
        settings = [s for s in statements if "set_config" in s[0] and "store_vectors" not in s[0]]
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            async with driver.transaction():  # SET LOCAL lasts for this transaction
                for sql, params in settings:
                    await driver.fetch(sql, *params)
                plan = await driver.fetch("EXPLAIN " + candidates[0], *candidates[1])
        return "\n".join(r[0] for r in plan)

    def sorted_before_limit(plan: str) -> bool:
        """Whether a Sort sits between the ANN index scan and the LIMIT above it: the rows
        would then all be read and sorted instead of taken from the index in order."""
        lines = plan.splitlines()
        at = next(i for i, line in enumerate(lines) if "store_vectors_embedding_idx" in line)
        depth = len(lines[at]) - len(lines[at].lstrip())
        for line in reversed(lines[:at]):
            indent = len(line) - len(line.lstrip())
            if indent >= depth or (indent and not line.strip().startswith("->")):
                continue
            depth = indent
            if "Sort" in line:
                return True
            if "Limit" in line:
                return False
        return False

    normalized = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        for label, kwargs, keep, via_index in [
            ("unfiltered", {}, lambda i: True, True),
            ("filtered (50%)", {"filter": {"i": {"$gte": n // 2}}}, lambda i: i >= n // 2, True),
            ("scoped (25%)", {"namespace_prefix": ("docs", "1")}, lambda i: i % 4 == 1, True),
            # ~1% of the items pass (labels are drawn at random, so i < n/100 is a random 1%):
            # the ANN index would have to wade through ~100 rows per match, so those few
            # items are ranked exactly, in the one statement that found them.
            ("filtered (1%)", {"filter": {"i": {"$lt": n // 100}}}, lambda i: i < n // 100, False),
            # Just above the exact path's cap: the index again, with an iterative scan.
            ("filtered (12.5%)", {"filter": {"i": {"$lt": n // 8}}}, lambda i: i < n // 8, True),
        ]:
            hits = 0
            for j in range(n_queries):
                statements.clear()
                results = await store.asearch(
                    kwargs.get("namespace_prefix", ()),  # type: ignore[arg-type]
                    query=f"query {j}",
                    filter=kwargs.get("filter"),  # type: ignore[arg-type]
                    limit=10,
                )
                q = queries[j] / np.linalg.norm(queries[j])
                truth = [int(i) for i in np.argsort(-(normalized @ q)) if keep(int(i))][:10]
                hits += len(set(truth) & {int(r.key[1:]) for r in results})
            recall = hits / (10 * n_queries)
            if not via_index:
                print(f"{label}: recall@10 {recall:.3f}, statements {len(statements)}")
                assert recall >= 0.95, label
                assert not any("set_config" in sql for sql, _ in statements), label
                assert len(statements) == 1, label  # exact ranking, items and all
                continue
            plan = await explain_last_search()
            print(
                f"{label}: recall@10 over {n_queries} queries on {n} clustered {dims}-d vectors: "
                f"{recall:.3f}\n{plan}"
            )
            assert recall >= 0.95, label
            assert "Index Scan using store_vectors_embedding_idx" in plan, label
            assert not sorted_before_limit(plan), label
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)


# --- the vector layer -------------------------------------------------------------------------


async def test_existing_vector_table_with_other_dims_fails_closed(engine: AsyncEngine) -> None:
    await make_store(engine).setup()
    other = AsyncSQLAlchemyStore(
        engine, index={"dims": DIMS * 2, "embed": CountingEmbeddings(DIMS * 2)}
    )
    with pytest.raises(SchemaMismatchError, match=rf"vector\({DIMS}\).*vector\({DIMS * 2}\)"):
        await other.setup()
    half = make_store(engine, ann_index_config={"vector_type": "halfvec"})
    with pytest.raises(SchemaMismatchError, match=rf"vector\({DIMS}\).*halfvec\({DIMS}\)"):
        await half.setup()
    await make_store(engine).setup()  # the matching configuration still works


async def test_vector_layer_rejects_bad_parameters_before_any_ddl(engine: AsyncEngine) -> None:
    for kwargs in (
        {"kind": "hnsw", "index_params": {"m": "16; DROP TABLE store"}},
        {"kind": "hnsw", "index_params": {"m": -1}},
        {"kind": "diskann"},
        {"vector_type": "bit"},
        {"distance_type": "hamming"},
    ):
        with pytest.raises(ValueError):
            await ensure_vector_layer(engine, dims=DIMS, **kwargs)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT to_regclass('store_vectors')"))).scalar() is None
    with pytest.raises(ValueError):
        make_store(engine, ann_index_config={"kind": "hnsw", "ef_construction": 1.5})


async def test_ensure_vector_layer_is_idempotent_and_rebuilds_nothing(engine: AsyncEngine) -> None:
    params = {"m": 8, "ef_construction": 32}
    for _ in range(2):
        await ensure_vector_layer(
            engine, dims=DIMS, kind="hnsw", distance_type="l2", index_params=params
        )
    async with engine.connect() as conn:
        definition = (
            await conn.execute(
                text("SELECT pg_get_indexdef('store_vectors_embedding_idx'::regclass)")
            )
        ).scalar_one()
    assert "USING hnsw (embedding vector_l2_ops) WITH (" in definition
    assert "m='8'" in definition and "ef_construction='32'" in definition


def test_bag_of_words_is_deterministic() -> None:
    assert bag_of_words("apple banana") == bag_of_words("banana  apple")
    assert not math.isclose(
        float(np.dot(bag_of_words("apple"), bag_of_words("kilo"))),
        float(np.dot(bag_of_words("apple"), bag_of_words("apple"))),
    )


async def test_vector_search_refreshes_ttl_and_honours_omit_expired(engine: AsyncEngine) -> None:
    config = {"dims": DIMS, "embed": CountingEmbeddings(), "fields": ["text"]}
    store = AsyncSQLAlchemyStore(engine, index=config, ttl={"default_ttl": 1, "omit_expired": True})  # type: ignore[arg-type]
    await store.setup()
    await store.abatch(
        [PutOp(("t",), k, {"text": k}, ttl=1) for k in ("apple", "banana", "cherry")]
    )
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE store SET expires_at = CASE key WHEN 'cherry' THEN now() - interval '1s' "
                "ELSE now() + interval '10 seconds' END"
            )
        )
    results = await store.asearch(("t",), query="apple", limit=10)
    assert sorted(r.key for r in results) == ["apple", "banana"]  # the expired one is hidden
    async with engine.connect() as conn:
        remaining = dict(
            (
                await conn.execute(text("SELECT key, expires_at - now() FROM store ORDER BY key"))
            ).all()
        )
    assert remaining["apple"].total_seconds() > 50 and remaining["banana"].total_seconds() > 50
    assert remaining["cherry"].total_seconds() < 0  # never revived


async def test_host_connection_vector_search_leaves_settings_as_found(engine: AsyncEngine) -> None:
    await make_store(engine, fields=["text"]).setup()
    async with engine.connect() as conn:
        await conn.begin()
        store = AsyncSQLAlchemyStore(
            conn, index={"dims": DIMS, "embed": CountingEmbeddings(), "fields": ["text"]}
        )
        await store.abatch(
            [PutOp(("h",), f"k{i}", {"text": t, "i": i}) for i, t in enumerate(corpus(30))]
        )
        before = (
            await conn.execute(
                text("SELECT current_setting('enable_sort'), current_setting('hnsw.ef_search')")
            )
        ).one()
        results = await store.asearch(
            ("h",), query="apple", filter={"i": {"$lt": 20}}, limit=5, offset=3
        )
        assert len(results) == 5 and all(r.value["i"] < 20 for r in results)
        # The ANN paths that set ef_search inside their one statement restore it too.
        assert len(await store.asearch((), query="apple", limit=50)) == 30
        assert len(await store.asearch(("h",), query="apple", limit=7, offset=2)) == 7
        after = (
            await conn.execute(
                text("SELECT current_setting('enable_sort'), current_setting('hnsw.ef_search')")
            )
        ).one()
        assert tuple(after) == tuple(before) == ("on", "40")
        await conn.rollback()
    assert await AsyncSQLAlchemyStore(engine).aget(("h",), "k0") is None


async def test_concurrent_setup_calls(engine: AsyncEngine) -> None:
    stores = [make_store(engine, fields=["text"]) for _ in range(4)]
    await asyncio.gather(*(s.setup() for s in stores))
    await stores[0].aput(("c",), "k", {"text": "apple"})
    [hit] = await stores[3].asearch(("c",), query="apple")
    assert hit.key == "k" and hit.score == pytest.approx(1.0)
    async with engine.connect() as conn:
        valid = (
            await conn.execute(
                text(
                    "SELECT indisvalid FROM pg_index "
                    "WHERE indexrelid = 'store_vectors_embedding_idx'::regclass"
                )
            )
        ).scalar_one()
    assert valid is True
