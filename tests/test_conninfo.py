"""libpq connection strings, as upstream takes them (``conninfo``): both forms, every parameter
sorted to where asyncpg understands it, checked on the real server by what the session sees.

Upstream passes its ``conn_string`` to psycopg, so ``host=... dbname=...`` strings and URIs with
``application_name``, ``connect_timeout`` or ``options`` work there; they must work here too, and
reach the same server and database psycopg reaches (URI forms, ``service`` files), checked by
connecting both. Also: upstream's ``pool_config``, read as psycopg's pool reads it.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
import sqlalchemy.exc
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.engine import make_url

from graphs import build_linear_graph
from langgraph_sqlalchemy import (
    AsyncSQLAlchemySaver,
    AsyncSQLAlchemyStore,
    InvalidInputError,
    SQLAlchemySaver,
    SQLAlchemyStore,
)
from langgraph_sqlalchemy.conninfo import parse_keyword_value, parse_options, parse_uri
from langgraph_sqlalchemy.engine import _pool_kwargs, create_engine, normalize_url
from langgraph_sqlalchemy.input_errors import InvalidInputTypeError


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
    assert (several.query["host"], several.query["port"]) == ("a,b", "5432,5433")
    one_port = normalize_url("host=a,b port=6432 dbname=app")  # libpq: one port for every host
    assert one_port.query["port"] == "6432,6432"
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
    # Percent-encoded as libpq reads a URI: SQLAlchemy's rendering writes a space as '+', which
    # libpq (and so psycopg, and we) read as a plus.
    uri = parsed.set(query={}).render_as_string(hide_password=False) + "?" + urlencode(
        query, quote_via=quote
    )
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


# --- URIs, by libpq's rules --------------------------------------------------------------------


def test_uris_are_parsed_by_libpqs_rules() -> None:
    assert parse_uri("postgresql://u:p%40ss@%2Fvar%2Frun%2Fpostgresql/my%20db") == {
        "user": "u",
        "password": "p@ss",
        "host": "/var/run/postgresql",
        "dbname": "my db",
    }
    assert parse_uri("postgresql://h1:5432,[::1]:5433,h3/db") == {
        "host": "h1,::1,h3",
        "port": "5432,5433,",
        "dbname": "db",
    }
    # The query overrides the part it names; '+' is a plus; ssl=true is sslmode=require.
    assert parse_uri("postgres://u@h/db?dbname=other&application_name=a+b&ssl=true&") == {
        "user": "u",
        "host": "h",
        "dbname": "other",
        "application_name": "a+b",
        "sslmode": "require",
    }
    assert parse_uri("postgresql://") == {}
    for bad, reason in [
        ("postgresql://h/db?x", 'missing key/value separator "=" in URI query parameter: "x"'),
        ("postgresql://h/db?a=%zz", "invalid percent-encoding"),
        ("postgresql://h/db?a=%00", "forbidden value %00"),
        ("postgresql://[::1/db", "no ']'"),
        ("postgresql://u:s%zcret@h/db", "encoding in the password$"),  # not the password
    ]:
        with pytest.raises(InvalidInputError, match=reason):
            parse_uri(bad)


def test_the_uri_forms_psycopg_accepts_become_asyncpg_urls() -> None:
    socket = normalize_url("postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/db")
    assert (socket.host, socket.query["host"], socket.database) == (
        None,
        "/var/run/postgresql",
        "db",
    )
    several = normalize_url("postgresql://u@h1:5432,h2:5433/db")
    assert (several.query["host"], several.query["port"], several.database) == (
        "h1,h2",
        "5432,5433",
        "db",
    )
    in_query = normalize_url("postgresql://u@h:5432/?dbname=db")
    assert (in_query.host, in_query.port, in_query.database) == ("h", 5432, "db")
    # SQLAlchemy's own multi-host spelling, and a URL object, read the same way.
    assert normalize_url("postgresql+asyncpg://u@/db?host=h1:5432&host=h2:5433") == several
    assert normalize_url(make_url("postgresql://u@h:5432/?dbname=db")) == in_query
    assert normalize_url(several) == several  # normalizing twice changes nothing


@pytest.mark.parametrize(
    ("conn_string", "match"),
    [
        ("postgresql://u@h/db?foo=bar", 'invalid URI query parameter: "foo"'),
        ("postgres://u@h/db?sslmode=require&foo=bar", 'invalid URI query parameter: "foo"'),
        ("host=h foo=bar", 'invalid connection option "foo"'),
        ("postgresql+asyncpg://u@h/db?foo=bar", 'invalid URL query parameter: "foo"'),
    ],
)
def test_an_unknown_parameter_is_refused_by_name_before_any_connection(
    conn_string: str, match: str
) -> None:
    # psycopg refuses them as it parses, without connecting; so do we, on translation.
    if not conn_string.startswith("postgresql+asyncpg"):
        with pytest.raises(psycopg.ProgrammingError, match='"foo"'):
            psycopg.conninfo.conninfo_to_dict(conn_string)
    with pytest.raises(InvalidInputError, match=match):
        normalize_url(conn_string)
    with pytest.raises(InvalidInputError, match=match):
        create_engine(conn_string)


async def test_the_classes_refuse_an_unknown_parameter_before_connecting() -> None:
    # Port 1 on a host that does not resolve: any connection attempt would fail differently.
    url = "postgresql://u@nowhere.invalid:1/db?foo=bar"
    with pytest.raises(InvalidInputError, match='"foo"'):
        async with AsyncSQLAlchemySaver.from_conn_string(url):
            pass
    with pytest.raises(InvalidInputError, match='"foo"'):
        async with AsyncSQLAlchemyStore.from_conn_string(url):
            pass
    with pytest.raises(InvalidInputError, match='"foo"'), SQLAlchemySaver.from_conn_string(url):
        pass


# --- service files -----------------------------------------------------------------------------


def write_service_file(path: Path, sections: dict[str, dict[str, str]]) -> Path:
    lines = ["# written by the test", ""]
    for name, params in sections.items():
        lines += [f"[{name}]", *(f"{k}={v}" for k, v in params.items()), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No service setting of the machine's leaks in: home, system directory and variables are
    the test's own (empty) ones."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PGSYSCONFDIR", str(tmp_path / "sysconf"))
    monkeypatch.delenv("PGSERVICEFILE", raising=False)
    monkeypatch.delenv("PGSERVICE", raising=False)
    return monkeypatch


def test_service_files_are_looked_up_as_libpq_does(
    service_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home_file = write_service_file(
        tmp_path / "home" / ".pg_service.conf", {"app": {"host": "from-home", "dbname": "a"}}
    )
    (tmp_path / "sysconf").mkdir()
    write_service_file(
        tmp_path / "sysconf" / "pg_service.conf",
        {"app": {"host": "from-sysconf"}, "sys": {"host": "sys-only", "port": "6432"}},
    )
    # ~/.pg_service.conf first; the system-wide file for a service it does not have.
    assert normalize_url("service=app").host == "from-home"
    assert (normalize_url("service=sys").host, normalize_url("service=sys").port) == (
        "sys-only",
        6432,
    )
    # PGSERVICEFILE replaces the home file; a missing one falls through to the system file.
    own = write_service_file(tmp_path / "own.conf", {"app": {"host": "from-own"}})
    service_env.setenv("PGSERVICEFILE", str(own))
    assert normalize_url("postgresql:///?service=app").host == "from-own"
    service_env.setenv("PGSERVICEFILE", str(tmp_path / "missing.conf"))
    assert normalize_url("postgresql:///?service=app").host == "from-sysconf"
    # servicefile (asyncpg's parameter) wins over PGSERVICEFILE.
    assert normalize_url(f"service=app servicefile={home_file}").host == "from-home"
    # PGSERVICE applies when the string names no service; explicit parts win over the service.
    service_env.setenv("PGSERVICE", "sys")
    url = normalize_url("postgresql://me@/explicit")
    assert (url.host, url.port, url.username, url.database) == ("sys-only", 6432, "me", "explicit")
    assert "service" not in url.query and "servicefile" not in url.query


def test_service_file_contents_follow_libpqs_rules(
    service_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pg_service.conf"
    service_env.setenv("PGSERVICEFILE", str(path))
    path.write_text(
        "[app]\n  host = h1\nhost=h2\napplication_name=from-service\n[app]\nhost=h3\n",
        encoding="utf-8",
    )
    url = normalize_url("service=app")  # the first section and the first value of a name
    assert (url.host, url.query["application_name"]) == ("h1", "from-service")
    for body, reason in [
        ("[app]\nhost\n", "syntax error in service file .*, line 2"),
        ("[app]\nfoo=bar\n", 'unknown parameter "foo"'),
        ("[app]\nservice=other\n", 'nested "service"'),
        ("[other]\nfoo=bar\n[app]\nhost=h\n\n# comment\nbaz\n", "line 7"),
    ]:
        path.write_text(body, encoding="utf-8")
        with pytest.raises(InvalidInputError, match=reason):
            normalize_url("service=app")


@pytest.mark.parametrize(
    "conn_string", ["postgresql:///?service=nope", "service=nope host=127.0.0.1"]
)
def test_a_service_that_is_not_found_is_an_error_naming_the_files(
    service_env: pytest.MonkeyPatch, tmp_path: Path, conn_string: str
) -> None:
    path = write_service_file(tmp_path / "pg_service.conf", {"audit": {"host": "h"}})
    service_env.setenv("PGSERVICEFILE", str(path))
    with pytest.raises(InvalidInputError) as caught:
        create_engine(conn_string)
    message = str(caught.value)
    assert 'service "nope" not found' in message
    assert f'"{path}"' in message
    assert f'"{tmp_path / "sysconf" / "pg_service.conf"}" (no such file)' in message
    # psycopg refuses to connect too, rather than connect to the defaults.
    with pytest.raises(psycopg.OperationalError, match='service "nope" not found'):
        psycopg.connect(conn_string)


# --- on the real server: where each form connects ------------------------------------------------

_WHERE = text(
    "SELECT current_database(), current_user, inet_server_addr() IS NULL AS on_socket, "
    "current_setting('port')"
)


async def where_we_land(conn_string: str) -> tuple[Any, ...]:
    engine = create_engine(conn_string)
    try:
        async with engine.connect() as conn:
            return tuple((await conn.execute(_WHERE)).one())
    finally:
        await engine.dispose()


async def where_psycopg_lands(conn_string: str) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(conn_string) as conn:
        row = await (await conn.execute(_WHERE.text)).fetchone()
        assert row is not None
        return tuple(row)


async def lands_like_psycopg(conn_string: str) -> tuple[Any, ...]:
    """Where our engine lands for ``conn_string``, checked to be where psycopg lands."""
    landed = await where_we_land(conn_string)
    assert landed == await where_psycopg_lands(conn_string), conn_string
    return landed


async def server_endpoint(database_url: str) -> tuple[str, str, str | None]:
    """(user, the server's port, a socket directory of it or None), read from the server."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            dirs, port = (
                await conn.execute(
                    text(
                        "SELECT current_setting('unix_socket_directories'), "
                        "current_setting('port')"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    user = make_url(database_url).username or "postgres"
    socket_dir = next((d.strip() for d in dirs.split(",") if d.strip().startswith("/")), None)
    return user, port, socket_dir


def authority(database_url: str, port: str) -> str:
    """The URI authority (host[:port]) of the test server, as libpq writes it."""
    parsed = make_url(database_url)
    if parsed.host:
        return f"{parsed.host}:{parsed.port or 5432}"
    return f"{quote(str(parsed.query['host']), safe='')}:{port}"


async def test_a_service_reaches_its_database(
    empty_url: str, service_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user, port, _ = await server_endpoint(empty_url)
    target = make_url(empty_url)
    database = target.database
    host = target.host or str(target.query["host"])
    path = write_service_file(
        tmp_path / "pg_service.conf",
        {
            "other": {"dbname": "postgres"},
            "audit": {"host": host, "port": port, "dbname": str(database), "user": user},
        },
    )
    service_env.setenv("PGSERVICEFILE", str(path))
    for conn_string in ["postgresql:///?service=audit", "service=audit"]:
        landed = await lands_like_psycopg(conn_string)
        assert landed[:2] == (database, user), conn_string
    # Explicit parts win over the service's, for us as for psycopg.
    for conn_string in ["postgresql:///postgres?service=audit", "service=audit dbname=postgres"]:
        landed = await lands_like_psycopg(conn_string)
        assert landed[0] == "postgres"
    # The classes take it too, and PGSERVICE stands in for a service the string does not name.
    service_env.setenv("PGSERVICE", "audit")
    async with AsyncSQLAlchemySaver.from_conn_string("postgresql://") as saver:
        assert (await session_settings(saver))[0] == database
    async with AsyncSQLAlchemyStore.from_conn_string("") as store:
        assert (await session_settings(store))[0] == database


async def test_a_percent_encoded_socket_directory_is_the_host(database_url: str) -> None:
    user, port, socket_dir = await server_endpoint(database_url)
    if socket_dir is None:
        pytest.skip("the server listens on no Unix socket")
    database = make_url(database_url).database
    # The brief's exact form when the server runs on the default port.
    port_part = "" if port == "5432" else f":{port}"
    conn_string = f"postgresql://{user}@{quote(socket_dir, safe='')}{port_part}/{database}"
    landed = await lands_like_psycopg(conn_string)
    assert landed[:3] == (database, user, True)


async def test_several_hosts_in_a_uri_are_tried_in_order(database_url: str) -> None:
    user, port, _ = await server_endpoint(database_url)
    database = make_url(database_url).database
    # Nothing listens on port 1: the first host refuses, the second is the server.
    conn_string = f"postgresql://{user}@127.0.0.1:1,{authority(database_url, port)}/{database}"
    landed = await lands_like_psycopg(conn_string)
    assert landed[:2] == (database, user)


async def test_dbname_in_the_query_names_the_database(database_url: str) -> None:
    user, port, _ = await server_endpoint(database_url)
    database = make_url(database_url).database
    conn_string = f"postgresql://{user}@{authority(database_url, port)}/?dbname={database}"
    landed = await lands_like_psycopg(conn_string)
    assert landed[:2] == (database, user)
    # The query wins over the path, as in libpq.
    overridden = f"postgresql://{user}@{authority(database_url, port)}/postgres?dbname={database}"
    assert (await where_we_land(overridden))[0] == database


# --- pool_config, as psycopg's pool reads it ----------------------------------------------------


def test_pool_config_sizes_follow_psycopgs_pool() -> None:
    assert _pool_kwargs(None) == {}
    # psycopg: max_size None means max_size = min_size (upstream's min_size defaults to 1).
    assert _pool_kwargs({}) == {"pool_size": 1, "max_overflow": 0}
    assert _pool_kwargs({"min_size": 4}) == {"pool_size": 4, "max_overflow": 0}
    assert _pool_kwargs({"min_size": 4, "max_size": None}) == {"pool_size": 4, "max_overflow": 0}
    assert _pool_kwargs({"min_size": 0}) == {"pool_size": 1, "max_overflow": 0}
    assert _pool_kwargs({"min_size": 2, "max_size": 9}) == {"pool_size": 9, "max_overflow": 0}
    assert _pool_kwargs({"max_size": 3}) == {"pool_size": 3, "max_overflow": 0}


@pytest.mark.parametrize(
    ("pool_config", "error", "match"),
    [
        ({"min_size": 5, "max_size": 2}, InvalidInputError, "greater than or equal to"),
        ({"max_size": 0}, InvalidInputError, "greater than or equal to"),
        ({"min_size": 0, "max_size": 0}, InvalidInputError, "greater than 0"),
        ({"min_size": -1}, InvalidInputError, "cannot be negative"),
        ({"min_size": -3, "max_size": -2}, InvalidInputError, "cannot be negative"),
        ({"max_size": True}, InvalidInputTypeError, "must be an int, got bool"),
        ({"min_size": 2.5}, InvalidInputTypeError, "must be an int, got float"),
        ({"max_size": "8"}, InvalidInputTypeError, "must be an int, got str"),
        ({"min_size": None}, InvalidInputTypeError, "must be an int, got NoneType"),
    ],
)
async def test_bad_pool_config_is_refused_as_psycopg_refuses_it(
    pool_config: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        create_engine("postgresql://u@h/db", pool_config=pool_config)
    # The builtin types upstream's callers catch.
    expected = TypeError if error is InvalidInputTypeError else ValueError
    with pytest.raises(expected):
        _pool_kwargs(pool_config)
    if expected is ValueError:  # psycopg's pool refuses the same sizes
        with pytest.raises(ValueError):
            AsyncConnectionPool(
                "postgresql://u@h/db",
                min_size=pool_config.get("min_size", 1),
                max_size=pool_config.get("max_size"),
                open=False,
            )


async def test_a_pool_config_without_max_size_is_a_fixed_pool(database_url: str) -> None:
    engine = create_engine(database_url, pool_config={"min_size": 2}, pool_timeout=0.2)
    try:
        async with engine.connect(), engine.connect():
            # No overflow: a third connection waits, and times out, as psycopg's pool would.
            with pytest.raises(sqlalchemy.exc.TimeoutError):
                async with engine.connect():
                    pass
        assert engine.pool.size() == 2
    finally:
        await engine.dispose()
    with pytest.raises(ValueError, match="greater than or equal to"):
        async with AsyncSQLAlchemyStore.from_conn_string(
            database_url, pool_config={"min_size": 3, "max_size": 1}
        ):
            pass
    with (
        pytest.raises(TypeError, match="must be an int"),
        SQLAlchemyStore.from_conn_string(database_url, pool_config={"max_size": 2.0}),
    ):
        pass
