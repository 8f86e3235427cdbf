"""What a sync saver or store may leave behind: threads here, connections on the server.

Threads are counted with ``threading.enumerate``; server connections in ``pg_stat_activity``
through an independent psycopg connection, by the ``application_name`` the object under test
was given (``connect_args={"server_settings": {"application_name": ...}}``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

# How long a closed connection may take to leave pg_stat_activity: the backend exits a moment
# after the client's Terminate message. Polled, never asserted as a duration.
SETTLE_SECONDS = 15.0


def application_name() -> str:
    return f"lgsa-sync-{uuid.uuid4().hex[:12]}"


def tagged(name: str) -> dict[str, Any]:
    """Engine keywords giving every connection of the engine this ``application_name``."""
    return {"connect_args": {"server_settings": {"application_name": name}}}


def server_connections(url: str, name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {SETTLE_SECONDS} s: {what}")
        time.sleep(0.05)


def new_threads(before: set[threading.Thread]) -> list[str]:
    return sorted(t.name for t in set(threading.enumerate()) - before if t.is_alive())


def assert_nothing_left(url: str, name: str, before: set[threading.Thread]) -> None:
    """No thread started since ``before`` is alive, no connection named ``name`` is open."""
    assert new_threads(before) == []
    eventually(lambda: server_connections(url, name) == 0, f"connections of {name} closed")
