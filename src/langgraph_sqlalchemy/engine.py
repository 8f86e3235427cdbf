"""Engines this library creates itself (``from_conn_string``, the CLI, the demo).

A host application normally passes its own ``AsyncEngine`` and none of this runs: its pool and
driver settings are the host's. Everything here exists for the cases where we own the engine.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .conninfo import (
    conninfo_to_url,
    is_keyword_value,
    is_uri,
    keyword_value_to_url,
    resolve_service,
    split_libpq,
    uri_to_url,
    url_to_conninfo,
)
from .db import POOLER_OPTION
from .errors import InvalidInputError
from .input_errors import InvalidInputTypeError

__all__ = ["create_engine", "normalize_url"]


def normalize_url(url: str | URL) -> URL:
    """``postgresql://`` and ``postgres://`` URLs, and libpq's keyword/value strings
    (``host=h dbname=app user=u``), as ``postgresql+asyncpg://`` URLs.

    libpq's forms are read by libpq's rules (:func:`~langgraph_sqlalchemy.conninfo.parse_uri`):
    a percent-encoded socket directory as the host, several hosts, ``?dbname=``; a parameter
    neither libpq nor asyncpg knows is an :class:`InvalidInputError` here, before anything
    connects. A ``service`` (or ``PGSERVICE``) is looked up in the service files now
    (:func:`~langgraph_sqlalchemy.conninfo.resolve_service`), so the URL returned holds its host,
    database and user. Unix-socket URLs (``postgresql://user@/db?host=/run/postgresql``) pass
    through: the asyncpg dialect hands ``host`` to ``asyncpg.connect``, which treats a path as a
    socket directory. libpq's other query parameters stay in the URL; :func:`create_engine`
    sorts them out (:func:`~langgraph_sqlalchemy.conninfo.split_libpq`).
    """
    if isinstance(url, str):
        if is_keyword_value(url):
            return keyword_value_to_url(url)
        if is_uri(url):
            return uri_to_url(url)
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise InvalidInputError(f"not a database URL: {_redact(url)!s}") from exc
    # Read from the scheme itself: URL.get_driver_name() loads the dialect when no driver is
    # named, and SQLAlchemy has no "postgres" dialect (the scheme Heroku and other hosts hand
    # out in DATABASE_URL), so asking it would fail before the rewrite below.
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise InvalidInputError(
            f"langgraph-sqlalchemy needs a PostgreSQL URL, got the {backend!r} backend"
        )
    if driver not in ("", "asyncpg"):
        raise InvalidInputError(
            f"the {driver!r} driver is not supported; use postgresql:// or "
            "postgresql+asyncpg:// (asyncpg is the driver this library runs on)"
        )
    # A URL object (or a postgresql+asyncpg:// string) goes through the same checks, service
    # lookup and host spelling as a libpq string, so every form reaches the same server.
    return conninfo_to_url(resolve_service(url_to_conninfo(parsed)))


def _redact(url: object) -> str:
    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _pool_kwargs(pool_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Map upstream's psycopg ``pool_config`` onto SQLAlchemy's ``QueuePool`` arguments.

    Upstream builds ``AsyncConnectionPool(min_size=pool_config.get("min_size", 1),
    max_size=pool_config.get("max_size"))``, and psycopg's pool reads a ``max_size`` of None as
    ``min_size``: a fixed pool. psycopg's pool opens ``min_size`` connections eagerly and grows
    to ``max_size``. QueuePool opens lazily and keeps ``pool_size`` connections; overflow
    connections are closed when they are returned, which would mean a reconnect per call under
    load. So the largest size psycopg would reach (``max_size``, else ``min_size``) becomes the
    persistent size with no overflow; ``min_size`` has nothing else to map to. The sizes are
    checked as psycopg checks them.
    """
    if pool_config is None:
        return {}
    unknown = set(pool_config) - {"min_size", "max_size", "kwargs"}
    if unknown:
        raise InvalidInputError(f"unknown pool_config keys: {sorted(unknown)}")
    if pool_config.get("kwargs"):
        warnings.warn(
            "pool_config['kwargs'] holds psycopg connection arguments, which do not apply to "
            "asyncpg; they are ignored (pass connect_args= to from_conn_string instead)",
            stacklevel=3,
        )
    min_size = _pool_size(pool_config, "min_size") if "min_size" in pool_config else 1
    if min_size < 0:
        raise InvalidInputError(f"pool_config['min_size'] cannot be negative, got {min_size}")
    if pool_config.get("max_size") is None:
        # psycopg's "max_size = min_size". A min_size of 0 still needs one connection to work
        # with (and QueuePool reads pool_size=0 as "no limit").
        return {"pool_size": max(min_size, 1), "max_overflow": 0}
    max_size = _pool_size(pool_config, "max_size")
    if max_size < 0:
        raise InvalidInputError(f"pool_config['max_size'] cannot be negative, got {max_size}")
    if max_size < min_size:
        raise InvalidInputError(
            f"pool_config['max_size'] ({max_size}) must be greater than or equal to "
            f"pool_config['min_size'] ({min_size})"
        )
    if max_size == 0:  # psycopg refuses a pool that can hold no connection, as QueuePool must
        raise InvalidInputError("pool_config['max_size'] must be greater than 0")
    return {"pool_size": max_size, "max_overflow": 0}


def _pool_size(pool_config: Mapping[str, Any], key: str) -> int:
    value = pool_config[key]
    # bool is an int, and int() would turn 2.5 or "8" into a size nobody asked for: psycopg's
    # pool compares them as given and fails or misbehaves, so they are refused outright.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputTypeError(
            f"pool_config[{key!r}] must be an int, got {type(value).__name__} {value!r}"
        )
    return value


