"""Our store against LangGraph's reference ``InMemoryStore``: Hypothesis state machines.

Random sequences of put / delete / get / search / list_namespaces / mixed batches / concurrent
reads (which coalesce into shared batches) run on ``AsyncSQLAlchemyStore`` and on
``InMemoryStore`` side by side, and every read must give the same answer (SPEC §5: where
upstream and ``InMemoryStore`` disagree, ``InMemoryStore`` wins). Single calls go through the
async API or its sync twins at random.

The store is async and bound to the event loop it was created on, while Hypothesis rules are
plain functions, so each test runs the store on an event loop in a thread of its own and the
rules submit coroutines to it (the pytest loop is never involved). One store serves every
example of a test; each example starts from empty tables.

Where the reference is not usable as it stands, the comparison is adjusted as follows, and only
so:

* Order of plain (non-vector) searches. ``InMemoryStore`` pages in dict insertion order; the
  SQL store orders by ``updated_at`` descending, as upstream does. The matching *set* comes from
  ``InMemoryStore`` (one call with a limit larger than the data); the expected order is "most
  recently written first", tracked here as a logical clock. Items written by the same call share
  one transaction, hence one ``updated_at``: they form a tie group whose members may come back
  in any order, and a page that cuts a tie group may hold any of its members. The check is per
  position: the item at overall position ``i`` must belong to the tie group covering ``i``.
* Range operators (``$gt $gte $lt $lte``). ``InMemoryStore`` calls ``float()`` on every value
  it meets, so it raises on a string or a missing key. SPEC §5.3 defines them: numbers compare as
  numbers, strings as strings (code-point order; both test servers use the C collation), and a
  value of another JSON type than the operand (or no value) does not match. The matching set is
  ``InMemoryStore``'s answer for the rest of the filter, narrowed by that rule; whenever
  ``InMemoryStore`` can evaluate the whole filter, its answer must equal the narrowed set.
* Empty namespaces. ``InMemoryStore`` keeps a namespace in its ``defaultdict`` after its last
  item is deleted (and creates one when a missing namespace is merely read), so
  ``list_namespaces`` would list namespaces that hold nothing. Empty entries are dropped from
  its ``_data`` before it is asked.
* Vector search. Items without vectors come last with ``score=None`` from ``InMemoryStore``
  when a page is not full; SPEC §5.4 says they are absent, so they are dropped from its answer.
  ``InMemoryStore`` keeps an item's old vectors when a later put embeds fewer fields (or uses
  ``index=False``); SPEC §5.5 says the put replaces them, so the reference's vectors of an item
  are cleared before each put. Scores are compared to 1e-3 (float4 storage); the same
  per-position rule as above applies, with items whose scores lie within the tolerance treated
  as ties. ``InMemoryStore`` raises when one put holds the same text twice (it embeds distinct
  texts but pairs the vectors with every occurrence), so generated values keep their texts
  distinct; the same text in different items (exact score ties) is generated freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    SearchItem,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

from fake_embeddings import HashingEmbeddings
from langgraph_sqlalchemy import AsyncSQLAlchemyStore

T = TypeVar("T")
Key = tuple[tuple[str, ...], str]

# --- running an async store from synchronous rules ------------------------------------------------


class LoopThread:
    """An event loop running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="store-under-test", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Harness:
    """One store under test on its own loop, plus a way to empty its tables."""

    loop: LoopThread
    store: AsyncSQLAlchemyStore
    index: Mapping[str, Any] | None
    empty_tables: Callable[[], None]


