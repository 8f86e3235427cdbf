"""Vector search scores and ranking against numpy (SPEC §5.4).

The score of an item is its best field's similarity to the query: ``1 - cosine distance``,
the inner product, or ``-L2 distance``. Vectors are random (seeded) and reach the store through
:class:`~fake_embeddings.TableEmbeddings`, so numpy computes the expected scores from the very
same numbers, rounded first to what the column stores (float4 for ``vector``, float2 for
``halfvec``). Ranks are compared position by position: the item at each position must score
what numpy's item at that position scores, so only genuine ties (within the tolerance) may
swap places.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from langgraph.store.base import SearchItem
from sqlalchemy.ext.asyncio import AsyncEngine

from fake_embeddings import TableEmbeddings
from langgraph_sqlalchemy import AsyncSQLAlchemyStore

pytestmark = pytest.mark.vector

DIMS = 12
ITEMS = 30
NAMESPACE = ("scores",)
TOLERANCE = {"vector": 1e-4, "halfvec": 1e-2}
STORAGE_DTYPE = {"vector": np.float32, "halfvec": np.float16}


def numpy_score(distance: str, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    if distance == "cosine":
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)
        return (vectors @ query) / norms
    if distance == "inner_product":
        return vectors @ query
    if distance == "l2":
        return -np.linalg.norm(vectors - query, axis=1)
    raise AssertionError(distance)


def assert_ranked(
    results: Sequence[SearchItem],
    expected: dict[str, float],
    *,
    offset: int,
    limit: int,
    tolerance: float,
) -> None:
    """``results`` is the page ``[offset, offset + limit)`` of ``expected`` ranked by score."""
    ranking = sorted(expected.items(), key=lambda pair: -pair[1])
    want = max(0, min(limit, len(ranking) - offset))
    got = [(item.key, item.score) for item in results]
    assert len(results) == want, f"{len(results)} results, expected {want}: {got}"
    assert len({item.key for item in results}) == len(results), f"duplicates: {got}"
    for position, item in enumerate(results, start=offset):
        assert item.score is not None, got
        assert item.key in expected, f"unexpected item {item.key}"
        assert item.score == pytest.approx(expected[item.key], abs=tolerance), (
            f"{item.key}: score {item.score}, numpy {expected[item.key]}"
        )
        assert item.score == pytest.approx(ranking[position][1], abs=tolerance), (
            f"position {position} holds {item.key} ({item.score}); numpy ranks "
            f"{ranking[position][0]} ({ranking[position][1]}) there; page {got}"
        )


async def _store(
    engine: AsyncEngine,
    *,
    distance: str,
    vector_type: str,
    kind: str,
    fields: list[str],
    table: dict[str, Sequence[float]],
) -> AsyncSQLAlchemyStore:
    index: dict[str, Any] = {
        "dims": DIMS,
        "embed": TableEmbeddings(table),
        "fields": fields,
        "distance_type": distance,
        "ann_index_config": {"kind": kind, "vector_type": vector_type},
    }
    store = AsyncSQLAlchemyStore(engine, index=index)
    await store.setup()
    return store


@pytest.mark.parametrize("vector_type", ["vector", "halfvec"])
@pytest.mark.parametrize("distance", ["cosine", "inner_product", "l2"])
async def test_scores_and_ranks_match_numpy(
    engine: AsyncEngine, distance: str, vector_type: str
) -> None:
    rng = np.random.default_rng(20261122)
    vectors = rng.normal(size=(ITEMS, DIMS))
    queries = rng.normal(size=(3, DIMS))
    table = {f"doc-{i}": vectors[i].tolist() for i in range(ITEMS)}
    table.update({f"query-{j}": queries[j].tolist() for j in range(len(queries))})
    store = await _store(
        engine,
        distance=distance,
        vector_type=vector_type,
        kind="hnsw",
        fields=["text"],
        table=table,
    )
    for i in range(ITEMS):
        await store.aput(NAMESPACE, f"k{i}", {"text": f"doc-{i}", "even": i % 2 == 0})

    stored = vectors.astype(STORAGE_DTYPE[vector_type]).astype(np.float64)
    tolerance = TOLERANCE[vector_type]
    for j in range(len(queries)):
        query = queries[j].astype(STORAGE_DTYPE[vector_type]).astype(np.float64)
        scores = numpy_score(distance, query, stored)
        expected = {f"k{i}": float(scores[i]) for i in range(ITEMS)}

        everything = await store.asearch(NAMESPACE, query=f"query-{j}", limit=ITEMS)
        assert_ranked(everything, expected, offset=0, limit=ITEMS, tolerance=tolerance)

        # Pages at every offset are slices of the one ranking (exact pagination).
        for offset in (0, 5, 13, 25, 29, 30):
            page = await store.asearch(NAMESPACE, query=f"query-{j}", limit=5, offset=offset)
            assert_ranked(page, expected, offset=offset, limit=5, tolerance=tolerance)

        # A filter applies before ranking: the best even items, not the even ones of the best.
        evens = {key: score for key, score in expected.items() if int(key[1:]) % 2 == 0}
        filtered = await store.asearch(
            NAMESPACE, query=f"query-{j}", filter={"even": True}, limit=4, offset=2
        )
        assert_ranked(filtered, evens, offset=2, limit=4, tolerance=tolerance)


@pytest.mark.parametrize("distance", ["cosine", "inner_product", "l2"])
async def test_an_item_scores_its_best_field(engine: AsyncEngine, distance: str) -> None:
    rng = np.random.default_rng(7)
    fields = ("title", "body", "tags")
    vectors = {f"{f}-{i}": rng.normal(size=DIMS) for i in range(10) for f in fields}
    query = rng.normal(size=DIMS)
    table = {name: v.tolist() for name, v in vectors.items()} | {"query": query.tolist()}
    store = await _store(
        engine,
        distance=distance,
        vector_type="vector",
        kind="hnsw",
        fields=["title", "body", "tags[*]"],
        table=table,
    )
    expected: dict[str, float] = {}
    q = query.astype(np.float32).astype(np.float64)
    for i in range(10):
        # Item i has its title, its body and (for odd i) its tags text in a list.
        value: dict[str, Any] = {"title": f"title-{i}", "body": f"body-{i}"}
        names = [f"title-{i}", f"body-{i}"]
        if i % 2:
            value["tags"] = [f"tags-{i}", f"tags-{(i + 1) % 10}"]
            names += value["tags"]
        await store.aput(NAMESPACE, f"k{i}", value)
        stacked = np.stack([vectors[n] for n in names]).astype(np.float32).astype(np.float64)
        expected[f"k{i}"] = float(numpy_score(distance, q, stacked).max())

    results = await store.asearch(NAMESPACE, query="query", limit=10)
    assert_ranked(results, expected, offset=0, limit=10, tolerance=1e-4)


@pytest.mark.parametrize("kind", ["hnsw", "ivfflat", "flat"])
@pytest.mark.parametrize("vector_type", ["vector", "halfvec"])
async def test_every_index_kind_ranks_like_numpy(
    engine: AsyncEngine, kind: str, vector_type: str
) -> None:
    rng = np.random.default_rng(99)
    vectors = rng.normal(size=(ITEMS, DIMS))
    query = rng.normal(size=DIMS)
    table = {f"doc-{i}": vectors[i].tolist() for i in range(ITEMS)} | {"q": query.tolist()}
    store = await _store(
        engine,
        distance="cosine",
        vector_type=vector_type,
        kind=kind,
        fields=["text"],
        table=table,
    )
    for i in range(ITEMS):
        await store.aput(NAMESPACE, f"k{i}", {"text": f"doc-{i}"})
    dtype = STORAGE_DTYPE[vector_type]
    scores = numpy_score(
        "cosine",
        query.astype(dtype).astype(np.float64),
        vectors.astype(dtype).astype(np.float64),
    )
    expected = {f"k{i}": float(scores[i]) for i in range(ITEMS)}
    for offset in (0, 10, 20):
        page = await store.asearch(NAMESPACE, query="q", limit=10, offset=offset)
        assert_ranked(page, expected, offset=offset, limit=10, tolerance=TOLERANCE[vector_type])
