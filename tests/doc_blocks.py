"""Running the code blocks of a Markdown page (the README, a page of docs/) on a real database.

Every fenced block of a page is one of:

- ``python``: run, in order, on the page's own fresh database, whose URL is in ``DATABASE_URL``.
  By default the blocks share one namespace and run in the test's event loop, with top-level
  ``await`` allowed (as in a notebook or ``python -m asyncio``). A page that says
  ``<!-- test: script -->`` is instead joined into one plain script, run by a fresh interpreter
  exactly as a user would run it (for pages whose code starts its own event loops, such as
  ``asyncio.run`` or the sync classes' loop threads); it must exit by itself and leave nothing
  on stderr that speaks of an unclean shutdown.
- ``sh`` / ``bash``: run through bash line by line (a line ending in ``\\`` continues on the next),
  with ``DATABASE_URL`` set and this venv's ``bin/`` first on ``PATH``, from the repository root
  (right after an ``ini`` or ``json`` block: beside that file); every command must exit 0.
  Lines that install software, start Docker or run this test suite are not run
  (``SKIPPED_LINE_PREFIXES``): ``.ci/run`` runs the quick start's commands on a fresh clone.
  Nothing else is left out.
- ``ini`` and ``json``: a file that the blocks after it use, named after the language on the
  fence line (``json langgraph.json``: GitHub shows the block as JSON and ignores the name). An
  ``ini`` block without a name is an ``alembic.ini``; a ``json`` block must have one. The file
  is written to the page's scratch directory (a fresh temporary directory), where the next
  shell block runs, and where the page's Python runs.
- ``text``: output shown to the reader, not code; nothing runs.

Any other language, or a fence without one, fails the test rather than go unrun.

``print(...)  # -> text`` says what a statement prints (the comment ends the statement's last
line): a page's Python must print exactly those lines, in order. ``…`` in a ``text`` stands for
any run of characters, as ``...`` does in a doctest. ``command  # -> text`` on a shell line says
the same of the command's output (stripped), and comment lines ``# -> more`` right below such a
command add the lines that follow.

``<!-- test: vector -->`` marks a page whose blocks need pgvector: it skips, with the reason, on
a server without the extension (the PostgreSQL 15 service). Both words may appear together:
``<!-- test: script vector -->``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent

SKIPPED_LINE_PREFIXES = (
    "python3 -m venv",  # the quick start: run verbatim by .ci/run on a fresh clone
    "pip install",  # installs: the test environment already has them
    "docker compose",  # no Docker engine on CI
    ".venv/bin/python -m pytest",  # this suite itself
    "TEST_DATABASE_URL=",  # this suite on another server
    ".venv/bin/mypy",  # static checks, run by .ci/run
)

PYTHON = ("python",)
SHELL = ("sh", "bash")
# The languages of file blocks, and the name a block gets when its fence line gives none.
FILES: dict[str, str | None] = {"ini": "alembic.ini", "json": None}
SHOWN = ("text",)
LANGUAGES = (*PYTHON, *SHELL, *FILES, *SHOWN)
OPTIONS = ("script", "vector")

# A fence may be indented (a block inside a list item); it closes at the same indentation.
_FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S | re.M
)
_ANY_FENCE_LINE = re.compile(r"^[ ]*(```|~~~)", re.M)
_OPTIONS = re.compile(r"^<!-- test: (?P<words>[a-z ]+) -->$", re.M)
_PRINT = re.compile(r"\s# -> (?P<expected>.*)$")
_SHELL_EXPECTED = re.compile(r"\s+# -> (?P<expected>.*)$")

# What Python and asyncio write when something was left running or unclosed at exit.
UNCLEAN = (
    "Traceback",
    "Exception ignored",
    "was never awaited",
    "Task was destroyed",
    "Event loop is closed",
    "unclosed",
    "garbage collector is trying to clean up",
)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # the line of the page where the body starts (1-based)
    file: str | None = None  # ini / json: the name it is written under


def page_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order; fails on a fence it cannot read."""
    text = path.read_text(encoding="utf-8")
    blocks: list[Block] = []
    for match in _FENCE.finditer(text):
        indent = match.group("indent")
        body = textwrap.dedent(match.group("body")) if indent else match.group("body")
        line = text.count("\n", 0, match.start("body")) + 1
        blocks.append(_block(path, match.group("info").split(), body, line))
    fences = len(_ANY_FENCE_LINE.findall(text))
    assert fences == 2 * len(blocks), (
        f"{path.name}: {fences} fence lines but {len(blocks)} blocks read; an unclosed fence, a "
        "~~~ fence or a closing fence indented unlike its opening one would go unrun"
    )
    return blocks


def _block(path: Path, info: list[str], body: str, line: int) -> Block:
    lang, named = (info[0], info[1:]) if info else ("", [])
    where = f"{path.name}:{line}"
    assert lang in LANGUAGES, (
        f"{where}: a block in {lang or 'no language'!r}; "
        f"label it one of {LANGUAGES} (see tests/doc_blocks.py)"
    )
    if lang not in FILES:
        assert not named, f"{where}: only {tuple(FILES)} blocks name a file, not {info!r}"
        return Block(lang, body, line)
    assert len(named) <= 1, f"{where}: one file name after {lang!r}, not {named!r}"
    file = named[0] if named else FILES[lang]
    assert file, f"{where}: a {lang} block names its file (```{lang} NAME)"
    assert Path(file).name == file and file not in (".", ".."), (
        f"{where}: {file!r} is not a plain file name"
    )
    return Block(lang, body, line, file)


