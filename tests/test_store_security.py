"""Namespace labels and filter keys that look like patterns or SQL are plain data.

LIKE wildcards (``%`` ``_`` ``\\``), the ``*`` of list_namespaces, regex metacharacters,
quotes and newlines in labels must never make one namespace reach another; filter keys and
values shaped like SQL must only ever match themselves. LangGraph's ``InMemoryStore`` is the
oracle for every answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.store.base import PutOp
from langgraph.store.memory import InMemoryStore
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemyStore

TRICKY_LABELS = [
    "%",
    "_",
    "\\",
    "\\%",
    "a%",
    "a_c",
    "abc",
    "a\\_c",
    "*",
    "a*",
    "^",
    "$",
    "a|b",
    "(a)",
    "[a-z]",
    "a+",
    "a?",
    "{1}",
    "\\d",
    "'",
    "''",
    '"',
    "'; DROP TABLE store; --",
    "line\nbreak",
    "tab\there",
    " ",
    "ünï",
    "a\\",
]

# Ordinary labels a broken pattern would wrongly reach ("a_c" as LIKE matches "abc", "%"
# matches everything, "a|b" as a regex matches "a", "[a-z]" matches "q", ...).
DECOYS = ["a", "b", "q", "abc", "aXc", "a\\c", "x", "anything", "line"]


def _namespaces() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for label in TRICKY_LABELS + DECOYS:
        out += [(label,), (label, "child"), ("root", label), ("root", label, "leaf")]
    return list(dict.fromkeys(out))


@pytest.fixture
async def stores(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncSQLAlchemyStore, InMemoryStore]]:
    ours = AsyncSQLAlchemyStore(engine)
    reference = InMemoryStore()
    ops = [PutOp(ns, "k", {"ns": list(ns)}) for ns in _namespaces()]
    await ours.abatch(ops)
    await reference.abatch(ops)
    yield ours, reference


def _keys(items: list) -> list[tuple[tuple[str, ...], str]]:  # type: ignore[type-arg]
    return sorted((i.namespace, i.key) for i in items)


@pytest.mark.parametrize("label", TRICKY_LABELS, ids=repr)
async def test_search_prefix_matches_exact_labels_only(
    stores: tuple[AsyncSQLAlchemyStore, InMemoryStore], label: str
) -> None:
    ours, reference = stores
    for prefix in ((label,), ("root", label)):
        got = await ours.asearch(prefix, limit=1000)
        assert _keys(got) == _keys(await reference.asearch(prefix, limit=1000))
        assert all(i.namespace[: len(prefix)] == prefix for i in got)
        assert len(got) == 2


@pytest.mark.parametrize("label", TRICKY_LABELS, ids=repr)
async def test_list_namespaces_prefix_and_suffix_match_exact_labels_only(
    stores: tuple[AsyncSQLAlchemyStore, InMemoryStore], label: str
) -> None:
    ours, reference = stores
    cases: list[dict[str, object]] = [
        {"prefix": (label,)},
        {"prefix": ("root", label)},
        {"suffix": (label,)},
        {"suffix": (label, "leaf")},
        {"prefix": ("root", label), "suffix": ("leaf",)},
        {"prefix": ("root",), "suffix": (label,), "max_depth": 2},
        {"prefix": (label,), "max_depth": 1},
    ]
    for kwargs in cases:
        got = await ours.alist_namespaces(limit=1000, **kwargs)  # type: ignore[arg-type]
        expected = await reference.alist_namespaces(limit=1000, **kwargs)  # type: ignore[arg-type]
        assert got == expected, kwargs


async def test_listing_everything_matches_the_reference(
    stores: tuple[AsyncSQLAlchemyStore, InMemoryStore],
) -> None:
    ours, reference = stores
    assert await ours.alist_namespaces(limit=1000) == await reference.alist_namespaces(limit=1000)
    for depth in (1, 2, 3):
        assert await ours.alist_namespaces(limit=1000, max_depth=depth) == (
            await reference.alist_namespaces(limit=1000, max_depth=depth)
        )
    # "*" in a condition is a wildcard for exactly one label (as in InMemoryStore), even though
    # a namespace may also hold a literal "*" label.
    for kwargs in ({"prefix": ("*", "child")}, {"suffix": ("*", "*", "leaf")}):
        got = await ours.alist_namespaces(limit=1000, **kwargs)  # type: ignore[arg-type]
        assert got == await reference.alist_namespaces(limit=1000, **kwargs)  # type: ignore[arg-type]
        assert len(got) == len(set(TRICKY_LABELS + DECOYS))


SQL_SHAPED = [
    "'; DROP TABLE store; --",
    "a') OR ('1'='1",
    'x" OR 1=1 --',
    "value->>'k'",
    "$.k ? (@ > 1)",
    "%",
    "_",
    "{a,b}",
    "k\nOR TRUE",
]


async def test_filter_keys_and_values_shaped_like_sql_are_data(engine: AsyncEngine) -> None:
    ours = AsyncSQLAlchemyStore(engine)
    reference = InMemoryStore()
    ops = [PutOp(("f",), f"k{i}", {s: i, "v": s}) for i, s in enumerate(SQL_SHAPED)]
    ops.append(PutOp(("f",), "plain", {"k": 1, "v": "plain"}))
    await ours.abatch(ops)
    await reference.abatch(ops)
    for i, s in enumerate(SQL_SHAPED):
        for f in ({s: i}, {"v": s}, {s: {"$ne": i}}, {"v": {"$eq": s}}):
            got = await ours.asearch(("f",), filter=f, limit=100)
            assert _keys(got) == _keys(await reference.asearch(("f",), filter=f, limit=100)), f
        # (InMemoryStore raises on $gte over items lacking the key; ours skips them.)
        for f in ({s: i}, {s: {"$gte": i}}, {s: {"$lte": i, "$gt": i - 1}}):
            assert [x.key for x in await ours.asearch(("f",), filter=f)] == [f"k{i}"], f
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM store"))).scalar() == len(ops)


async def test_keys_shaped_like_sql_are_data(engine: AsyncEngine) -> None:
    store = AsyncSQLAlchemyStore(engine)
    keys = [k for k in SQL_SHAPED if "." not in k]  # "." cannot be in a label
    for i, key in enumerate(keys):
        await store.aput(("k", key), key, {"i": i})
    for i, key in enumerate(keys):
        item = await store.aget(("k", key), key)
        assert item is not None and item.value == {"i": i}
        assert [x.key for x in await store.asearch(("k", key))] == [key]
    await store.adelete(("k", "%"), "%")
    assert len(await store.asearch(("k",), limit=100)) == len(keys) - 1
