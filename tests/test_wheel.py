"""The built wheel carries its migrations: an installed package, with no repository around,
migrates a database.

This is the slowest test of the suite (it builds a wheel and a virtualenv, ~1 minute with a warm
pip cache): it is what proves that ``setup()`` and the CLI work for users who ``pip install``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine
from schema_catalog import VERSION_TABLE, read_catalog, reference_catalog

ROOT = Path(__file__).resolve().parents[1]
REVISION_FILES = sorted(
    p.name for p in (ROOT / "src/langgraph_sqlalchemy/migrations/versions").glob("*.py")
)

def _run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH and a cwd outside the checkout: only the installed wheel can be imported.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
         cwd=out)
    (built,) = out.glob("langgraph_sqlalchemy-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv (no system site-packages) with the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=venv, timeout=300)
    yield venv


def test_wheel_contains_the_migration_scripts(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    package = "langgraph_sqlalchemy/"
    for required in ("py.typed", "schema.py", "migrations/__init__.py", "migrations/env.py",
                     "migrations/environment.py", "migrations/script.py.mako"):
        assert package + required in names, required
    shipped = sorted(
        n.rsplit("/", 1)[1] for n in names
        if n.startswith(package + "migrations/versions/") and n.endswith(".py")
    )
    assert shipped == REVISION_FILES and len(shipped) >= 5
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


_UPGRADE = textwrap.dedent(
    """
    import asyncio, sys
    import langgraph_sqlalchemy
    from langgraph_sqlalchemy import migrations
    from langgraph_sqlalchemy.engine import create_engine

    async def main(url):
        engine = create_engine(url)
        try:
            await migrations.upgrade(engine)
            assert await migrations.is_at_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(main(sys.argv[1]))
    print(langgraph_sqlalchemy.__file__)
    print(migrations.script_location())
    """
)


async def test_installed_wheel_upgrades_a_database(
    installed: Path,
    new_database: Callable[[], Awaitable[str]],
    tmp_path: Path,
) -> None:
    python = installed / "bin" / "python"
    url = await new_database()
    result = _run([str(python), "-c", _UPGRADE, url], cwd=tmp_path)
    module_file, scripts = result.stdout.split()
    # Imported from the virtualenv, never from the checkout.
    assert Path(module_file).is_relative_to(installed)
    assert not Path(module_file).is_relative_to(ROOT)
    assert Path(scripts).is_relative_to(installed)

    # The same schema as the checkout builds.
    engine = create_engine(url)
    try:
        reference = await reference_catalog(new_database)
        assert (await read_catalog(engine)).differences(reference) == []
        assert await migrations.is_at_head(engine)
    finally:
        await engine.dispose()

    # Offline SQL from the installed package too.
    sql = _run(
        [str(python), "-c", "from langgraph_sqlalchemy.migrations import render_sql; "
         "print(render_sql())"],
        cwd=tmp_path,
    ).stdout
    assert f"CREATE TABLE {VERSION_TABLE}" in sql


async def test_installed_console_script_upgrades_a_database(
    installed: Path,
    new_database: Callable[[], Awaitable[str]],
    tmp_path: Path,
) -> None:
    cli = installed / "bin" / "langgraph-sqlalchemy"
    assert cli.exists(), "the wheel declares the langgraph-sqlalchemy console script"
    url = await new_database()
    _run([str(cli), "upgrade", "--database-url", url], cwd=tmp_path)
    engine = create_engine(url)
    try:
        assert await migrations.is_at_head(engine)
        tables = (await read_catalog(engine)).tables
        assert {"checkpoints", "checkpoint_writes", "store", VERSION_TABLE} <= tables
    finally:
        await engine.dispose()
    # `check` agrees, and so does `python -m langgraph_sqlalchemy`.
    _run([str(cli), "check", "--database-url", url], cwd=tmp_path)
    _run([str(installed / "bin" / "python"), "-m", "langgraph_sqlalchemy", "check",
          "--database-url", url], cwd=tmp_path)


_GRAPH = textwrap.dedent(
    """
    import asyncio, operator, sys
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph

    from langgraph_sqlalchemy import AsyncSQLAlchemySaver

    class State(TypedDict):
        steps: Annotated[list[str], operator.add]

    builder = StateGraph(State)
    builder.add_node("greet", lambda state: {"steps": ["greet"]})
    builder.add_edge(START, "greet")
    builder.add_edge("greet", END)

    async def main(url):
        async with AsyncSQLAlchemySaver.from_conn_string(url) as saver:
            await saver.setup()
            graph = builder.compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "wheel"}}
            await graph.ainvoke({"steps": []}, config)
            state = await graph.aget_state(config)
            print(",".join(state.values["steps"]))

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_plain_install_runs_a_langgraph_graph(
    installed: Path,
    new_database: Callable[[], Awaitable[str]],
    tmp_path: Path,
) -> None:
    """`pip install langgraph-sqlalchemy`, no extras: what the README's examples import
    (langgraph among them) is there."""
    url = await new_database()
    result = _run([str(installed / "bin" / "python"), "-c", _GRAPH, url], cwd=tmp_path)
    assert result.stdout.strip() == "greet"
