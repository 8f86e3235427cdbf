"""libpq connection strings, as upstream takes them, turned into what asyncpg takes.

Upstream hands its ``conn_string`` to psycopg, so its users have libpq connection strings in
their configuration: URIs (``postgresql://user@host/db?sslmode=require&application_name=api``)
and keyword/value strings (``host=db.internal dbname=app user=api sslmode=require``). asyncpg
speaks most of libpq's vocabulary, but not all of it, and SQLAlchemy hands a URL's query
parameters to ``asyncpg.connect`` as keyword arguments, where libpq's names mean nothing:
``application_name`` or ``connect_timeout`` in a URL would fail at the first connect. This
module parses both forms by libpq's rules into libpq's parameters (:func:`parse_uri`,
:func:`parse_keyword_value`), resolves a ``service`` from the service files as libpq does
(:func:`resolve_service`), builds the ``postgresql+asyncpg`` URL (:func:`conninfo_to_url`) and
sorts each remaining libpq parameter to where asyncpg understands it (:func:`split_libpq`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import URL

from .errors import InvalidInputError

__all__ = [
    "LIBPQ_KEYWORDS",
    "conninfo_to_url",
    "is_keyword_value",
    "is_uri",
    "keyword_value_to_url",
    "parse_keyword_value",
    "parse_options",
    "parse_uri",
    "resolve_service",
    "split_libpq",
    "uri_to_url",
    "url_to_conninfo",
]

# Every connection parameter libpq 18 knows (PQconndefaults). libpq refuses any other name, in a
# URI's query ('invalid URI query parameter') as in a keyword/value string, and so do we: an
# unknown name would otherwise reach asyncpg.connect as a keyword argument and fail only at
# the first connect, with a message that does not say which part of the string is wrong.
LIBPQ_KEYWORDS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "dbname",
        "fallback_application_name",
        "gssdelegation",
        "gssencmode",
        "gsslib",
        "host",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "load_balance_hosts",
        "max_protocol_version",
        "min_protocol_version",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_issuer",
        "oauth_scope",
        "options",
        "passfile",
        "password",
        "port",
        "replication",
        "require_auth",
        "requirepeer",
        "scram_client_key",
        "scram_server_key",
        "service",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcert",
        "sslcertmode",
        "sslcompression",
        "sslcrl",
        "sslcrldir",
        "sslkey",
        "sslkeylogfile",
        "sslmode",
        "sslnegotiation",
        "sslpassword",
        "sslrootcert",
        "sslsni",
        "target_session_attrs",
        "tcp_user_timeout",
        "user",
    }
)

# asyncpg's own names, which a URL could always carry to asyncpg.connect through SQLAlchemy and
# so still may (``database`` is read as ``dbname``; ``servicefile`` is asyncpg's, and we honour
# it when we read the service files). ``prepared_statement_cache_size`` is SQLAlchemy's dialect's.
_ASYNCPG_KEYWORDS = frozenset(
    {
        "command_timeout",
        "database",
        "direct_tls",
        "max_cacheable_statement_size",
        "max_cached_statement_lifetime",
        "prepared_statement_cache_size",
        "servicefile",
        "ssl",
        "statement_cache_size",
        "timeout",
    }
)

_ACCEPTED = LIBPQ_KEYWORDS | _ASYNCPG_KEYWORDS

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
        "sslcrldir",
        "sslkeylogfile",
        "load_balance_hosts",
        "require_auth",
        "gssdelegation",
        "replication",
        "min_protocol_version",
        "max_protocol_version",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_issuer",
        "oauth_scope",
        "scram_client_key",
        "scram_server_key",
    }
)

_UTF8 = frozenset({"utf8", "utf-8", "unicode", "auto"})

# Where psycopg's libpq (the binary wheel, and Debian's) looks for the system-wide service file
# when PGSYSCONFDIR is not set: its compiled-in SYSCONFDIR.
_DEFAULT_SYSCONFDIR = "/etc/postgresql-common"

_URI_PREFIXES = ("postgresql://", "postgres://")


def is_keyword_value(conn_string: str) -> bool:
    """Whether ``conn_string`` is libpq's keyword/value form rather than a URI.

    libpq's own rule: a URI starts with a scheme and ``://``; anything else, the empty string
    included (every parameter from the environment), is keyword/value.
    """
    return re.match(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://", conn_string) is None


def is_uri(conn_string: str) -> bool:
    """Whether ``conn_string`` is a libpq URI (``postgresql://`` or ``postgres://``), which
    :func:`parse_uri` reads; ``postgresql+asyncpg://`` is SQLAlchemy's form, not libpq's."""
    return conn_string.strip().startswith(_URI_PREFIXES)


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


def parse_uri(conn_string: str) -> dict[str, str]:
    """A ``postgresql://`` URI as libpq's parameters, by libpq's rules (``conninfo_uri_parse``).

    ``postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname][?name=value&...]``:
    every part is percent-decoded (``%2Frun%2Fpostgresql`` is a socket directory; ``+`` is a
    plus), an IPv6 address is bracketed, several hosts are comma-separated and their ports
    gathered as libpq gathers them (``port=5432,5433``), and a query parameter overrides the part
    it names (``?dbname=app``, ``?host=/run/postgresql``). ``ssl=true`` is libpq's JDBC spelling
    of ``sslmode=require``. A name that is neither libpq's nor asyncpg's is refused here, as
    libpq refuses it, before anything connects.
    """
    text = conn_string.strip()
    prefix = next((p for p in _URI_PREFIXES if text.startswith(p)), None)
    if prefix is None:
        raise InvalidInputError("not a postgresql:// or postgres:// URI")
    rest = text[len(prefix) :]
    params: dict[str, str] = {}

    # Credentials: libpq looks for '@' before the first '/', so a '?' does not end the search.
    at = re.match(r"[^@/]*@", rest)
    if at is not None:
        credentials, rest = rest[: at.end() - 1], rest[at.end() :]
        user, colon, password = credentials.partition(":")
        if user:
            params["user"] = _uri_decode(user, "user name")
        if colon and password:
            params["password"] = _uri_decode(password, "password")

    hosts: list[str] = []
    ports: list[str] = []
    any_port = False
    while True:
        if rest.startswith("["):
            close = rest.find("]")
            if close == -1:
                raise InvalidInputError(
                    "connection URI: no ']' after the '[' of an IPv6 host address"
                )
            if close == 1:
                raise InvalidInputError("connection URI: an IPv6 host address may not be empty")
            host, rest = rest[1:close], rest[close + 1 :]
            if rest and rest[0] not in ":/?,":
                raise InvalidInputError(
                    f"connection URI: unexpected {rest[0]!r} after an IPv6 host address "
                    "(expected ':', '/', '?' or ',')"
                )
        else:
            end = re.match(r"[^:/?,]*", rest)
            assert end is not None  # the pattern matches the empty string
            host, rest = rest[: end.end()], rest[end.end() :]
        port = ""
        if rest.startswith(":"):
            end = re.match(r"[^/?,]*", rest[1:])
            assert end is not None
            port, rest = rest[1 : end.end() + 1], rest[end.end() + 1 :]
            any_port = True
        hosts.append(host)
        ports.append(port)
        if not rest.startswith(","):
            break
        rest = rest[1:]
    host_list = ",".join(hosts)
    if host_list.strip(","):
        params["host"] = _uri_decode(host_list, "host")
    if any_port:
        params["port"] = _uri_decode(",".join(ports), "port")

    if rest.startswith("/"):
        database, question, query = rest[1:].partition("?")
        if database:
            # libpq leaves an empty path unset, so PGDATABASE (then the user name) applies.
            params["dbname"] = _uri_decode(database, "database name")
    elif rest.startswith("?"):
        question, query = "?", rest[1:]
    else:
        question, query = "", ""
    if question:
        items = query.split("&") if query else []
        if items and not items[-1]:
            items.pop()  # libpq ends at a trailing '&'
        for item in items:
            # libpq refuses a second '=' in a parameter; a value such as options=-c x=y is
            # unambiguous though, so the first '=' splits.
            name, equals, value = item.partition("=")
            if not equals:
                raise InvalidInputError(
                    f'missing key/value separator "=" in URI query parameter: "{name}"'
                )
            name = _uri_decode(name, "query parameter name")
            value = _uri_decode(value, f'query parameter "{name}"')
            if name == "ssl" and value == "true":
                name, value = "sslmode", "require"
            if name not in _ACCEPTED:
                raise InvalidInputError(
                    f'invalid URI query parameter: "{name}" (neither a libpq connection '
                    "parameter nor an asyncpg one)"
                )
            _store(params, name, value)
    return params


def _uri_decode(text: str, what: str) -> str:
    """libpq's percent-decoding (no ``+`` for space); the value itself is never in the message,
    since it may be a password."""
    if "%" not in text:
        return text
    decoded = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            digits = text[i + 1 : i + 3]
            if len(digits) != 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise InvalidInputError(f"connection URI: invalid percent-encoding in the {what}")
            if digits == "00":
                raise InvalidInputError(f"connection URI: forbidden value %00 in the {what}")
            decoded.append(int(digits, 16))
            i += 3
        else:
            decoded += text[i].encode("utf-8")
            i += 1
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"connection URI: the {what} is not UTF-8 once percent-decoded"
        ) from exc


