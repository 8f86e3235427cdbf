"""libpq connection strings, as upstream takes them, turned into what asyncpg takes.

Upstream hands its ``conn_string`` to psycopg, so its users have libpq connection strings in
their configuration: URIs (``postgresql://user@host/db?sslmode=require&application_name=api``)
and keyword/value strings (``host=db.internal dbname=app user=api sslmode=require``). asyncpg
speaks most of libpq's vocabulary, but not all of it, and SQLAlchemy hands a URL's query
parameters to ``asyncpg.connect`` as keyword arguments, where libpq's names mean nothing:
``application_name`` or ``connect_timeout`` in a URL would fail at the first connect. This
module parses both forms and sorts each libpq parameter to where asyncpg understands it.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import URL

from .errors import InvalidInputError

__all__ = [
    "is_keyword_value",
    "keyword_value_to_url",
    "parse_keyword_value",
    "parse_options",
    "split_libpq",
]

# libpq parameters asyncpg reads only from a DSN (it builds its SSL context from them).
_DSN_ONLY = frozenset(
    {
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
    }
)

# libpq parameters asyncpg has no equivalent for: dropped with a warning, as psycopg's own
# pool_config kwargs are (a connection works without them; refusing would break
# configuration that works with upstream).
_NO_EQUIVALENT = frozenset(
    {
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "gssencmode",
        "channel_binding",
        "requirepeer",
        "requiressl",
        "sslcompression",
        "sslcertmode",
        "sslkeylogfile",
        "load_balance_hosts",
        "require_auth",
        "gssdelegation",
        "replication",
        "min_protocol_version",
        "max_protocol_version",
    }
)

_UTF8 = frozenset({"utf8", "utf-8", "unicode", "auto"})


def is_keyword_value(conn_string: str) -> bool:
    """Whether ``conn_string`` is libpq's keyword/value form rather than a URI.

    libpq's own rule: a URI starts with a scheme and ``://``; anything else, the empty string
    included (every parameter from the environment), is keyword/value.
    """
    return re.match(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://", conn_string) is None


def parse_keyword_value(conn_string: str) -> dict[str, str]:
    """``host=h port=5432 password='it''s'`` as a dict, by libpq's rules.

    Whitespace may surround ``=``; a value is single-quoted to hold spaces or be empty, and a
    backslash escapes the next character (``\\'``, ``\\\\``) quoted or not.
    """
    params: dict[str, str] = {}
    i, n = 0, len(conn_string)
    while True:
        while i < n and conn_string[i].isspace():
            i += 1
        if i == n:
            return params
        start = i
        while i < n and not conn_string[i].isspace() and conn_string[i] != "=":
            i += 1
        keyword = conn_string[start:i]
        while i < n and conn_string[i].isspace():
            i += 1
        if i == n or conn_string[i] != "=" or not keyword:
            raise InvalidInputError(
                f"not a connection string: missing '=' after {keyword!r} (expected a "
                "postgresql:// URL or libpq's keyword=value pairs)"
            )
        i += 1
        while i < n and conn_string[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and conn_string[i] == "'":
            i += 1
            while True:
                if i == n:
                    raise InvalidInputError(
                        f"not a connection string: unterminated quoted value for {keyword!r}"
                    )
                ch = conn_string[i]
                if ch == "\\" and i + 1 < n:
                    value.append(conn_string[i + 1])
                    i += 2
                elif ch == "'":
                    i += 1
                    break
                else:
                    value.append(ch)
                    i += 1
        else:
            while i < n and not conn_string[i].isspace():
                if conn_string[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(conn_string[i])
                i += 1
        params[keyword] = "".join(value)


def keyword_value_to_url(conn_string: str) -> URL:
    """A keyword/value connection string as a ``postgresql+asyncpg`` URL.

    ``host``, ``hostaddr``, ``port``, ``user``, ``password`` and ``dbname`` become the URL's
    parts; every other parameter goes into its query, where :func:`split_libpq` finds it, as it
    finds those of a URI. Several hosts (``host=a,b port=5432,5433``) become SQLAlchemy's
    multi-host form; a host that is a path is a Unix-socket directory.
    """
    params = parse_keyword_value(conn_string)
    host = params.pop("host", "") or params.pop("hostaddr", "")
    params.pop("hostaddr", None)
    port = params.pop("port", "")
    user = params.pop("user", None) or None
    password = params.pop("password", None) or None
    database = params.pop("dbname", None) or None
    query: dict[str, str | tuple[str, ...]] = dict(params)
    hosts = host.split(",") if host else []
    ports = port.split(",") if port else []
    if ports and len(ports) not in (1, len(hosts) or 1):
        raise InvalidInputError(
            f"connection string names {len(hosts)} hosts but {len(ports)} ports"
        )
    for p in ports:
        if not p.isdigit():
            raise InvalidInputError(f"connection string: port must be a number, got {port!r}")
    if len(hosts) > 1:
        # SQLAlchemy's asyncpg dialect takes several hosts as repeated ?host=h:p.
        query["host"] = tuple(
            f"{h}:{ports[min(k, len(ports) - 1)]}" if ports else h for k, h in enumerate(hosts)
        )
        hosts = []
    elif hosts and hosts[0].startswith("/"):
        # A socket directory has no place in a URL's authority; the dialect takes it here.
        query["host"] = hosts[0]
        hosts = []
    return URL.create(
        "postgresql+asyncpg",
        username=user,
        password=password,
        host=hosts[0] if hosts else None,
        port=int(ports[0]) if ports and not isinstance(query.get("host"), tuple) else None,
        database=database,
        query=query,
    )


def split_libpq(query: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A URL's query split into what stays in the URL and ``connect_args`` for asyncpg.

    - ``sslmode`` becomes asyncpg's ``ssl`` (which takes libpq's mode names);
    - ``connect_timeout`` becomes ``timeout`` (seconds; ``0``, libpq's "wait forever", keeps
      asyncpg's default);
    - ``application_name`` (or ``fallback_application_name``) and the ``-c name=value`` settings
      of ``options`` become ``server_settings``;
    - the SSL files and protocol bounds, which asyncpg reads only from a DSN, go in a ``dsn``
      that holds nothing else (the URL's host, user and database still win);
    - parameters asyncpg has no equivalent for are dropped with a warning.

    Anything else stays in the URL, for SQLAlchemy's dialect and ``asyncpg.connect``, which
    takes libpq's ``passfile``, ``service``, ``target_session_attrs``, ``krbsrvname`` and
    ``gsslib`` under those very names.
    """
    kept: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    server_settings: dict[str, str] = {}
    dsn_params: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in query.items():
        if name == "sslmode":
            kept.setdefault("ssl", value)
        elif name == "connect_timeout":
            seconds = _seconds(value)
            if seconds:
                connect_args["timeout"] = seconds
        elif name == "application_name":
            server_settings["application_name"] = _single(name, value)
        elif name == "fallback_application_name":
            server_settings.setdefault("application_name", _single(name, value))
        elif name == "options":
            server_settings.update(parse_options(_single(name, value)))
        elif name in _DSN_ONLY:
            dsn_params[name] = _single(name, value)
        elif name == "client_encoding":
            if _single(name, value).lower() not in _UTF8:
                dropped.append(f"{name}={value}")
        elif name in _NO_EQUIVALENT:
            dropped.append(name)
        else:
            kept[name] = value
    if "application_name" in query:  # the explicit one wins over the fallback, in any order
        server_settings["application_name"] = _single("application_name", query["application_name"])
    if server_settings:
        connect_args["server_settings"] = server_settings
    if dsn_params:
        connect_args["dsn"] = "postgresql://?" + urlencode(dsn_params)
    if dropped:
        warnings.warn(
            "connection parameters that asyncpg has no equivalent for are ignored: "
            + ", ".join(sorted(dropped)),
            stacklevel=4,
        )
    return kept, connect_args


def parse_options(options: str) -> dict[str, str]:
    """libpq's ``options`` (``-c search_path=app -c statement_timeout=5s``, also
    ``--name=value``) as server settings. Spaces inside a value are backslash-escaped."""
    words: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(options):
        ch = options[i]
        if ch == "\\" and i + 1 < len(options):
            current.append(options[i + 1])
            i += 2
            continue
        if ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if current:
        words.append("".join(current))
    settings: dict[str, str] = {}
    k = 0
    while k < len(words):
        word = words[k]
        if word == "-c" and k + 1 < len(words):
            setting = words[k + 1]
            k += 2
        elif (word.startswith("-c") and len(word) > 2) or word.startswith("--"):
            setting = word[2:]
            k += 1
        else:
            raise InvalidInputError(
                f"connection option 'options': only '-c name=value' settings are supported, "
                f"got {word!r}"
            )
        name, sep, value = setting.partition("=")
        if not sep or not name:
            raise InvalidInputError(
                f"connection option 'options': expected name=value, got {setting!r}"
            )
        settings[name.replace("-", "_")] = value
    return settings


def _single(name: str, value: Any) -> str:
    if isinstance(value, tuple):  # a query parameter given twice: libpq keeps the last
        value = value[-1]
    return str(value)


def _seconds(value: Any) -> float:
    text = _single("connect_timeout", value)
    try:
        seconds = float(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"connection option connect_timeout must be a number of seconds, got {text!r}"
        ) from exc
    if math.isnan(seconds):
        raise InvalidInputError(
            f"connection option connect_timeout must be a number of seconds, got {text!r}"
        )
    # libpq: zero or negative means no limit (asyncpg's own default then applies); a limit
    # under 2 seconds is raised to 2.
    if seconds <= 0 or math.isinf(seconds):
        return 0.0
    return max(seconds, 2.0)
