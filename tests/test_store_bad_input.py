"""Bad input to the store: a clear ValueError, nothing of the batch written, store usable."""

from __future__ import annotations

import asyncio
import decimal
import fractions
import math
import random
import string
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    PutOp,
    SearchOp,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from langgraph_sqlalchemy import AsyncSQLAlchemyStore, InvalidInputError


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[AsyncSQLAlchemyStore]:
    yield AsyncSQLAlchemyStore(engine)


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM store"))).scalar_one())


async def _still_usable(store: AsyncSQLAlchemyStore) -> None:
    await store.aput(("ok",), "after", {"v": 1})
    item = await store.aget(("ok",), "after")
    assert item is not None and item.value == {"v": 1}


BAD_VALUES: list[tuple[str, Any, str]] = [
    ("nul-in-string", {"text": "a\x00b"}, "NUL"),
    ("nul-in-key", {"a\x00": 1}, "NUL"),
    ("nul-deep", {"a": [{"b": ["ok", "x\x00"]}]}, r"a\[0\]\.b\[1\]"),
    ("nan", {"score": float("nan")}, "NaN"),
    ("infinity", {"x": [1, {"y": math.inf}]}, "inf"),
    ("minus-infinity", {"x": -math.inf}, "inf"),
    ("list", [1, 2], "dict"),
    ("string", "text", "dict"),
    ("int", 5, "dict"),
    ("unserializable", {"obj": object()}, "serializable"),
]


@pytest.mark.parametrize(
    ("value", "match"), [(v, m) for _, v, m in BAD_VALUES], ids=[n for n, _, _ in BAD_VALUES]
)
async def test_bad_value_rejected_before_anything_is_written(
    store: AsyncSQLAlchemyStore, engine: AsyncEngine, value: Any, match: str
) -> None:
    batch = [
        PutOp(("b",), "good1", {"v": 1}),
        PutOp(("b",), "bad", value),
        PutOp(("b",), "good2", {"v": 2}),
    ]
    with pytest.raises(InvalidInputError, match=match) as info:
        await store.abatch(batch)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match=match):
        await store.aput(("b",), "bad", value)
    assert await _count(engine) == 0
    await _still_usable(store)


async def test_bad_put_does_not_fail_concurrent_callers(
    store: AsyncSQLAlchemyStore, engine: AsyncEngine
) -> None:
    results = await asyncio.gather(
        store.aput(("c",), "good", {"v": 1}),
        store.aput(("c",), "bad", {"v": float("nan")}),
        store.asearch(("c",), filter={"v": {"$nope": 1}}),
        store.aget(("c",), "good"),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], InvalidInputError)
    assert isinstance(results[2], ValueError)
    assert not isinstance(results[3], BaseException)
    assert (await store.aget(("c",), "good")) is not None
    assert await _count(engine) == 1


BAD_NAMESPACES: list[tuple[str, Any]] = [
    ("dot", ("a.b",)),
    ("empty-label", ("a", "")),
    ("nul", ("a\x00",)),
    ("int-label", ("a", 1)),
    ("none-label", (None,)),
]


@pytest.mark.parametrize(
    "namespace", [ns for _, ns in BAD_NAMESPACES], ids=[n for n, _ in BAD_NAMESPACES]
)
async def test_invalid_labels(
    store: AsyncSQLAlchemyStore, engine: AsyncEngine, namespace: Any
) -> None:
    with pytest.raises(InvalidNamespaceError):
        await store.abatch([PutOp(("ok",), "k", {"v": 1}), PutOp(namespace, "k", {"v": 1})])
    with pytest.raises(InvalidNamespaceError):
        await store.aput(namespace, "k", {"v": 1})
    with pytest.raises(ValueError):
        await store.aget(namespace, "k")
    with pytest.raises(ValueError):
        await store.asearch(namespace)
    with pytest.raises(ValueError):
        await store.alist_namespaces(prefix=namespace)
    with pytest.raises(ValueError):
        await store.abatch([GetOp(namespace, "k")])
    assert await _count(engine) == 0
    await _still_usable(store)


