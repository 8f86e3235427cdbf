"""The pages of docs/: every code block runs, every page is in the index, every link lands.

How blocks run, and how a page says it needs pgvector or runs as one plain script, is in
``tests/doc_blocks.py``. Each page gets a fresh database of its own.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from doc_blocks import DOCS, README, ROOT, page_blocks, page_options, run_page

PAGES = sorted(DOCS.glob("*.md"))

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (?P<title>.+?)\s*#*$", re.M)
_FENCED = re.compile(r"^[ ]*```.*?^[ ]*```[ ]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")


def _param(page: Path) -> object:
    marks = [pytest.mark.vector] if "vector" in page_options(page) else []
    return pytest.param(page, marks=marks, id=page.name)


@pytest.mark.parametrize("page", [_param(page) for page in PAGES])
async def test_every_block_of_the_page_runs(
    page: Path,
    database_factory: Callable[[], Awaitable[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = [b for b in page_blocks(page) if b.lang != "text"]
    if not code:
        return  # nothing to run (and so no database to create)
    url = await database_factory()
    monkeypatch.setenv("DATABASE_URL", url)
    ran = await run_page(page, url, tmp_path)
    assert sum(ran.values()) == len(code), (ran, len(code))


def _prose(path: Path) -> str:
    return _INLINE_CODE.sub("", _FENCED.sub("", path.read_text(encoding="utf-8")))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``path``."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for match in _HEADING.finditer(_FENCED.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", match.group("title").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _links(path: Path) -> list[str]:
    return [m.group("target") for m in _LINK.finditer(_prose(path))]


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.name)
def test_every_link_lands(path: Path) -> None:
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{path.name}: {broken}"


def test_the_index_lists_every_page_and_the_readme_links_the_index() -> None:
    index = DOCS / "index.md"
    listed = {(DOCS / t.partition("#")[0]).resolve() for t in _links(index)}
    missing = [p.name for p in PAGES if p != index and p not in listed]
    assert not missing, f"docs/index.md does not list {missing}"
    assert "docs/index.md" in _links(README)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_page_starts_with_a_summary(page: Path) -> None:
    """A title, then a paragraph saying what the page is for, before any section or block."""
    lines = [
        line
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("<!--")
    ]
    assert lines[0].startswith("# "), f"{page.name} starts with {lines[0]!r}, not a title"
    first = lines[1]
    assert not first.startswith(("#", "```", "|", "- ", "* ", "1.")), (
        f"{page.name}: the title is followed by {first!r}, not a paragraph"
    )
