"""Store workloads: puts with embeddings, reads, filtered search, namespaces, vector search.

Every store has the same index configuration (``dims`` below, ``fields=["text"]``, cosine,
the default HNSW parameters) and the same :class:`TableEmbeddings`, so embedding is free and
identical everywhere. Data sets are loaded by ``prepare`` (untimed) and remembered in
``backend.state["dataset"]``, so consecutive workloads on the same data do not reload it.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langgraph.store.base import PutOp

from .backends import Backend, truncate_store
from .harness import (
    MEMORY,
    OURS,
    OURS_TRACED,
    PLAIN_SQL,
    UPSTREAM,
    Metric,
    Target,
    WorkloadResult,
    milliseconds,
    per_second,
)
from .vectors import Corpus, TableEmbeddings, exact_top_k, make_corpus, make_queries, recall_at_k

DIMS = 64
STORE_IMPLS = (OURS, OURS_TRACED, UPSTREAM, MEMORY)
DOCS_NS = ("bench", "docs")
VECTORS_NS = ("bench", "vectors")
CATEGORIES = 50


def make_index_config(embedder: TableEmbeddings) -> dict[str, Any]:
    return {"dims": DIMS, "embed": embedder, "fields": ["text"]}


def _faster(metric: str, factor: float) -> Any:
    def check(result: WorkloadResult) -> bool | None:
        ratio = result.ratio(metric)
        return None if ratio is None else ratio >= factor

    return check


@dataclass
class Documents:
    """The small document set: puts with embeddings, aget, filtered search."""

    count: int
    embedder: TableEmbeddings
    keys: list[str] = field(init=False)
    values: list[dict[str, Any]] = field(init=False)
    vectors: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        corpus = make_corpus(self.count, DIMS, seed=3)
        self.keys = [f"doc-{i:06d}" for i in range(self.count)]
        self.values = [
            {
                "text": f"document {i} about topic {int(corpus.clusters[i])}",
                "category": f"c{i % CATEGORIES}",
                "n": i,
                "tags": ["bench", f"t{i % 7}"],
            }
            for i in range(self.count)
        ]
        self.vectors = corpus.vectors
        self.embedder.register([v["text"] for v in self.values], corpus.vectors)

    def put_batches(self, size: int) -> list[list[PutOp]]:
        ops = [PutOp(DOCS_NS, k, v) for k, v in zip(self.keys, self.values, strict=True)]
        return [ops[i : i + size] for i in range(0, len(ops), size)]


async def ensure_documents(backend: Backend, docs: Documents, batch: int) -> None:
    if backend.state.get("dataset") == ("docs", docs.count):
        return
    await truncate_store(backend)
    for ops in docs.put_batches(batch):
        await backend.store.abatch(ops)
    backend.state["dataset"] = ("docs", docs.count)


async def _plain_sql_put(backend: Backend, docs: Documents, batch: int) -> None:
    """The floor: the same rows, one transaction per batch, two array-bound INSERTs."""
    conn = await backend.raw()
    prefix = ".".join(DOCS_NS)
    for start in range(0, docs.count, batch):
        keys = docs.keys[start : start + batch]
        values = [json.dumps(v) for v in docs.values[start : start + batch]]
        vectors = docs.vectors[start : start + batch]
        prefixes = [prefix] * len(keys)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO store (prefix, key, value) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])",
                prefixes,
                keys,
                values,
            )
            await conn.execute(
                "INSERT INTO store_vectors (prefix, key, field_name, embedding) "
                "SELECT p, k, 'text', e::vector "
                "FROM unnest($1::text[], $2::text[], $3::text[]) AS t(p, k, e)",
                prefixes,
                keys,
                ["[" + ",".join(f"{x:.7g}" for x in row) + "]" for row in vectors.tolist()],
            )


@dataclass
class StorePuts:
    docs: Documents
    batch: int = 100
    needs: str = "store"
    name: str = "store_put_embed"
    impls: Sequence[str] = (OURS, OURS_TRACED, UPSTREAM, MEMORY, PLAIN_SQL)

    @property
    def description(self) -> str:
        return (
            f"{self.docs.count} puts with embeddings via abatch in batches of {self.batch} "
            "into an emptied store with its HNSW index; plain SQL = the same rows by hand"
        )

    metrics = (Metric("time", "store puts with embeddings", "puts/s", per_second, 0),)

    @staticmethod
    def _near_floor(result: WorkloadResult) -> bool | None:
        ratio = result.ratio("time", OURS, PLAIN_SQL)
        return None if ratio is None else ratio <= 1.2

    targets = (Target("<= 1.2x plain-SQL time", "time", _near_floor),)

    async def prepare(self, backend: Backend) -> None:
        pass

    async def measure(self, backend: Backend) -> dict[str, float]:
        await truncate_store(backend)
        start = time.perf_counter()
        if backend.name == PLAIN_SQL:
            await _plain_sql_put(backend, self.docs, self.batch)
        else:
            for ops in self.docs.put_batches(self.batch):
                await backend.store.abatch(ops)
        elapsed = time.perf_counter() - start
        backend.state["dataset"] = ("docs", self.docs.count)
        return {"time": elapsed / self.docs.count}


@dataclass
class StoreGet:
    docs: Documents
    calls: int
    batch: int = 100
    needs: str = "store"
    name: str = "store_aget"
    impls: Sequence[str] = STORE_IMPLS

    @property
    def description(self) -> str:
        return f"aget of random keys among {self.docs.count} items, {self.calls} calls in sequence"

    metrics = (Metric("time", "store aget", "ms", milliseconds, 3),)
    targets = (Target(">= 1.3x faster", "time", _faster("time", 1.3)),)

    async def prepare(self, backend: Backend) -> None:
        await ensure_documents(backend, self.docs, self.batch)

    async def measure(self, backend: Backend) -> dict[str, float]:
        rng = random.Random(5)
        keys = [rng.choice(self.docs.keys) for _ in range(self.calls)]
        store = backend.store
        start = time.perf_counter()
        for key in keys:
            item = await store.aget(DOCS_NS, key)
        elapsed = time.perf_counter() - start
        if item is None or item.key != keys[-1]:
            raise RuntimeError(f"{backend.name}: aget returned {item!r:.200}")
        return {"time": elapsed / self.calls}


@dataclass
class StoreFilteredSearch:
    docs: Documents
    calls: int
    batch: int = 100
    needs: str = "store"
    name: str = "store_search_filter"
    impls: Sequence[str] = STORE_IMPLS

    @property
    def description(self) -> str:
        return (
            f"asearch with a metadata filter (2% of {self.docs.count} items match), limit 10, "
            f"{self.calls} calls"
        )

    metrics = (Metric("time", "store filtered search", "ms", milliseconds, 3),)
    targets = (Target(">= 1.3x faster", "time", _faster("time", 1.3)),)

    async def prepare(self, backend: Backend) -> None:
        await ensure_documents(backend, self.docs, self.batch)

    async def measure(self, backend: Backend) -> dict[str, float]:
        store = backend.store
        start = time.perf_counter()
        for i in range(self.calls):
            found = await store.asearch(DOCS_NS, filter={"category": f"c{i % CATEGORIES}"})
        elapsed = time.perf_counter() - start
        last = (self.calls - 1) % CATEGORIES
        expected = f"c{last}"
        matching = len(range(last, self.docs.count, CATEGORIES))
        if len(found) != min(10, matching) or any(r.value["category"] != expected for r in found):
            raise RuntimeError(f"{backend.name}: filtered search returned {found!r:.300}")
        return {"time": elapsed / self.calls}


@dataclass
class ListNamespaces:
    namespaces: int
    calls: int
    needs: str = "store"
    name: str = "list_namespaces"
    impls: Sequence[str] = STORE_IMPLS

    @property
    def description(self) -> str:
        return (
            f"alist_namespaces over {self.namespaces} namespaces ('tenants', id, 'notes'; "
            f"2 items each): prefix ('tenants',) limit {self.namespaces}, and max_depth=2"
        )

    metrics = (
        Metric("time", "list_namespaces (prefix)", "ms", milliseconds, 2),
        Metric("time_depth", "list_namespaces (max_depth=2)", "ms", milliseconds, 2),
    )
    targets = (
        Target(">= 5x faster", "time", _faster("time", 5.0)),
        Target(">= 5x faster", "time_depth", _faster("time_depth", 5.0)),
    )

    async def prepare(self, backend: Backend) -> None:
        if backend.state.get("dataset") == ("namespaces", self.namespaces):
            return
        await truncate_store(backend)
        ops = [
            PutOp(("tenants", f"t{i:05d}", "notes"), f"note-{j}", {"text": f"n{j}"}, index=False)
            for i in range(self.namespaces)
            for j in range(2)
        ]
        for start in range(0, len(ops), 500):
            await backend.store.abatch(ops[start : start + 500])
        backend.state["dataset"] = ("namespaces", self.namespaces)

    async def measure(self, backend: Backend) -> dict[str, float]:
        store = backend.store
        start = time.perf_counter()
        for _ in range(self.calls):
            found = await store.alist_namespaces(prefix=("tenants",), limit=self.namespaces)
        middle = time.perf_counter()
        for _ in range(self.calls):
            depth = await store.alist_namespaces(
                prefix=("tenants",), max_depth=2, limit=self.namespaces
            )
        end = time.perf_counter()
        if len(found) != self.namespaces or len(depth) != self.namespaces:
            raise RuntimeError(f"{backend.name}: {len(found)} / {len(depth)} namespaces")
        if depth[0] != ("tenants", "t00000"):
            raise RuntimeError(f"{backend.name}: max_depth gave {depth[0]!r}")
        return {"time": (middle - start) / self.calls, "time_depth": (end - middle) / self.calls}


# --- vector search at scale ---------------------------------------------------------------


@dataclass
class VectorData:
    count: int
    queries: int
    embedder: TableEmbeddings
    corpus: Corpus = field(init=False)
    query_vectors: np.ndarray = field(init=False)
    query_texts: list[str] = field(init=False)
    query_groups: list[int] = field(init=False)
    _truth: dict[tuple[int, bool], list[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.corpus = make_corpus(self.count, DIMS, seed=7)
        self.query_vectors = make_queries(self.corpus, self.queries)
        self.query_texts = [f"vector query {i}" for i in range(self.queries)]
        self.embedder.register(self.query_texts, self.query_vectors)
        self.query_groups = [i % 100 for i in range(self.queries)]

    def key(self, i: int) -> str:
        return f"vec-{i:07d}"

    def value(self, i: int) -> dict[str, Any]:
        return {
            "text": f"vector item {i}",
            "group": int(self.corpus.groups[i]),
            "cluster": int(self.corpus.clusters[i]),
        }

    def truth(self, query: int, filtered: bool) -> list[str]:
        cached = self._truth.get((query, filtered))
        if cached is None:
            mask = self.corpus.groups == self.query_groups[query] if filtered else None
            top = exact_top_k(self.corpus, self.query_vectors[query], 10, mask)
            cached = self._truth[(query, filtered)] = [self.key(i) for i in top]
        return cached


async def bulk_load_vectors(backend: Backend, data: VectorData) -> None:
    """COPY the items and their vectors in, with the ANN index rebuilt afterwards.

    Both databases get the same treatment: whatever ANN index their own ``setup()`` created is
    read back (``pg_get_indexdef``), dropped, and re-created with the identical definition after
    the COPY; building an HNSW index over loaded rows takes seconds where 100k single inserts
    take minutes, and gives the same kind of graph. The rows are what each store's own ``aput``
    writes (prefix, key, value; vectors under field ``text``).
    """
    conn = await backend.raw()
    await conn.execute("TRUNCATE store CASCADE")
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE tablename = 'store_vectors' AND indexdef ~* 'using (hnsw|ivfflat)'"
    )
    for row in indexes:
        await conn.execute(f'DROP INDEX "{row["indexname"]}"')
    prefix = ".".join(VECTORS_NS)
    await conn.copy_records_to_table(
        "store",
        records=((prefix, data.key(i), json.dumps(data.value(i))) for i in range(data.count)),
        columns=["prefix", "key", "value"],
    )
    await conn.copy_records_to_table(
        "store_vectors",
        records=((prefix, data.key(i), "text", data.corpus.vectors[i]) for i in range(data.count)),
        columns=["prefix", "key", "field_name", "embedding"],
    )
    await conn.execute("SET maintenance_work_mem = '1GB'")
    for row in indexes:
        await conn.execute(row["indexdef"])
    await conn.execute("RESET maintenance_work_mem")
    await conn.execute("VACUUM ANALYZE store")
    await conn.execute("VACUUM ANALYZE store_vectors")
    backend.state["ann_indexes"] = [row["indexdef"] for row in indexes]


async def load_memory_vectors(backend: Backend, data: VectorData) -> None:
    """InMemoryStore has no bulk path: its own batch puts, embedding through the same table."""
    backend.store = None
    from .backends import reset_memory_store

    reset_memory_store(backend)
    texts = [data.value(i)["text"] for i in range(data.count)]
    data.embedder.register(texts, data.corpus.vectors)
    ops = [PutOp(VECTORS_NS, data.key(i), data.value(i)) for i in range(data.count)]
    for start in range(0, len(ops), 1000):
        await backend.store.abatch(ops[start : start + 1000])


@dataclass
class VectorSearch:
    data: VectorData
    include_memory: bool = True
    needs: str = "store"
    name: str = "vector_search"

    @property
    def impls(self) -> Sequence[str]:
        return STORE_IMPLS if self.include_memory else (OURS, UPSTREAM)

    @property
    def description(self) -> str:
        return (
            f"asearch(query=..., limit=10) over {self.data.count:,} items ({DIMS}-dim clustered "
            f"vectors, HNSW), {self.data.queries} queries unfiltered and with a 1%-selective "
            "filter; recall@10 against exact brute force"
        )

    @property
    def metrics(self) -> tuple[Metric, ...]:
        size = f"{self.data.count // 1000}k" if self.data.count >= 1000 else str(self.data.count)
        return (
            Metric("time", f"vector search {size}, unfiltered", "ms", milliseconds, 2),
            Metric("recall", "recall@10, unfiltered", "recall", digits=3, compare=None),
            Metric("time_filtered", f"vector search {size}, 1% filter", "ms", milliseconds, 2),
            Metric("recall_filtered", "recall@10, 1% filter", "recall", digits=3, compare=None),
        )

    @staticmethod
    def _recall(metric: str) -> Any:
        def check(result: WorkloadResult) -> bool | None:
            value = result.median(metric, OURS)
            return None if value is None else value >= 0.95

        return check

    targets = (
        Target("<= upstream latency", "time", _faster("time", 1.0)),
        Target(">= 0.95", "recall", _recall("recall")),
        Target("<= upstream latency", "time_filtered", _faster("time_filtered", 1.0)),
        Target(">= 0.95", "recall_filtered", _recall("recall_filtered")),
    )

    async def prepare(self, backend: Backend) -> None:
        wanted = ("vectors", self.data.count)
        if backend.state.get("dataset") == wanted:
            return
        if backend.name == MEMORY:
            await load_memory_vectors(backend, self.data)
        else:
            await bulk_load_vectors(backend, self.data)
        backend.state["dataset"] = wanted

    async def _pass(self, backend: Backend, filtered: bool) -> tuple[float, float]:
        store = backend.store
        latencies, recalls = [], []
        for i, text in enumerate(self.data.query_texts):
            kwargs: dict[str, Any] = {"query": text, "limit": 10}
            if filtered:
                kwargs["filter"] = {"group": self.data.query_groups[i]}
            start = time.perf_counter()
            found = await store.asearch(VECTORS_NS, **kwargs)
            latencies.append(time.perf_counter() - start)
            recalls.append(recall_at_k([r.key for r in found], self.data.truth(i, filtered)))
        return statistics.fmean(latencies), statistics.fmean(recalls)

    async def measure(self, backend: Backend) -> dict[str, float]:
        latency, recall = await self._pass(backend, filtered=False)
        latency_f, recall_f = await self._pass(backend, filtered=True)
        return {
            "time": latency,
            "recall": recall,
            "time_filtered": latency_f,
            "recall_filtered": recall_f,
        }