async def test_empty_and_reserved_namespaces(store: AsyncSQLAlchemyStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        await store.aput((), "k", {"v": 1})
    with pytest.raises(InvalidInputError):
        await store.abatch([PutOp((), "k", {"v": 1})])
    with pytest.raises(InvalidNamespaceError, match="langgraph"):
        await store.aput(("langgraph", "x"), "k", {"v": 1})


@pytest.mark.parametrize("key", [None, 1.5, b"k", "a\x00b", "a\ud800b"], ids=repr)
async def test_bad_keys(store: AsyncSQLAlchemyStore, engine: AsyncEngine, key: Any) -> None:
    with pytest.raises(InvalidInputError):
        await store.abatch([PutOp(("k",), "fine", {"v": 1}), PutOp(("k",), key, {"v": 1})])
    with pytest.raises(InvalidInputError):
        await store.abatch([GetOp(("k",), key)])
    assert await _count(engine) == 0


@pytest.mark.parametrize(
    "filter",
    [
        {"n": {"$regex": ".*"}},
        {"n": {"$in": [1, 2]}},
        {"n": {"$gt": 1, "plain": 2}},
        {"n": {"$gt": None}},
        {"n": {"$lt": [1]}},
        {"n": float("nan")},
        {"n": "a\x00"},
        {1: "int key"},
    ],
    ids=repr,
)
async def test_bad_filters(store: AsyncSQLAlchemyStore, filter: dict[Any, Any]) -> None:
    await store.aput(("f",), "k", {"n": 1})
    with pytest.raises(ValueError):
        await store.asearch(("f",), filter=filter)
    with pytest.raises(InvalidInputError):
        await store.abatch([SearchOp(("f",), filter=filter), PutOp(("f",), "k2", {"n": 2})])
    assert await store.aget(("f",), "k2") is None
    await _still_usable(store)


async def test_bad_pagination_and_depth(store: AsyncSQLAlchemyStore) -> None:
    for kwargs in ({"limit": -1}, {"offset": -5}, {"limit": 1.5}):
        with pytest.raises(ValueError):
            await store.asearch(("x",), **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await store.alist_namespaces(**kwargs)  # type: ignore[arg-type]
    for depth in (0, -1, True):
        with pytest.raises(ValueError, match="max_depth"):
            await store.abatch([ListNamespacesOp(max_depth=depth)])


@pytest.mark.parametrize("ttl", [float("nan"), math.inf, -1, "5"], ids=repr)
async def test_bad_ttl(store: AsyncSQLAlchemyStore, engine: AsyncEngine, ttl: Any) -> None:
    with pytest.raises(InvalidInputError, match="ttl"):
        await store.aput(("t",), "k", {"v": 1}, ttl=ttl)
    with pytest.raises(InvalidInputError, match="ttl"):
        await store.abatch([PutOp(("t",), "ok", {"v": 1}), PutOp(("t",), "k", {"v": 1}, ttl=ttl)])
    assert await _count(engine) == 0


class _Minutes:
    """Not a number type, but convertible to one, as upstream's arithmetic on ttls accepts."""

    def __float__(self) -> float:
        return 2.5


@pytest.mark.parametrize(
    "ttl",
    [np.int64(5), np.float64(2.5), decimal.Decimal("2.5"), fractions.Fraction(5, 2), _Minutes()],
    ids=repr,
)
async def test_ttls_of_any_real_number_type(
    store: AsyncSQLAlchemyStore, engine: AsyncEngine, ttl: Any
) -> None:
    await store.aput(("t",), "k", {"v": 1}, ttl=ttl)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT ttl_minutes FROM store"))).scalar_one()
    assert stored == float(ttl)


@pytest.mark.parametrize("ttl", ["5", b"5", True, object(), [5], 1 + 0j], ids=repr)
async def test_a_ttl_that_is_not_a_number_is_a_type_error(
    store: AsyncSQLAlchemyStore, engine: AsyncEngine, ttl: Any
) -> None:
    """Upstream fails with TypeError on these; ours is one too (and a ValueError, as every
    refused ttl), before anything is written."""
    with pytest.raises(TypeError, match="ttl must be a number of minutes") as raised:
        await store.aput(("t",), "k", {"v": 1}, ttl=ttl)
    assert isinstance(raised.value, InvalidInputError)
    assert await _count(engine) == 0


async def test_bad_configuration(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="ttl"):
        AsyncSQLAlchemyStore(engine, ttl={"default_ttl": -1})
    with pytest.raises(ValueError, match="unknown"):
        AsyncSQLAlchemyStore(engine, ttl={"defualt_ttl": 1})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(ValueError, match="dims"):
        AsyncSQLAlchemyStore(engine, index={"embed": lambda texts: [[1.0] for _ in texts]})  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="distance_type"):
        AsyncSQLAlchemyStore(
            engine, index={"dims": 2, "embed": lambda t: [], "distance_type": "hamming"}
        )  # type: ignore[typeddict-item]
    with pytest.raises(ValueError):
        AsyncSQLAlchemyStore(engine, schema="x" * 64)
    with pytest.raises(TypeError):
        AsyncSQLAlchemyStore("postgresql://nowhere/db")  # type: ignore[arg-type]


async def test_thousand_label_namespace(store: AsyncSQLAlchemyStore, engine: AsyncEngine) -> None:
    # 1000 labels fit as long as the (prefix, key) primary-key entry does (see the next test).
    namespace = tuple("x" if i % 100 else f"l{i}" for i in range(1000))
    await store.aput(namespace, "k", {"depth": 1000})
    item = await store.aget(namespace, "k")
    assert item is not None and item.namespace == namespace
    assert [i.key for i in await store.asearch(namespace[:500])] == ["k"]
    assert await store.alist_namespaces(prefix=namespace[:3], max_depth=4) == [namespace[:4]]
    assert await store.alist_namespaces(prefix=("l0", "*", "x")) == [namespace]
    assert await store.alist_namespaces(suffix=namespace[-2:]) == [namespace]
    await store.adelete(namespace, "k")
    assert await _count(engine) == 0


async def test_distinct_thousand_labels_exceed_the_primary_key(
    store: AsyncSQLAlchemyStore, engine: AsyncEngine
) -> None:
    rng = random.Random(1)
    # Random text does not compress: the (prefix, key) btree entry exceeds Postgres' limit.
    namespace = tuple("".join(rng.choices(string.ascii_letters, k=6)) for _ in range(1000))
    with pytest.raises(InvalidInputError, match="size limit") as info:
        await store.abatch([PutOp(("small",), "k", {"v": 1}), PutOp(namespace, "k", {"v": 1})])
    assert info.value.__cause__ is not None
    assert await _count(engine) == 0
    await _still_usable(store)


async def test_large_value_round_trips(store: AsyncSQLAlchemyStore) -> None:
    big = {"blob": "x" * (8 * 1024 * 1024), "items": list(range(100_000))}
    await store.aput(("big",), "k", big)
    item = await store.aget(("big",), "k")
    assert item is not None and item.value == big