@contextlib.contextmanager
def running_store(database_url: str, index: Mapping[str, Any] | None) -> Iterator[Harness]:
    loop = LoopThread()
    stack = contextlib.AsyncExitStack()
    admin = psycopg.connect(database_url, autocommit=True)
    try:
        # Each test chooses its own vector layer (dims, type): drop whatever an earlier test of
        # the session left, as the ``engine`` fixture does, before setup() builds this one.
        admin.execute("DROP TABLE IF EXISTS store_vectors")
        admin.execute("DELETE FROM vector_migrations")

        async def open_store() -> AsyncSQLAlchemyStore:
            store = await stack.enter_async_context(
                AsyncSQLAlchemyStore.from_conn_string(database_url, index=index)
            )
            await store.setup()
            return store

        store = loop.run(open_store())

        def empty_tables() -> None:
            # CASCADE also empties store_vectors when the vector layer exists.
            admin.execute("TRUNCATE store CASCADE")

        yield Harness(loop=loop, store=store, index=index, empty_tables=empty_tables)
    finally:
        try:
            loop.run(stack.aclose())
        finally:
            loop.close()
            admin.close()


def _settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        # One failure shrunk well beats several shrunk for minutes each.
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --- the data -------------------------------------------------------------------------------------

# Labels with LIKE and regex metacharacters, a label that is a prefix of another ("a" / "ab"),
# and labels that sort differently as tuples than as dot-joined text ("a%", "a-c" sort before
# "a.b" as text but after ("a", ...) as tuples).
NAMESPACES: tuple[tuple[str, ...], ...] = (
    ("a",),
    ("a", "b"),
    ("a", "b", "a"),
    ("a", "ab"),
    ("a", "a-c"),
    ("ab",),
    ("ab", "a"),
    ("a%",),
    ("a%", "x\\y"),
    ("a_b",),
    ("axb",),
    ("axb", "a_b"),
    ("a-c", "b"),
    ("b", "a", "b"),
    ("x\\y",),
    # Control characters below the separator: the SQL sort key escapes "\x01" and maps "."
    # to "\x01\x02"; these must still sort as tuples do.
    ("a\x01",),
    ("a", "\x02"),
    ("a\x01\x02", "b"),
    ("a\x02",),
)
LABELS = tuple(sorted({label for ns in NAMESPACES for label in ns} | {"zz", "(a)"}))
PREFIXES = tuple(sorted({ns[:i] for ns in NAMESPACES for i in range(len(ns) + 1)}))
KEYS = ("k1", "k2", "k_", "k%")

# Half the items land under ("a",), so that searches and listings there have something to page.
namespaces = st.one_of(st.sampled_from(NAMESPACES[:4]), st.sampled_from(NAMESPACES))
keys = st.sampled_from(KEYS)
# Half broad prefixes (many matches to page through), half any prefix of a namespace in use or
# one that matches nothing or nearly matches.
search_prefixes = st.one_of(
    st.sampled_from([(), ("a",), ("a", "b")]),
    st.sampled_from((*PREFIXES, ("zz",), ("a", "zz"), ("a", "b", "a", "b"), ("a%", "a"), ("a_",))),
)


@st.composite
def match_paths(draw: st.DrawFn) -> tuple[str, ...]:
    """A path for a prefix/suffix condition: mostly cut from a namespace, some labels "*"."""
    if draw(st.integers(0, 4)) == 0:
        return tuple(draw(st.lists(st.sampled_from((*LABELS, "*")), min_size=1, max_size=3)))
    namespace = draw(namespaces)
    size = draw(st.integers(1, len(namespace)))
    path = namespace[:size] if draw(st.booleans()) else namespace[-size:]
    return tuple("*" if draw(st.integers(0, 3)) == 0 else label for label in path)


