"""Every code block of ``docs/sync.md`` runs, as one plain script, and prints what it says.

The page is about code with no event loop, so its blocks are not run inside this test's event
loop (as the README's are) but joined, in order, into one script run by a fresh interpreter
with ``DATABASE_URL`` set, exactly as a user would run it. Each ``print(...)  # -> text`` line
must print ``text``; the script must exit by itself (no thread or task left to hold it up) and
write nothing to stderr that speaks of an unclean shutdown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_readme import ROOT, markdown_blocks

DOC = ROOT / "docs" / "sync.md"

_PRINTS = re.compile(r"^\s*print\(.*\)\s*# -> (.*)$")

# What Python and asyncio write when something was left running or unclosed at exit.
_UNCLEAN = (
    "Traceback",
    "Exception ignored",
    "was never awaited",
    "Task was destroyed",
    "Event loop is closed",
    "unclosed",
    "garbage collector is trying to clean up",
)


def _script() -> tuple[str, list[str]]:
    blocks = markdown_blocks(DOC)
    assert blocks and {lang for lang, _ in blocks} == {"python"}, "only Python blocks expected"
    script = "\n\n".join(body for _, body in blocks)
    expected = [m.group(1) for line in script.splitlines() if (m := _PRINTS.match(line))]
    return script, expected


@pytest.mark.vector
def test_every_sync_docs_block_runs_as_a_plain_script(
    fresh_database_url: str, tmp_path: Path
) -> None:
    script, expected = _script()
    assert len(expected) >= 10
    path = tmp_path / "sync_docs.py"
    path.write_text(script)
    proc = subprocess.run(
        [sys.executable, str(path)],
        env={**os.environ, "DATABASE_URL": fresh_database_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected
    for sign in _UNCLEAN:
        assert sign not in proc.stderr, proc.stderr
