"""Deterministic embedders for the store tests (no model, no network).

Both are real LangChain ``Embeddings`` objects, so the stores under test (ours, upstream's
``AsyncPostgresStore`` and the reference ``InMemoryStore``) call them exactly as they would call a
hosted model, and all of them see the same vector for the same text.

* :class:`HashingEmbeddings` turns each word into a signed half-integer weight on a hashed
  dimension. Texts that share words are similar, identical texts tie exactly, and every
  component is a small multiple of 0.5, so ``vector`` (float4) and ``halfvec`` (float2) store
  the vectors without rounding.
* :class:`TableEmbeddings` returns the vector registered for a text, for tests that compare
  scores with numpy on vectors they chose themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from langchain_core.embeddings import Embeddings

__all__ = ["HashingEmbeddings", "TableEmbeddings"]


class HashingEmbeddings(Embeddings):
    """A bag-of-words embedding with stable hashing (``hash()`` is salted per process)."""

    def __init__(self, dims: int) -> None:
        if dims < 2:
            raise ValueError("dims must be at least 2")
        self.dims = dims

    def _embed(self, text: str) -> list[float]:
        # Component 0 is a constant bias: no text (not even "") embeds to the zero vector,
        # whose cosine similarity is undefined (NaN in pgvector, 0 in InMemoryStore).
        vector = [0.0] * self.dims
        vector[0] = 1.0
        for word in text.lower().split():
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            slot = 1 + digest[0] % (self.dims - 1)
            weight = 0.5 * (1 + digest[1] % 4)
            vector[slot] += weight if digest[2] % 2 else -weight
        return vector

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


class TableEmbeddings(Embeddings):
    """Looks texts up in a fixed table; an unknown text is a test bug, so it raises."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        self.table = {text: [float(x) for x in vector] for text, vector in table.items()}

    def _lookup(self, text: str) -> list[float]:
        try:
            return list(self.table[text])
        except KeyError:
            raise KeyError(f"no vector registered for {text!r}") from None

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._lookup(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._lookup(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)