# Small domains, so that equality filters hit. Strings never spell a number, "inf" or "nan", so
# ``float()`` fails on them in InMemoryStore exactly where SPEC §5.3 compares them as strings;
# 2 and 2.0 are both there (JSON numbers: equal).
strings = st.sampled_from(["", "a", "ab", "abc", "b", "x", "xy", "z"])
numbers = st.sampled_from([-1, 0, 1, 2, 2.0, 2.5, 3, 7.75, 10, 12])
# "n" and "tag" are (nearly) always there; the rest often missing ("$ne" matches those), and
# "absent" never is.
values = st.fixed_dictionaries(
    {
        "n": st.one_of(numbers, numbers, strings),
        "tag": st.sampled_from(["red", "green", "blue"]),
    },
    optional={
        "s": strings,
        "flag": st.booleans(),
        "obj": st.fixed_dictionaries(
            {"x": st.integers(0, 3)}, optional={"y": st.sampled_from(["p", "q"])}
        ),
        # JSON null or a string; a filter on None matches null and missing alike (dict.get).
        "opt": st.one_of(st.none(), strings),
        "arr": st.lists(st.integers(0, 1), max_size=2),
    },
)

RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
EQUALITY_OPS = ("$eq", "$ne")


def _operators(ops: Sequence[str], operand: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(ops), operand, min_size=1, max_size=2)


def _condition(operand: st.SearchStrategy[Any], *, ranges: bool) -> st.SearchStrategy[Any]:
    """A plain value (typed equality) or an operator dict on ``operand``."""
    ops = EQUALITY_OPS + RANGE_OPS if ranges else EQUALITY_OPS
    return st.one_of(operand, _operators(ops, operand))


# Booleans and lists get no range operators: SPEC §5.3 gives them no order (and InMemoryStore's
# float(True) would quietly treat True as 1).
FILTER_CONDITIONS: dict[str, st.SearchStrategy[Any]] = {
    "n": _condition(st.one_of(numbers, strings), ranges=True),
    "s": _condition(strings, ranges=True),
    "flag": _condition(st.booleans(), ranges=False),
    "tag": _condition(st.sampled_from(["red", "green", "blue", "pink"]), ranges=False),
    "arr": _condition(st.lists(st.integers(0, 1), max_size=2), ranges=False),
    "obj": st.one_of(
        # a dict without "$" keys: nested-object equality (the item's object may have more keys)
        st.fixed_dictionaries(
            {}, optional={"x": st.integers(0, 3), "y": st.sampled_from(["p", "q"])}
        ).filter(bool),
        # operators inside a nested object ("x" is always there when "obj" is: InMemoryStore's
        # float() never sees a missing one)
        st.fixed_dictionaries({"x": _operators(EQUALITY_OPS + RANGE_OPS, st.integers(0, 3))}),
        _operators(EQUALITY_OPS, st.fixed_dictionaries({"x": st.integers(0, 3)})),
    ),
    "opt": _condition(st.one_of(st.none(), strings), ranges=False),
    "absent": _condition(st.one_of(numbers, strings), ranges=True),
}
_filter_keys = st.sampled_from(sorted(FILTER_CONDITIONS))
filters = st.one_of(
    st.none(),
    _filter_keys.flatmap(lambda key: st.fixed_dictionaries({key: FILTER_CONDITIONS[key]})),
    st.lists(_filter_keys, min_size=2, max_size=2, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({k: FILTER_CONDITIONS[k] for k in chosen})
    ),
)


put_ops = st.builds(
    lambda ns, key, value: PutOp(ns, key, value),
    namespaces,
    keys,
    st.one_of(values, st.none()),
)
get_ops = st.builds(lambda ns, key: GetOp(ns, key), namespaces, keys)
search_ops = st.builds(
    lambda prefix, filter, limit, offset: SearchOp(
        prefix, filter=filter, limit=limit, offset=offset
    ),
    search_prefixes,
    filters,
    st.integers(0, 6),
    st.integers(0, 3),
)


def _listing(
    prefix: tuple[str, ...] | None,
    suffix: tuple[str, ...] | None,
    max_depth: int | None,
    limit: int,
    offset: int,
) -> ListNamespacesOp:
    conditions = []
    if prefix:
        conditions.append(MatchCondition("prefix", prefix))
    if suffix:
        conditions.append(MatchCondition("suffix", suffix))
    return ListNamespacesOp(tuple(conditions), max_depth=max_depth, limit=limit, offset=offset)


