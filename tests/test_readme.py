"""Every code block of the README runs.

Python blocks run in order in one namespace (top-level ``await`` allowed) on a fresh database
whose URL is in ``DATABASE_URL``, as the README says. ``ini`` blocks are written to an
``alembic.ini`` in a temporary directory, which the following shell block uses. Shell blocks
run through bash, line by line, with ``DATABASE_URL`` set; the lines that install software,
start Docker or run this very test suite are not run here, because ``.ci/run`` runs the quick
start's ``# test`` and ``# demo`` commands themselves on a fresh clone (they are listed in
``SKIPPED_LINE_PREFIXES`` so nothing is dropped silently).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

SKIPPED_LINE_PREFIXES = (
    "python3 -m venv",  # the quick start: run verbatim by .ci/run on a fresh clone
    "pip install",  # installs: the test environment already has them
    "docker compose",  # no Docker engine on CI
    ".venv/bin/python -m pytest",  # this suite itself
    "TEST_DATABASE_URL=",  # this suite on another server
    ".venv/bin/mypy",  # static checks, run by .ci/run
)

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def markdown_blocks(path: Path) -> list[tuple[str, str]]:
    """The fenced code blocks of a Markdown file, as (language, body), in order."""
    return [(lang, body) for lang, body in _FENCE.findall(path.read_text())]


def readme_blocks() -> list[tuple[str, str]]:
    return markdown_blocks(README)


def test_readme_has_the_quick_start() -> None:
    blocks = readme_blocks()
    quick = next(body for lang, body in blocks if "# demo" in body.splitlines())
    lines = quick.splitlines()
    assert lines[lines.index("# demo") + 1].startswith("python3 -m venv")
    assert lines[lines.index("# test") + 1].startswith("python3 -m venv")
    ci = (ROOT / ".ci" / "run").read_text()
    assert lines[lines.index("# test") + 1] in ci
    assert lines[lines.index("# demo") + 1] in ci


async def _run_python(code: str, namespace: dict[str, Any]) -> None:
    compiled = compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if result is not None:
        await result


def _run_shell(body: str, env: dict[str, str], cwd: Path) -> None:
    for line in body.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(SKIPPED_LINE_PREFIXES):
            continue
        proc = subprocess.run(
            ["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
        )
        assert proc.returncode == 0, f"README line failed: {line}\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.vector
async def test_every_readme_block_runs(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    namespace: dict[str, Any] = {"__name__": "readme"}
    ran: dict[str, int] = {}
    cwd = ROOT
    for lang, body in readme_blocks():
        if lang == "python":
            await _run_python(body, namespace)
        elif lang == "ini":
            (tmp_path / "alembic.ini").write_text(body)
            cwd = tmp_path  # the shell block after it runs beside that alembic.ini
            continue
        elif lang in ("sh", "bash"):
            _run_shell(body, env, cwd)
            cwd = ROOT
        else:
            raise AssertionError(f"README block in an unexpected language: {lang!r}")
        ran[lang] = ran.get(lang, 0) + 1
    assert ran.get("python", 0) >= 5 and ran.get("sh", 0) >= 3, ran
