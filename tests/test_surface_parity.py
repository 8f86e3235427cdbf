"""The public surface of upstream's classes against ours (issue 11).

For every pair in ``PAIRS``: every public method and attribute (sync and async, class and
instance level), every parameter's name, kind, default and annotation, and the return
annotations are compared by :mod:`surface`. Each difference must be a deliberate one, listed
with its reason in ``differences.SURFACE`` (and so on docs/differences.md); an unlisted one —
say a parameter a new upstream release adds — fails, and so does a listed one that is gone.

Adding a pair is one line in ``PAIRS``; a pair whose class of ours does not exist yet skips.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from differences import BEHAVIOUR, SURFACE
from surface import (
    ClassPair,
    collect_surface,
    compare,
    describe,
    instance_attributes,
    load,
    renames_for,
)

PAIRS = [
    ClassPair(
        "langgraph.checkpoint.postgres.aio:AsyncPostgresSaver",
        "langgraph_sqlalchemy:AsyncSQLAlchemySaver",
    ),
    ClassPair(
        "langgraph.store.postgres:AsyncPostgresStore", "langgraph_sqlalchemy:AsyncSQLAlchemyStore"
    ),
    ClassPair(
        "langgraph.checkpoint.postgres:PostgresSaver", "langgraph_sqlalchemy:SQLAlchemySaver"
    ),
    ClassPair("langgraph.store.postgres:PostgresStore", "langgraph_sqlalchemy:SQLAlchemyStore"),
]

PAGE = Path(__file__).resolve().parents[1] / "docs" / "differences.md"


@pytest.mark.parametrize("pair", PAIRS, ids=[p.ours_name for p in PAIRS])
async def test_surface_differences_are_the_listed_ones(pair: ClassPair, database_url: str) -> None:
    theirs, ours = load(pair.upstream), load(pair.ours)
    assert theirs is not None, f"upstream has no {pair.upstream}"
    if ours is None:
        pytest.skip(f"{pair.ours} does not exist yet")
    renames = renames_for(PAIRS)
    # Instances too: attributes set in __init__ are part of the surface.
    upstream_surface = collect_surface(
        theirs, await instance_attributes(theirs, database_url), renames
    )
    our_surface = collect_surface(ours, await instance_attributes(ours, database_url), renames)
    found = compare(upstream_surface, our_surface)
    listed = {key for key in SURFACE if key.startswith(f"{pair.ours_name}.")}
    assert found - listed == set(), (
        f"differences from {pair.upstream_name} not listed in differences.SURFACE (decide, "
        f"then list each with its reason):\n{describe(found - listed)}"
    )
    assert listed - found == set(), (
        f"listed differences that no longer exist (remove them):\n{describe(listed - found)}"
    )


def test_the_comparison_sees_parameters_defaults_and_kinds() -> None:
    """The machinery itself: each kind of change to a signature is reported."""

    class Upstream:
        def call(self, a: int, b: str = "x", *, c: float | None = None) -> int:
            return 0

        async def acall(self) -> None:
            return None

        name = "attribute"

    class Ours:
        def call(self, a: int, b: str = "y", c: float | None = None, *, d: int = 0) -> str:
            return ""

        def acall(self) -> None:
            return None

        @property
        def name(self) -> str:
            return "property"

    found = compare(collect_surface(Upstream), collect_surface(Ours))
    assert found == {
        "Ours.call(b): default 'y', upstream 'x'",
        "Ours.call(c): kind POSITIONAL_OR_KEYWORD, upstream KEYWORD_ONLY",
        "Ours.call(d): ours only",
        "Ours.call: returns 'str', upstream 'int'",
        "Ours.acall: method, upstream async method",
        "Ours.name: property, upstream attribute",
    }


def _page_entries() -> dict[str, str]:
    """``- `key` — reason`` items of the page (a reason may wrap onto indented lines)."""
    entries: dict[str, str] = {}
    current: list[str] | None = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^- `(.+)` — (.*)$", line)
        if match:
            current = [match.group(1), match.group(2)]
            entries[current[0]] = current[1]
        elif current is not None and line.startswith("  ") and line.strip():
            current[1] += " " + line.strip()
            entries[current[0]] = current[1]
        else:
            current = None
    return entries


def _normal(text: str) -> str:
    return " ".join(text.split())


def test_differences_page_lists_every_entry() -> None:
    """docs/differences.md and the tables of the tests say the same, entry for entry."""
    page = {key: _normal(reason) for key, reason in _page_entries().items()}
    tables = {key: _normal(reason) for key, reason in {**SURFACE, **BEHAVIOUR}.items()}
    assert sorted(page.keys() - tables.keys()) == [], "on the page, not in differences.py"
    assert sorted(tables.keys() - page.keys()) == [], "in differences.py, not on the page"
    changed = {key for key in tables if page[key] != tables[key]}
    assert not changed, f"reasons differ: {sorted(changed)}"