def _listing_kwargs(op: ListNamespacesOp) -> dict[str, Any]:
    """``list_namespaces`` arguments of an op made by :func:`_listing`."""
    paths = {c.match_type: c.path for c in op.match_conditions or ()}
    return {
        "prefix": paths.get("prefix"),
        "suffix": paths.get("suffix"),
        "max_depth": op.max_depth,
        "limit": op.limit,
        "offset": op.offset,
    }


# What ``list_namespaces`` can ask: at most one prefix and one suffix condition.
listing_ops = st.builds(
    _listing,
    st.one_of(st.none(), match_paths()),
    st.one_of(st.none(), match_paths()),
    st.one_of(st.none(), st.integers(1, 3)),
    st.integers(1, 12),
    st.integers(0, 4),
)
# What ``abatch`` accepts besides: any number of conditions of either kind.
batch_listing_ops = st.builds(
    lambda conditions, max_depth, limit, offset: ListNamespacesOp(
        conditions, max_depth=max_depth, limit=limit, offset=offset
    ),
    st.lists(
        st.builds(
            lambda kind, path: MatchCondition(kind, path),
            st.sampled_from(["prefix", "suffix"]),
            match_paths(),
        ),
        max_size=3,
    ).map(tuple),
    st.one_of(st.none(), st.integers(1, 3)),
    st.integers(1, 10),
    st.integers(0, 3),
)


# --- the reference --------------------------------------------------------------------------------


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def spec_range_match(item_value: object, op: str, operand: object) -> bool:
    """SPEC §5.3 for range operators: numbers as numbers, strings as strings, else no match."""
    if _is_number(operand):
        if not _is_number(item_value):
            return False
    elif isinstance(operand, str):
        if not isinstance(item_value, str):
            return False
    else:  # pragma: no cover - the strategies generate no other operand
        raise AssertionError(f"no range operand of type {type(operand)}")
    return _COMPARE[op](item_value, operand)


def split_filter(
    filter: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, list[tuple[str, str, Any]]]:
    """The part InMemoryStore evaluates as SPEC says, and the range conditions it cannot."""
    if not filter:
        return filter, []
    rest: dict[str, Any] = {}
    ranges: list[tuple[str, str, Any]] = []
    for key, condition in filter.items():
        if isinstance(condition, dict) and any(k.startswith("$") for k in condition):
            kept = {}
            for op, operand in condition.items():
                if op in RANGE_OPS:
                    ranges.append((key, op, operand))
                else:
                    kept[op] = operand
            if kept:
                rest[key] = kept
        else:
            rest[key] = condition
    return rest or None, ranges


def prune_empty_namespaces(mem: InMemoryStore) -> None:
    for namespace in [ns for ns, items in mem._data.items() if not items]:
        del mem._data[namespace]


def assert_item(actual: Item | None, expected: Item | None) -> None:
    if expected is None:
        assert actual is None, f"expected no item, got {actual!r}"
        return
    assert actual is not None, f"expected {expected!r}, got None"
    assert (actual.namespace, actual.key) == (expected.namespace, expected.key)
    assert actual.value == expected.value, (actual.value, expected.value)
    assert isinstance(actual.created_at, datetime)
    assert isinstance(actual.updated_at, datetime)


def assert_page_by_groups(
    actual: Sequence[Item],
    expected: Sequence[Item],
    group_of: Callable[[Item], object],
    offset: int,
    limit: int,
) -> None:
    """``actual`` is ``expected[offset:offset + limit]`` up to reordering inside tie groups.

    ``expected`` is the full, ordered answer; ``group_of`` names the tie group of an item.
    """
    total = len(expected)
    want = max(0, min(limit, total - offset))
    got = [(item.namespace, item.key) for item in actual]
    assert len(got) == want, f"page of {len(got)} items, expected {want}: {got}"
    assert len(set(got)) == len(got), f"duplicate items in one page: {got}"
    by_key = {(item.namespace, item.key): item for item in expected}
    for position, item in enumerate(actual, start=offset):
        ident = (item.namespace, item.key)
        assert ident in by_key, f"{ident} should not be in the results"
        assert group_of(by_key[ident]) == group_of(expected[position]), (
            f"position {position}: got {ident}, expected a member of the tie group of "
            f"{(expected[position].namespace, expected[position].key)}; page {got}"
        )
        assert item.value == by_key[ident].value, (ident, item.value, by_key[ident].value)