def create_engine(
    url: str | URL,
    *,
    pool_config: Mapping[str, Any] | None = None,
    pgbouncer: bool = False,
    **engine_kwargs: Any,
) -> AsyncEngine:
    """An ``AsyncEngine`` on asyncpg for ``url``.

    ``pgbouncer=True`` is the switch for PgBouncer (and other poolers) in transaction mode: a
    server connection may change between two transactions of one client session, so prepared
    statements must not outlive a transaction. It turns off asyncpg's and SQLAlchemy's statement
    caches, gives every prepared statement a unique name (two clients multiplexed onto one server
    connection never collide on ``__asyncpg_stmt_1__``), and makes this library run every call,
    even a single statement, inside an explicit transaction (outside one, PgBouncer may route
    asyncpg's Parse and its Bind/Execute to different server connections).
    """
    kwargs: dict[str, Any] = {**_pool_kwargs(pool_config), **engine_kwargs}
    normalized = normalize_url(url)
    query, libpq_args = split_libpq(normalized.query)
    if libpq_args:
        # What the caller passes in connect_args wins over what the URL says.
        given = dict(kwargs.pop("connect_args", {}) or {})
        settings = {
            **libpq_args.pop("server_settings", {}),
            **(given.get("server_settings") or {}),
        }
        kwargs["connect_args"] = {**libpq_args, **given}
        if settings:
            kwargs["connect_args"]["server_settings"] = settings
    if pgbouncer:
        connect_args = dict(kwargs.pop("connect_args", {}) or {})
        connect_args.setdefault("statement_cache_size", 0)
        connect_args.setdefault("prepared_statement_cache_size", 0)
        connect_args.setdefault(
            "prepared_statement_name_func", lambda: f"__lgsa_{uuid.uuid4().hex}__"
        )
        kwargs["connect_args"] = connect_args
        # Tells Database to run even single statements in an explicit transaction, the only
        # thing that keeps PgBouncer on one server connection from Parse to Execute.
        options = dict(kwargs.pop("execution_options", {}) or {})
        options[POOLER_OPTION] = True
        kwargs["execution_options"] = options
    return create_async_engine(normalized.set(query=query), **kwargs)
