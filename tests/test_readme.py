"""The README: its quick start is the one CI runs, and every code block of it runs.

The blocks run as ``tests/doc_blocks.py`` says (Python in order in one namespace with top-level
``await``, on a fresh database whose URL is in ``DATABASE_URL``; shell lines through bash). The
quick start's ``# test`` and ``# demo`` commands are not run here: ``.ci/run`` runs them
verbatim on a fresh clone, and this file checks that they are the ones it runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from doc_blocks import README, ROOT, SKIPPED_LINE_PREFIXES, markdown_blocks, run_page

__all__ = ["README", "ROOT", "SKIPPED_LINE_PREFIXES", "markdown_blocks"]

# What a newcomer reads in five minutes; the reference lives in docs/.
README_MAX_LINES = 150


def readme_blocks() -> list[tuple[str, str]]:
    return markdown_blocks(README)


def test_readme_has_the_quick_start() -> None:
    quick = next(body for lang, body in readme_blocks() if "# demo" in body.splitlines())
    lines = quick.splitlines()
    assert [line for line in lines if line.startswith("#")] == ["# demo", "# test"]
    assert len(lines) == 4, "two commands, each under its comment line"
    ci = (ROOT / ".ci" / "run").read_text()
    for comment in ("# demo", "# test"):
        command = lines[lines.index(comment) + 1]
        assert command.startswith("python3 -m venv")
        assert command in ci, f"the README's {comment} command is not the one .ci/run runs"


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; move reference material to a page of docs/"
    )


@pytest.mark.vector
async def test_every_readme_block_runs(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    ran = await run_page(README, fresh_database_url, tmp_path)
    assert ran.get("python", 0) >= 4 and ran.get("sh", 0) >= 2, ran