class StoreMachine(RuleBasedStateMachine):
    """Shared driving code: the reference, the logical clock and the read checks."""

    harness: ClassVar[Harness]

    def __init__(self) -> None:
        super().__init__()
        self.harness.empty_tables()
        self.ours = self.harness.store
        self.mem = InMemoryStore(index=self.harness.index)  # type: ignore[arg-type]
        # Logical clock: every write call advances it; all items written by one call share the
        # tick, because one call is one transaction (one ``updated_at``).
        self.clock = 0
        self.written_at: dict[Key, int] = {}
        # What ``updated_at`` our store reported for an item, at which tick.
        self.seen_updated_at: dict[Key, tuple[int, datetime]] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.harness.loop.run(coro)

    # -- writes

    def _record_writes(self, ops: Sequence[PutOp]) -> None:
        self.clock += 1
        for op in ops:
            if op.value is None:
                self.written_at.pop((op.namespace, op.key), None)
                self.seen_updated_at.pop((op.namespace, op.key), None)
            else:
                self.written_at[(op.namespace, op.key)] = self.clock

    # -- reads

    def _observe(self, item: Item) -> None:
        """``updated_at`` moves forward with every write of the item and only then."""
        ident = (item.namespace, item.key)
        tick = self.written_at[ident]
        previous = self.seen_updated_at.get(ident)
        if previous is not None:
            seen_tick, seen_at = previous
            if seen_tick == tick:
                assert item.updated_at == seen_at, (ident, seen_at, item.updated_at)
            else:
                assert item.updated_at > seen_at, (ident, seen_at, item.updated_at)
        self.seen_updated_at[ident] = (tick, item.updated_at)

    def expected_get(self, namespace: tuple[str, ...], key: str) -> Item | None:
        return self.run(self.mem.aget(namespace, key))

    def expected_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        prune_empty_namespaces(self.mem)
        return self.run(self.mem.abatch([op]))[0]  # type: ignore[return-value]

    def expected_plain_search(self, op: SearchOp) -> list[Item]:
        """Every match, most recently written first (ties in arbitrary order)."""
        everything = 10**6
        rest, ranges = split_filter(op.filter)
        candidates = self.run(self.mem.asearch(op.namespace_prefix, filter=rest, limit=everything))
        matches = [
            item
            for item in candidates
            if all(
                spec_range_match(item.value.get(key), name, operand)
                for key, name, operand in ranges
            )
        ]
        if ranges:
            try:
                full = self.run(
                    self.mem.asearch(op.namespace_prefix, filter=op.filter, limit=everything)
                )
            except (TypeError, ValueError):
                # float() of a string or of a missing value: the SPEC rule stands alone.
                event("range filter: SPEC rule only")
            else:
                event("range filter: checked against InMemoryStore too")
                assert {(i.namespace, i.key) for i in full} == {
                    (i.namespace, i.key) for i in matches
                }, "reference self-check: SPEC range rule disagrees with InMemoryStore"
        for item in matches:
            assert (item.namespace, item.key) in self.written_at, "model out of sync"
        return sorted(matches, key=lambda item: -self.written_at[(item.namespace, item.key)])

    def check_plain_search(self, op: SearchOp, actual: list[SearchItem]) -> None:
        expected = self.expected_plain_search(op)
        event("search: " + _size_bucket(len(actual)) + (" (filtered)" if op.filter else ""))
        assert_page_by_groups(
            actual,
            expected,
            lambda item: self.written_at[(item.namespace, item.key)],
            op.offset,
            op.limit,
        )
        for item in actual:
            assert item.score is None, item
            self._observe(item)


