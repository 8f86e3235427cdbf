"""Synthetic embeddings: a fixed fake embedder and clustered vectors with exact ground truth.

The embedder looks every text up in a table filled in advance, so embedding costs nothing and
both stores index exactly the same vectors. The corpus imitates real embedding sets, which are
not uniform noise: items gather around topics. Points are drawn around a few hundred gaussian
cluster centres, so each query has many near-equidistant neighbours in its own cluster, the case
where an approximate index loses recall. Ground truth is brute-force cosine in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from langchain_core.embeddings import Embeddings


class TableEmbeddings(Embeddings):
    """Returns the vector registered for each text; an unknown text is a harness bug."""

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.table: dict[str, list[float]] = {}

    def register(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors.tolist(), strict=True):
            self.table[text] = vector

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[text] for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


@dataclass(frozen=True)
class Corpus:
    vectors: np.ndarray  # (n, dims) float32, unit length
    groups: np.ndarray  # (n,) int: a label uncorrelated with the clusters, for filters
    clusters: np.ndarray  # (n,) int
    centres: np.ndarray  # (n_clusters, dims)


def make_corpus(
    n: int, dims: int, *, n_clusters: int = 200, n_groups: int = 100, seed: int = 7
) -> Corpus:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dims)).astype(np.float32)
    # Cluster sizes vary like topic sizes do (a few big, many small).
    weights = rng.pareto(1.5, size=n_clusters) + 1.0
    clusters = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    # Per-dimension spread 0.6 against unit-variance centres: within-cluster cosine similarity
    # around 0.7-0.9, between clusters around 0.
    vectors = centres[clusters] + rng.normal(scale=0.6, size=(n, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = rng.integers(0, n_groups, size=n)
    return Corpus(vectors.astype(np.float32), groups, clusters, centres)


def make_queries(corpus: Corpus, count: int, *, seed: int = 11) -> np.ndarray:
    """Queries near the corpus's clusters (not copies of corpus points)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(corpus.centres), size=count)
    dims = corpus.vectors.shape[1]
    queries = corpus.centres[picks] + rng.normal(scale=0.6, size=(count, dims))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries.astype(np.float32)


def exact_top_k(
    corpus: Corpus, query: np.ndarray, k: int, mask: np.ndarray | None = None
) -> list[int]:
    """Indices of the k items with the highest cosine similarity (vectors are unit length)."""
    scores = corpus.vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = np.argpartition(-scores, k)[:k]
    top = top[np.argsort(-scores[top])]
    return [int(i) for i in top if np.isfinite(scores[i])]


def recall_at_k(found: Sequence[int], truth: Sequence[int]) -> float:
    if not truth:
        return 1.0
    return len(set(found) & set(truth)) / len(truth)
