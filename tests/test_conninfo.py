"""libpq connection strings, as upstream takes them (``conninfo``): both forms, every parameter
sorted to where asyncpg understands it, checked on the real server by what the session sees.

Upstream passes its ``conn_string`` to psycopg, so ``host=... dbname=...`` strings and URIs with
``application_name``, ``connect_timeout`` or ``options`` work there; they must work here too.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from sqlalchemy import text
from sqlalchemy.engine import make_url

from graphs import build_linear_graph
from langgraph_sqlalchemy import (
    AsyncSQLAlchemySaver,
    AsyncSQLAlchemyStore,
    InvalidInputError,
    SQLAlchemySaver,
)
from langgraph_sqlalchemy.conninfo import parse_keyword_value, parse_options
from langgraph_sqlalchemy.engine import create_engine, normalize_url


def keyword_value(url: str, **extra: str) -> str:
    """The test database's URL in libpq's keyword/value form (quoting every value)."""
    parsed = make_url(url)
    params = {
        "host": parsed.host or str(parsed.query.get("host", "")),
        "port": str(parsed.port or parsed.query.get("port", "") or ""),
        "dbname": parsed.database or "",
        "user": parsed.username or "",
        "password": parsed.password or "",
        **extra,
    }

    def quote(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{k}={quote(v)}" for k, v in params.items() if v)


async def session_settings(saver_or_store: Any) -> Any:
    async with saver_or_store.db.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT current_database(), current_setting('application_name'), "
                    "current_setting('statement_timeout'), current_setting('search_path')"
                )
            )
        ).one()


# --- parsing, by libpq's rules ---------------------------------------------------------------


def test_keyword_value_parsing_follows_libpq() -> None:
    assert parse_keyword_value("host=h  port = 5433\tdbname=app") == {
        "host": "h",
        "port": "5433",
        "dbname": "app",
    }
    assert parse_keyword_value(r"password='it\'s a \\secret' user=''") == {
        "password": "it's a \\secret",
        "user": "",
    }
    assert parse_keyword_value(r"password=no\ space") == {"password": "no space"}
    assert parse_keyword_value("") == {}
    for bad, reason in [
        ("host", "missing '='"),
        ("host=h dbname", "missing '='"),
        ("password='open", "unterminated"),
    ]:
        with pytest.raises(InvalidInputError, match=reason):
            parse_keyword_value(bad)


def test_options_become_server_settings() -> None:
    assert parse_options("-c search_path=app,public -c statement_timeout=5s") == {
        "search_path": "app,public",
        "statement_timeout": "5s",
    }
    assert parse_options(r"-cwork_mem=64MB --lock-timeout=1s -c application_name=a\ b") == {
        "work_mem": "64MB",
        "lock_timeout": "1s",
        "application_name": "a b",
    }
    with pytest.raises(InvalidInputError, match="only '-c name=value'"):
        parse_options("-d 5")
    with pytest.raises(InvalidInputError, match="expected name=value"):
        parse_options("-c statement_timeout")


def test_keyword_value_strings_become_asyncpg_urls() -> None:
    url = normalize_url("host=db.internal port=6432 dbname=app user=api password='p w'")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.database, url.username, url.password) == (
        "db.internal", 6432, "app", "api", "p w",
    )
    socket = normalize_url("host=/run/postgresql dbname=app")
    assert socket.host is None and socket.query["host"] == "/run/postgresql"
    several = normalize_url("host=a,b port=5432,5433 dbname=app")
    assert several.query["host"] == ("a:5432", "b:5433")
    with pytest.raises(InvalidInputError, match="port must be a number"):
        normalize_url("host=h port=fifty")
    with pytest.raises(InvalidInputError, match="2 hosts but 3 ports"):
        normalize_url("host=a,b port=1,2,3")


@pytest.mark.parametrize(
    ("conn_string", "match"),
    [
        ("postgresql://u@h/db?connect_timeout=soon", "connect_timeout"),
        ("postgresql://u@h/db?connect_timeout=nan", "connect_timeout"),
        ("host=h options='-x'", "options"),
    ],
)
def test_bad_parameters_are_refused_before_any_connection(conn_string: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        create_engine(conn_string)


def test_parameters_without_an_asyncpg_equivalent_are_dropped_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="keepalives, tcp_user_timeout"):
        engine = create_engine(
            "postgresql://u@h/db?keepalives=1&tcp_user_timeout=500&client_encoding=utf8"
        )
    assert "keepalives" not in engine.url.query
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_engine("postgresql://u@h/db?client_encoding=UTF8")  # what asyncpg speaks anyway
    with pytest.warns(UserWarning, match="client_encoding=latin1"):
        create_engine("postgresql://u@h/db?client_encoding=latin1")


# --- on the real server ----------------------------------------------------------------------


async def test_a_keyword_value_string_opens_the_saver_and_the_store(database_url: str) -> None:
    name = f"kv-{uuid.uuid4().hex[:8]}"
    conn_string = keyword_value(
        database_url, application_name=name, options="-c statement_timeout=4321ms"
    )
    async with AsyncSQLAlchemySaver.from_conn_string(conn_string) as saver:
        database, app, timeout, _ = await session_settings(saver)
        assert (database, app, timeout) == (make_url(database_url).database, name, "4321ms")
        graph = build_linear_graph().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": name}}
        await graph.ainvoke({"trail": []}, config)
    async with AsyncSQLAlchemyStore.from_conn_string(conn_string) as store:
        assert (await session_settings(store))[1] == name
        await store.aput(("kv",), "k", {"v": 1})
        assert (await store.aget(["kv"], "k")).value == {"v": 1}
    # Upstream reads what ours wrote, given the very same string.
    async with AsyncPostgresSaver.from_conn_string(conn_string) as upstream:
        assert (await upstream.aget_tuple(config)) is not None


async def test_libpq_parameters_in_a_uri_reach_the_session(database_url: str) -> None:
    parsed = make_url(database_url)
    query = {
        **parsed.query,
        "application_name": "from-the-uri",
        "fallback_application_name": "not-this",
        "connect_timeout": "5",
        "options": "-c search_path=public -c statement_timeout=9s",
        "target_session_attrs": "read-write",
        "sslmode": "disable",
    }
    uri = parsed.set(query=query).render_as_string(hide_password=False)
    async with AsyncSQLAlchemySaver.from_conn_string(uri) as saver:
        assert tuple(await session_settings(saver))[1:] == ("from-the-uri", "9s", "public")
        assert saver.db.engine.url.query.get("ssl") == "disable"


def test_the_sync_saver_takes_a_keyword_value_string(database_url: str) -> None:
    conn_string = keyword_value(database_url, fallback_application_name="sync-kv")
    with SQLAlchemySaver.from_conn_string(conn_string) as saver:
        graph = build_linear_graph().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": f"sync-kv-{uuid.uuid4().hex[:8]}"}}
        graph.invoke({"trail": []}, config)
        assert len(list(saver.list(config))) == 5


async def test_connect_args_given_win_over_the_strings(database_url: str) -> None:
    uri = make_url(database_url).update_query_dict(
        {"application_name": "from-uri", "options": "-c statement_timeout=3s"}
    )
    engine = create_engine(
        uri, connect_args={"server_settings": {"application_name": "from-args"}}
    )
    try:
        async with engine.connect() as conn:
            app, timeout = (
                await conn.execute(
                    text(
                        "SELECT current_setting('application_name'), "
                        "current_setting('statement_timeout')"
                    )
                )
            ).one()
        assert (app, timeout) == ("from-args", "3s")
    finally:
        await engine.dispose()