class PlainStoreMachine(StoreMachine):
    """No index: key-value semantics, filters, namespaces, batches."""

    @initialize(
        items=st.lists(
            st.tuples(namespaces, keys, values),
            min_size=8,
            max_size=20,
            unique_by=lambda item: item[:2],
        )
    )
    def fill(self, items: list[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for namespace, key, value in items:
            self.put(namespace, key, value, sync=False)

    def call(self, sync: bool, method: str, *args: Any, **kwargs: Any) -> Any:
        """Our store's async method, or its sync twin (called from this thread, which is not
        the store's loop: the twins hand the call over to that loop)."""
        if sync:
            return getattr(self.ours, method)(*args, **kwargs)
        return self.run(getattr(self.ours, "a" + method)(*args, **kwargs))

    @rule(namespace=namespaces, key=keys, value=values, sync=st.booleans())
    def put(self, namespace: tuple[str, ...], key: str, value: dict[str, Any], sync: bool) -> None:
        self.call(sync, "put", namespace, key, value)
        self.run(self.mem.aput(namespace, key, value))
        self._record_writes([PutOp(namespace, key, value)])

    @rule(namespace=namespaces, key=keys, sync=st.booleans())
    def delete(self, namespace: tuple[str, ...], key: str, sync: bool) -> None:
        self.call(sync, "delete", namespace, key)
        self.run(self.mem.adelete(namespace, key))
        self._record_writes([PutOp(namespace, key, None)])

    @rule(namespace=namespaces, key=keys, sync=st.booleans())
    def get(self, namespace: tuple[str, ...], key: str, sync: bool) -> None:
        actual = self.call(sync, "get", namespace, key)
        assert_item(actual, self.expected_get(namespace, key))
        if actual is not None:
            self._observe(actual)

    @rule(
        prefix=search_prefixes,
        filter=filters,
        limit=st.integers(0, 8),
        offset=st.integers(0, 4),
        sync=st.booleans(),
    )
    def search(
        self,
        prefix: tuple[str, ...],
        filter: dict[str, Any] | None,
        limit: int,
        offset: int,
        sync: bool,
    ) -> None:
        actual = self.call(sync, "search", prefix, filter=filter, limit=limit, offset=offset)
        self.check_plain_search(SearchOp(prefix, filter, limit, offset), actual)

    @rule(op=listing_ops, sync=st.booleans())
    def list_namespaces(self, op: ListNamespacesOp, sync: bool) -> None:
        actual = self.call(sync, "list_namespaces", **_listing_kwargs(op))
        event("list_namespaces: " + _size_bucket(len(actual)))
        assert actual == self.expected_namespaces(op)

    @rule(ops=st.lists(st.one_of(get_ops, search_ops, listing_ops), min_size=2, max_size=6))
    def concurrent_reads(self, ops: list[Op]) -> None:
        """Reads issued at once coalesce into shared batches; each gets its own answer."""
        checks = self._expectations(ops)

        async def issue(op: Op) -> Any:
            if isinstance(op, GetOp):
                return await self.ours.aget(op.namespace, op.key)
            if isinstance(op, SearchOp):
                return await self.ours.asearch(
                    op.namespace_prefix, filter=op.filter, limit=op.limit, offset=op.offset
                )
            assert isinstance(op, ListNamespacesOp)
            return await self.ours.alist_namespaces(**_listing_kwargs(op))

        async def issue_all() -> list[Any]:
            return list(await asyncio.gather(*(issue(op) for op in ops)))

        for check, result in zip(checks, self.run(issue_all()), strict=True):
            check(result)

    @rule(
        ops=st.lists(
            st.one_of(put_ops, get_ops, search_ops, listing_ops, batch_listing_ops),
            min_size=1,
            max_size=8,
        )
    )
    def batch(self, ops: list[Op]) -> None:
        # Reads see the state before the batch (SPEC §5.2): work out their answers first.
        checks = self._expectations(ops)
        results = self.run(self.ours.abatch(ops))
        assert len(results) == len(ops)
        for check, result in zip(checks, results, strict=True):
            check(result)
        puts = [op for op in ops if isinstance(op, PutOp)]
        if puts:
            # Only the writes: InMemoryStore cannot run the batch's range filters (see above).
            self.run(self.mem.abatch(puts))
            self._record_writes(puts)

    def _expectations(self, ops: Sequence[Op]) -> list[Callable[[Any], None]]:
        """A check of each op's result, against the current (pre-batch) state."""
        checks: list[Callable[[Any], None]] = []
        for op in ops:
            if isinstance(op, GetOp):
                want = self.expected_get(op.namespace, op.key)
                checks.append(lambda got, want=want: assert_item(got, want))
            elif isinstance(op, SearchOp):
                plain = self.expected_plain_search(op)
                checks.append(
                    lambda got, op=op, plain=plain: assert_page_by_groups(
                        got,
                        plain,
                        lambda item: self.written_at[(item.namespace, item.key)],
                        op.offset,
                        op.limit,
                    )
                )
            elif isinstance(op, ListNamespacesOp):
                want_ns = self.expected_namespaces(op)
                checks.append(lambda got, want=want_ns: _assert_equal(got, want))
            else:
                checks.append(lambda got: _assert_equal(got, None))
        return checks


def _size_bucket(n: int) -> str:
    return "empty" if n == 0 else "1 item" if n == 1 else "2+ items"


def _assert_equal(got: object, want: object) -> None:
    assert got == want, (got, want)


def test_store_matches_inmemory_store(database_url: str) -> None:
    with running_store(database_url, index=None) as harness:
        PlainStoreMachine.harness = harness
        run_state_machine_as_test(PlainStoreMachine, settings=_settings(examples=60, steps=30))


# --- vector search --------------------------------------------------------------------------------

DIMS = 16
WORDS = ("red", "apple", "green", "tree", "blue", "sky", "fast", "car", "slow", "boat")
phrases = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
VECTOR_NAMESPACES = (("docs",), ("docs", "x"), ("docs", "y"), ("other",))
SCORE_TOLERANCE = 1e-3

# The texts of one value are distinct: InMemoryStore embeds each distinct text once but then
# pairs the vectors with every occurrence, and raises when a text repeats within a put.
vector_values = phrases.flatmap(
    lambda text: st.fixed_dictionaries(
        {"text": st.just(text), "tag": st.sampled_from(["red", "green"]), "n": st.integers(0, 5)},
        optional={"tags": st.lists(phrases.filter(lambda p: p != text), unique=True, max_size=3)},
    )
)
# Mostly the store's fields; sometimes none, fewer, or a path the value does not have.
put_indexes = st.one_of(st.just(None), st.sampled_from([False, ["text"], ["tags[*]"], ["missing"]]))
vector_filters = st.one_of(
    st.none(),
    st.fixed_dictionaries({"tag": st.sampled_from(["red", "green"])}),
    st.fixed_dictionaries({"n": _operators(RANGE_OPS, st.integers(0, 5))}),
    st.fixed_dictionaries({"tag": st.just("red"), "n": _operators(("$ne",), st.integers(0, 5))}),
)


class VectorStoreMachine(StoreMachine):
    """Index on ``text`` and every element of ``tags``: ranked search against InMemoryStore."""

    @initialize(
        items=st.lists(
            st.tuples(st.sampled_from(VECTOR_NAMESPACES), keys, vector_values, put_indexes),
            min_size=6,
            max_size=16,
            unique_by=lambda item: item[:2],
        )
    )
    def fill(self, items: list[tuple[tuple[str, ...], str, dict[str, Any], Any]]) -> None:
        for namespace, key, value, index in items:
            self.put(namespace, key, value, index)

    def _forget_reference_vectors(self, namespace: tuple[str, ...], key: str) -> None:
        # SPEC §5.5: a put replaces the item's vectors; InMemoryStore would keep stale ones.
        self.mem._vectors[namespace].pop(key, None)

    @rule(
        namespace=st.sampled_from(VECTOR_NAMESPACES),
        key=keys,
        value=vector_values,
        index=put_indexes,
    )
    def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        index: Any,
    ) -> None:
        self.run(self.ours.aput(namespace, key, value, index=index))
        self._forget_reference_vectors(namespace, key)
        self.run(self.mem.aput(namespace, key, value, index=index))
        self._record_writes([PutOp(namespace, key, value)])

    @rule(namespace=st.sampled_from(VECTOR_NAMESPACES), key=keys)
    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        self.run(self.ours.adelete(namespace, key))
        self.run(self.mem.adelete(namespace, key))
        self._record_writes([PutOp(namespace, key, None)])

    @rule(
        prefix=st.sampled_from([(), ("docs",), ("docs", "x"), ("other",)]),
        query=phrases,
        filter=vector_filters,
        limit=st.integers(1, 8),
        offset=st.integers(0, 4),
    )
    def vector_search(
        self,
        prefix: tuple[str, ...],
        query: str,
        filter: dict[str, Any] | None,
        limit: int,
        offset: int,
    ) -> None:
        actual = self.run(
            self.ours.asearch(prefix, query=query, filter=filter, limit=limit, offset=offset)
        )
        ranked = [
            item
            for item in self.run(self.mem.asearch(prefix, query=query, filter=filter, limit=10**6))
            if item.score is not None
        ]
        want = max(0, min(limit, len(ranked) - offset))
        event("vector search: " + _size_bucket(want) + (" (filtered)" if filter else ""))
        got = [(item.namespace, item.key, item.score) for item in actual]
        assert len(actual) == want, f"{len(actual)} results, expected {want}: {got}"
        assert len({(i.namespace, i.key) for i in actual}) == len(actual), got
        by_key = {(item.namespace, item.key): item for item in ranked}
        for position, item in enumerate(actual, start=offset):
            ident = (item.namespace, item.key)
            assert ident in by_key, f"{ident} should not be in the results: {got}"
            reference = by_key[ident]
            assert item.score is not None, got
            assert item.score == pytest.approx(reference.score, abs=SCORE_TOLERANCE), (
                ident,
                item.score,
                reference.score,
            )
            # Rank: the score at this position is the score the reference has there.
            assert item.score == pytest.approx(ranked[position].score, abs=SCORE_TOLERANCE), (
                f"position {position}: {ident} scored {item.score}, the reference's item "
                f"there scores {ranked[position].score}; page {got}"
            )
            assert item.value == reference.value

    @rule(
        prefix=st.sampled_from([(), ("docs",), ("other",)]),
        filter=vector_filters,
        limit=st.integers(0, 8),
        offset=st.integers(0, 4),
    )
    def plain_search(
        self, prefix: tuple[str, ...], filter: dict[str, Any] | None, limit: int, offset: int
    ) -> None:
        actual = self.run(self.ours.asearch(prefix, filter=filter, limit=limit, offset=offset))
        self.check_plain_search(SearchOp(prefix, filter, limit, offset), actual)

    @rule(namespace=st.sampled_from(VECTOR_NAMESPACES), key=keys)
    def get(self, namespace: tuple[str, ...], key: str) -> None:
        actual = self.run(self.ours.aget(namespace, key))
        assert_item(actual, self.expected_get(namespace, key))


@pytest.mark.vector
def test_vector_search_matches_inmemory_store(database_url: str) -> None:
    index = {"dims": DIMS, "embed": HashingEmbeddings(DIMS), "fields": ["text", "tags[*]"]}
    with running_store(database_url, index=index) as harness:
        VectorStoreMachine.harness = harness
        run_state_machine_as_test(VectorStoreMachine, settings=_settings(examples=40, steps=30))