def _store(params: dict[str, str], name: str, value: str) -> None:
    # asyncpg's name for the database, accepted as SQLAlchemy URLs always passed it through.
    params["dbname" if name == "database" else name] = value


def _check_keywords(params: Mapping[str, str]) -> None:
    for name in params:
        if name not in _ACCEPTED:
            raise InvalidInputError(
                f'invalid connection option "{name}" (neither a libpq connection parameter '
                "nor an asyncpg one)"
            )


def resolve_service(params: Mapping[str, str]) -> dict[str, str]:
    """``params`` with the parameters of their ``service`` (or of ``PGSERVICE``) filled in.

    As libpq does: the service's section is looked up first in ``servicefile`` (asyncpg's
    parameter), else the file ``PGSERVICEFILE`` names, else ``~/.pg_service.conf``; when that file
    is missing or has no such section, in ``pg_service.conf`` of ``PGSYSCONFDIR`` (libpq's
    compiled-in directory, ``/etc/postgresql-common`` for psycopg's, when it is not set). A
    parameter given explicitly wins over the service's; the environment (``PGHOST``, ...) only
    fills what both leave unset. A service found nowhere is an :class:`InvalidInputError` naming
    the files looked in: libpq refuses to connect then, and so must we, rather than connect to
    the defaults.
    """
    merged = dict(params)
    service = merged.pop("service", None)
    service_file = merged.pop("servicefile", None)
    if service is None:
        service = os.environ.get("PGSERVICE")
    if not service:
        return merged
    candidates: list[Path] = []
    if service_file:
        candidates.append(Path(service_file))
    elif os.environ.get("PGSERVICEFILE"):
        candidates.append(Path(os.environ["PGSERVICEFILE"]))
    else:
        # Without a home directory libpq skips to the system-wide file.
        with contextlib.suppress(RuntimeError):
            candidates.append(Path.home() / ".pg_service.conf")
    candidates.append(
        Path(os.environ.get("PGSYSCONFDIR") or _DEFAULT_SYSCONFDIR) / "pg_service.conf"
    )
    looked: list[str] = []
    for path in candidates:
        if not path.exists():
            looked.append(f'"{path}" (no such file)')
            continue
        looked.append(f'"{path}"')
        found = _read_service(path, service)
        if found is not None:
            for name, value in found.items():
                merged.setdefault("dbname" if name == "database" else name, value)
            return merged
    raise InvalidInputError(
        f'definition of service "{service}" not found; looked in ' + ", ".join(looked)
    )


