"""The demo, run twice on a fresh database: the second run remembers the first."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("langgraph")

from langgraph_sqlalchemy.demo import run_demo


@pytest.mark.vector
async def test_demo_runs_and_remembers_across_runs(fresh_database_url: str) -> None:
    import asyncio

    first, second = io.StringIO(), io.StringIO()
    # run_demo calls asyncio.run, so it runs in a worker thread beside the test's loop.
    code1 = await asyncio.to_thread(
        run_demo, database_url=fresh_database_url, pgdata=None, embed=None, out=first
    )
    code2 = await asyncio.to_thread(
        run_demo, database_url=fresh_database_url, pgdata=None, embed=None, out=second
    )
    assert code1 == code2 == 0
    text1, text2 = first.getvalue(), second.getvalue()
    assert "I remember 0 earlier message(s)" in text1
    assert "I remember 1 earlier message(s)" in text2
    assert "human said: approve" in text1
    assert "fork: dropped: delete the report" in text1
    # Found by meaning: the food memory ranks first for the cooking question.
    cook = text1.split("'what should I cook for her?'")[1].splitlines()[1]
    assert "noodles" in cook
    assert "just written: True" in text1
    assert "after 1.5 s (ttl 0.02 min): False" in text1
    assert "checkpoints" in text1.split("6. What is in the database")[1]