def markdown_blocks(path: Path) -> list[tuple[str, str]]:
    """The fenced code blocks of a Markdown file, as (language, body), in order."""
    return [(block.lang, block.body) for block in page_blocks(path)]


def page_options(path: Path) -> frozenset[str]:
    """The words of the page's ``<!-- test: ... -->`` line (none: the defaults)."""
    words = {
        word
        for match in _OPTIONS.finditer(path.read_text(encoding="utf-8"))
        for word in match.group("words").split()
    }
    unknown = words - set(OPTIONS)
    assert not unknown, f"{path.name}: unknown test options {sorted(unknown)}; known: {OPTIONS}"
    return frozenset(words)


def expected_prints(code: str) -> list[str]:
    return [m.group("expected") for line in code.splitlines() if (m := _PRINT.search(line))]


def assert_output(where: str, printed: list[str], expected: list[str]) -> None:
    """``printed`` is ``expected`` line by line (``…`` in an expected line matches anything)."""

    def matches(line: str, want: str) -> bool:
        return re.fullmatch(".*".join(map(re.escape, want.split("…"))), line, re.S) is not None

    ok = len(printed) == len(expected) and all(map(matches, printed, expected))
    assert ok, f"{where} printed\n  {printed}\nbut its # -> comments say\n  {expected}"


@dataclass
class Command:
    line: str
    expected: list[str] | None  # None: its output is not checked


def shell_commands(body: str) -> list[Command]:
    """The commands of a shell block that the test runs (continuations joined)."""
    commands: list[Command] = []
    pending = ""
    previous: Command | None = None
    for raw in body.splitlines():
        line = raw.strip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("# -> ") and previous is not None:
            previous.expected = [*(previous.expected or []), line.removeprefix("# -> ")]
            continue
        previous = None
        if not line or line.startswith("#") or line.startswith(SKIPPED_LINE_PREFIXES):
            continue
        m = _SHELL_EXPECTED.search(line)
        previous = Command(line, [m.group("expected")] if m else None)
        commands.append(previous)
    assert not pending, f"a shell block ends in a continuation: {pending!r}"
    return commands


def run_shell(where: str, body: str, env: dict[str, str], cwd: Path) -> int:
    """Run the block's commands; returns how many ran."""
    commands = shell_commands(body)
    for command in commands:
        proc = subprocess.run(
            ["bash", "-c", command.line],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, (
            f"{where}: `{command.line}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        if command.expected is not None:
            printed = proc.stdout.strip().splitlines()
            assert_output(f"{where}: `{command.line}`", printed, command.expected)
    return len(commands)


def shell_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


async def run_page(path: Path, database_url: str, tmp_path: Path) -> dict[str, int]:
    """Run every block of ``path`` as the module docstring says; returns blocks run by language.

    The caller sets ``DATABASE_URL`` in this process's environment (in-process Python reads it).
    """
    blocks = page_blocks(path)
    if "script" in page_options(path):
        return _run_script_page(path, blocks, database_url, tmp_path)
    # Python runs in the page's scratch directory, as a script page does, so that it finds
    # the files the page's ini and json blocks write there (and writes nowhere else).
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        return await _run_blocks(path, blocks, database_url, tmp_path)
    finally:
        os.chdir(previous)


async def _run_blocks(
    path: Path, blocks: list[Block], database_url: str, tmp_path: Path
) -> dict[str, int]:
    env = shell_env(database_url)
    namespace: dict[str, Any] = {"__name__": path.stem.replace("-", "_")}
    ran: dict[str, int] = {}
    printed: list[str] = []
    expected: list[str] = []
    cwd = ROOT
    for block in blocks:
        where = f"{path.name}:{block.line}"
        if block.lang in PYTHON:
            # Padded so that a traceback names the page's own line numbers.
            code = compile(
                "\n" * (block.line - 1) + block.body,
                str(path),
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                result = eval(code, namespace)
                if result is not None:
                    await result
            printed += out.getvalue().splitlines()
            expected += expected_prints(block.body)
        elif block.lang in FILES:
            assert block.file is not None
            (tmp_path / block.file).write_text(block.body)
            cwd = tmp_path  # the shell block after it runs beside that file
        elif block.lang in SHELL:
            run_shell(where, block.body, env, cwd)
            cwd = ROOT
        else:
            continue  # text: output shown to the reader
        ran[block.lang] = ran.get(block.lang, 0) + 1
    assert_output(path.name, printed, expected)
    return ran


def _run_script_page(
    path: Path, blocks: list[Block], database_url: str, tmp_path: Path
) -> dict[str, int]:
    wrong = sorted({b.lang for b in blocks if b.lang not in (*PYTHON, *SHOWN)})
    assert not wrong, f"{path.name} runs as one Python script: no {wrong} blocks there"
    python = [b for b in blocks if b.lang in PYTHON]
    # Each block at its own line of the page, so that a traceback names the page's lines.
    lines: list[str] = []
    for block in python:
        lines += [""] * (block.line - 1 - len(lines))
        lines += block.body.splitlines()
    script = "\n".join(lines) + "\n"
    script_path = tmp_path / path.name.replace(".md", ".py").replace("-", "_")
    script_path.write_text(script)
    proc = subprocess.run(
        [sys.executable, str(script_path)],
        env={**os.environ, "DATABASE_URL": database_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{path.name} as a script exited {proc.returncode}:\n{proc.stderr}"
    assert_output(path.name, proc.stdout.splitlines(), expected_prints(script))
    for sign in UNCLEAN:
        assert sign not in proc.stderr, f"{path.name} as a script, on stderr:\n{proc.stderr}"
    return {"python": len(python)} if python else {}