def _read_service(path: Path, service: str) -> dict[str, str] | None:
    """The parameters of section ``[service]`` of the service file ``path``, by libpq's rules
    (``parseServiceFile``), or None when the file has no such section."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f'service file "{path}" could not be read: {exc}') from exc
    found: dict[str, str] | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if found is not None:
                break  # libpq reads the first section of that name only
            if line.startswith(f"[{service}]"):
                found = {}
            continue
        if found is None:
            continue
        if line.startswith("ldap"):
            raise InvalidInputError(
                f'service file "{path}", line {number}: LDAP service lookups are not supported'
            )
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InvalidInputError(f'syntax error in service file "{path}", line {number}')
        if name in ("service", "servicefile"):
            raise InvalidInputError(
                f'nested "{name}" specifications not supported in service file "{path}", '
                f"line {number}"
            )
        if name not in _ACCEPTED:
            raise InvalidInputError(
                f'syntax error in service file "{path}", line {number}: unknown parameter "{name}"'
            )
        found.setdefault(name, value.strip())  # libpq keeps the first of a repeated name
    return found


def conninfo_to_url(params: Mapping[str, str]) -> URL:
    """libpq's parameters (service already resolved) as a ``postgresql+asyncpg`` URL.

    ``host``, ``hostaddr``, ``port``, ``user``, ``password`` and ``dbname`` become the URL's
    parts; every other parameter goes into its query, where :func:`split_libpq` finds it. A host
    that is a path is a Unix-socket directory (SQLAlchemy's ``?host=/dir``); several hosts
    (``host=a,b port=5432,5433``) become SQLAlchemy's ``?host=a,b&port=5432,5433``, each with its
    port (one port applies to every host, as in libpq; a missing one is ``PGPORT`` or 5432, which
    SQLAlchemy wants spelled out).
    """
    query: dict[str, str] = dict(params)
    # libpq connects to hostaddr when both are given, but asyncpg takes one address, and the
    # host name is the one TLS certificates are checked against: host wins.
    host = query.pop("host", "") or query.pop("hostaddr", "")
    query.pop("hostaddr", None)
    port = query.pop("port", "")
    user = query.pop("user", "") or None
    password = query.pop("password", "") or None
    database = query.pop("dbname", "") or query.pop("database", "") or None
    query.pop("database", None)
    query.pop("service", None)
    query.pop("servicefile", None)
    hosts = host.split(",") if host else []
    ports = port.split(",") if port else []
    if len(ports) > 1 and len(ports) != max(len(hosts), 1):
        raise InvalidInputError(
            f"connection string names {len(hosts)} hosts but {len(ports)} ports"
        )
    for p in ports:
        if p and not p.isdigit():
            raise InvalidInputError(f"connection string: port must be a number, got {port!r}")
    url_host: str | None = None
    url_port: int | None = None
    if len(hosts) > 1:
        if not all(hosts):
            raise InvalidInputError(
                f"connection string: an empty entry in the host list {host!r} is not "
                "supported; name every host (a socket directory is a path)"
            )
        default_port = os.environ.get("PGPORT", "")
        default_port = default_port if default_port.isdigit() else "5432"
        each = ports if len(ports) > 1 else (ports or [""]) * len(hosts)
        query["host"] = ",".join(hosts)
        query["port"] = ",".join(p or default_port for p in each)
    else:
        if hosts and hosts[0].startswith("/"):
            # A socket directory has no place in a URL's authority; the dialect takes it here.
            query["host"] = hosts[0]
        elif hosts and hosts[0]:
            url_host = hosts[0]
        if ports and ports[0]:
            url_port = int(ports[0])
    return URL.create(
        "postgresql+asyncpg",
        username=user,
        password=password,
        host=url_host,
        port=url_port,
        database=database,
        query=query,
    )


def url_to_conninfo(url: URL) -> dict[str, str]:
    """A SQLAlchemy URL as libpq's parameters, for :func:`resolve_service` and
    :func:`conninfo_to_url`.

    The query overrides the URL's parts, as in a libpq URI and as SQLAlchemy's dialect lets it;
    SQLAlchemy's multi-host spelling ``?host=h1:p1&host=h2:p2`` becomes libpq's ``host=h1,h2
    port=p1,p2``. SQLAlchemy leaves a percent-encoded host (``%2Frun%2Fpostgresql``) encoded;
    it is decoded here, since no host name holds a ``%``.
    """
    params: dict[str, str] = {}
    if url.username is not None:
        params["user"] = url.username
    if url.password is not None:
        params["password"] = str(url.password)
    if url.host:
        params["host"] = _uri_decode(url.host, "host") if "%" in url.host else url.host
    if url.port is not None:
        params["port"] = str(url.port)
    if url.database:
        params["dbname"] = url.database
    for name, value in url.query.items():
        if name not in _ACCEPTED:
            raise InvalidInputError(
                f'invalid URL query parameter: "{name}" (neither a libpq connection parameter '
                "nor an asyncpg one)"
            )
        if name == "host" and isinstance(value, tuple):
            pairs = [_host_port(token) for token in value]
            params["host"] = ",".join(h for h, _ in pairs)
            if any(p for _, p in pairs):
                params["port"] = ",".join(p for _, p in pairs)
        elif (
            name == "host"
            and "port" not in url.query
            and re.fullmatch(r"[A-Za-z0-9.\-]+:\d+", str(value))
        ):
            # SQLAlchemy's single ?host=h:p, which its dialect reads as a host and a port.
            params["host"], params["port"] = str(value).split(":")
        else:
            _store(params, name, _single(name, value))
    return params


def _host_port(token: str) -> tuple[str, str]:
    if token.startswith("["):  # [IPv6]:port
        host, _, rest = token[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if token.count(":") == 1:
        host, _, port = token.partition(":")
        return host, port
    return token, ""


def keyword_value_to_url(conn_string: str) -> URL:
    """A keyword/value connection string as a ``postgresql+asyncpg`` URL: parsed
    (:func:`parse_keyword_value`), checked, its service resolved (:func:`resolve_service`) and
    built (:func:`conninfo_to_url`)."""
    params = parse_keyword_value(conn_string)
    _check_keywords(params)
    if "database" in params:
        params.setdefault("dbname", params.pop("database"))
    return conninfo_to_url(resolve_service(params))


def uri_to_url(conn_string: str) -> URL:
    """A ``postgresql://`` URI as a ``postgresql+asyncpg`` URL: parsed (:func:`parse_uri`), its
    service resolved (:func:`resolve_service`) and built (:func:`conninfo_to_url`)."""
    return conninfo_to_url(resolve_service(parse_uri(conn_string)))


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
    takes libpq's ``passfile``, ``target_session_attrs``, ``krbsrvname`` and ``gsslib`` under
    those very names. (``service`` is resolved before, by :func:`resolve_service`: asyncpg
    reads service files only for a DSN, which SQLAlchemy never hands it.)
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
        elif name == "sslsni":
            # libpq's default, 1, is what asyncpg does anyway (it sends the host name).
            if _single(name, value) != "1":
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
