"""Every difference from upstream we keep on purpose, each with its reason.

``SURFACE``: what :func:`surface.compare` reports for the class pairs of
``test_surface_parity.py``; that test fails on any difference not listed here and on any
entry here that is no longer a difference. ``BEHAVIOUR``: differences in what a call accepts
or raises, each demonstrated against upstream by a case in ``test_store_dropin.py`` /
``test_saver_dropin.py``. Both tables must match docs/differences.md, entry for entry and
reason for reason (``test_differences_page_lists_every_entry``).
"""

from __future__ import annotations

_PSYCOPG = "psycopg's own; we run on SQLAlchemy + asyncpg"
_SQL_TEXT = (
    "upstream's SQL text; ours is built with SQLAlchemy Core from the Table objects in "
    "langgraph_sqlalchemy.schema"
)
_ALEMBIC = (
    "upstream's migration list; ours are Alembic revisions (langgraph_sqlalchemy.migrations), "
    "which keep upstream's version rows current"
)
_CONN = (
    "takes a SQLAlchemy AsyncEngine (shared, never disposed) or AsyncConnection (joins the "
    "host's transaction) instead of a psycopg connection or pool"
)
_CONN_READ_ONLY = (
    "the engine or connection the instance was built on, read-only: create another instance "
    "for another database (upstream reads its attribute at every call)"
)
_NO_LOCK = (
    "no instance-wide lock: concurrent calls run on separate pooled connections, so there "
    "is no lock to expose"
)
_DB = "the Database the calls go through (pooling, transactions, retries, error translation)"
_SCHEMA = "places every table in that Postgres schema (default: unqualified, as upstream)"
_RETRY = "the retry policy for dropped connections (upstream does not retry)"
_ENGINE_KWARGS = "passed to SQLAlchemy's create_async_engine"
_PGBOUNCER = "turns asyncpg's statement cache off, for PgBouncer in transaction mode"
_GROUP_COMMIT = (
    "opt-in group commit: concurrent puts and writes of one kind that wait for a pooled "
    "connection share one round trip and one commit"
)
_THREAD_TTL = (
    "thread retention (docs/retention.md), with the keys of langgraph.json's checkpointer.ttl; "
    "upstream has none"
)
_TRACK_ACTIVITY = (
    "records each thread's last write for thread retention, in the same statement as the put "
    "(on by default)"
)
_KEEP_LAST = "keep_latest can keep the newest N checkpoints per namespace (default 1, as upstream)"
_VECTOR_MIGRATIONS = (
    "upstream's vector migration list; ours is built by setup() from the index "
    "configuration (langgraph_sqlalchemy.store.vector_layer)"
)
_DESERIALIZER = (
    "called with the JSON bytes of every value read; never with an orjson Fragment, so a "
    "function written for upstream's wider type works unchanged"
)
_INDEX_CONFIG = (
    "any mapping with PostgresIndexConfig's keys (langgraph-checkpoint-postgres is not a "
    "dependency of ours, so its TypedDict is not in our signature)"
)
_TTL_CONFIG = "a TTLConfig or any mapping with its keys"
_POOL_CONFIG = (
    "upstream's PoolConfig keys min_size and max_size size the engine's pool; kwargs "
    "(psycopg connection arguments) is ignored with a warning, psycopg's other pool "
    "settings are refused (SQLAlchemy's pool arguments go in as engine keywords)"
)
_SWEEP_MINUTES = (
    "fractional minutes are honoured (upstream converts to float as well, but types int)"
)
_SYNC_CONN = (
    "the database URL instead of a psycopg connection or pool: the instance creates its own "
    "engine on its own event loop thread, since asyncpg connections belong to one loop (a "
    "psycopg object, an Engine or an AsyncEngine is a TypeError naming the constructor to use)"
)
_SYNC_NO_CONN = (
    "its engine belongs to its private event loop thread, where no code of the caller's can "
    "use it; create an engine of your own for your own SQL"
)
_SYNC_POOL_CONFIG = (
    "sizes the pool of the engine it creates (min_size, max_size), as from_conn_string's "
    "pool_config (upstream's constructor takes a psycopg pool instead)"
)
_URL_OBJECT = "also a SQLAlchemy URL object (engine.url, URL.create(...))"
_OWNS = (
    "it owns its engine and loop thread: close() (or leaving a with block) closes the engine's "
    "connections and joins the thread (upstream's owns nothing; from_conn_string closes its "
    "connection on exit)"
)

SURFACE: dict[str, str] = {
    # --- saver ---------------------------------------------------------------------------------
    "AsyncSQLAlchemySaver.INSERT_CHECKPOINT_WRITES_SQL: upstream only": _SQL_TEXT,
    "AsyncSQLAlchemySaver.SELECT_PENDING_SENDS_SQL: upstream only": _SQL_TEXT,
    "AsyncSQLAlchemySaver.SELECT_SQL: upstream only": _SQL_TEXT,
    "AsyncSQLAlchemySaver.UPSERT_CHECKPOINTS_SQL: upstream only": _SQL_TEXT,
    "AsyncSQLAlchemySaver.UPSERT_CHECKPOINT_BLOBS_SQL: upstream only": _SQL_TEXT,
    "AsyncSQLAlchemySaver.UPSERT_CHECKPOINT_WRITES_SQL: upstream only": _SQL_TEXT,
    "AsyncSQLAlchemySaver.MIGRATIONS: upstream only": _ALEMBIC,
    "AsyncSQLAlchemySaver.__init__(conn): annotation 'AsyncConnection | AsyncEngine', upstream "
    "'AsyncConnectionPool[AsyncConnection[dict[str, Any]]] | AsyncConnection[dict[str, Any]]'": (
        _CONN
    ),
    "AsyncSQLAlchemySaver.__init__(pipe): upstream only": (
        "a psycopg pipeline; a batch of statements is already one round trip here"
    ),
    "AsyncSQLAlchemySaver.__init__(serde): kind KEYWORD_ONLY, upstream POSITIONAL_OR_KEYWORD": (
        "upstream's second positional parameter is the psycopg pipe, which we do not take; "
        "serde is keyword-only so that a positional call written for upstream fails loudly "
        "instead of passing a pipe as the serializer"
    ),
    "AsyncSQLAlchemySaver.__init__(retry): ours only": _RETRY,
    "AsyncSQLAlchemySaver.__init__(group_commit): ours only": _GROUP_COMMIT,
    "AsyncSQLAlchemySaver.from_conn_string(group_commit): ours only": _GROUP_COMMIT,
    "AsyncSQLAlchemySaver.from_conn_string(retry): ours only": _RETRY,
    "AsyncSQLAlchemySaver.__init__(ttl): ours only": _THREAD_TTL,
    "AsyncSQLAlchemySaver.from_conn_string(ttl): ours only": _THREAD_TTL,
    "AsyncSQLAlchemySaver.ttl_config: ours only": _THREAD_TTL,
    "AsyncSQLAlchemySaver.asweep_ttl: ours only": _THREAD_TTL,
    "AsyncSQLAlchemySaver.sweep_ttl: ours only": _THREAD_TTL,
    "AsyncSQLAlchemySaver.start_ttl_sweeper: ours only": _THREAD_TTL,
    "AsyncSQLAlchemySaver.stop_ttl_sweeper: ours only": _THREAD_TTL,
    "AsyncSQLAlchemySaver.__init__(track_activity): ours only": _TRACK_ACTIVITY,
    "AsyncSQLAlchemySaver.from_conn_string(track_activity): ours only": _TRACK_ACTIVITY,
    "AsyncSQLAlchemySaver.track_activity: ours only": _TRACK_ACTIVITY,
    "SQLAlchemySaver.__init__(ttl): ours only": _THREAD_TTL,
    "SQLAlchemySaver.from_conn_string(ttl): ours only": _THREAD_TTL,
    "SQLAlchemySaver.ttl_config: ours only": _THREAD_TTL,
    "SQLAlchemySaver.asweep_ttl: ours only": _THREAD_TTL,
    "SQLAlchemySaver.sweep_ttl: ours only": _THREAD_TTL,
    "SQLAlchemySaver.start_ttl_sweeper: ours only": _THREAD_TTL,
    "SQLAlchemySaver.stop_ttl_sweeper: ours only": _THREAD_TTL,
    "SQLAlchemySaver.__init__(track_activity): ours only": _TRACK_ACTIVITY,
    "SQLAlchemySaver.from_conn_string(track_activity): ours only": _TRACK_ACTIVITY,
    "SQLAlchemySaver.track_activity: ours only": _TRACK_ACTIVITY,
    "AsyncSQLAlchemySaver.__init__(schema): ours only": _SCHEMA,
    "AsyncSQLAlchemySaver.conn: property, upstream attribute": _CONN_READ_ONLY,
    "AsyncSQLAlchemySaver.loop: property, upstream attribute": (
        "the loop the sync methods hand their work to: the loop of the first async call "
        "(None before it), so a saver built outside a running loop works"
    ),
    "AsyncSQLAlchemySaver.lock: upstream only": _NO_LOCK,
    "AsyncSQLAlchemySaver.pipe: upstream only": _PSYCOPG,
    "AsyncSQLAlchemySaver.supports_pipeline: upstream only": _PSYCOPG,
    "AsyncSQLAlchemySaver.db: ours only": _DB,
    "AsyncSQLAlchemySaver.schema: ours only": _SCHEMA,
    "AsyncSQLAlchemySaver.tables: ours only": "the Table objects of that schema",
    "AsyncSQLAlchemySaver.repository: ours only": "the checkpoint statements of that schema",
    "AsyncSQLAlchemySaver.aprune(keep_last): ours only": _KEEP_LAST,
    "AsyncSQLAlchemySaver.prune(keep_last): ours only": _KEEP_LAST,
    "AsyncSQLAlchemySaver.from_conn_string(engine_kwargs): ours only": _ENGINE_KWARGS,
    "AsyncSQLAlchemySaver.from_conn_string(pgbouncer): ours only": _PGBOUNCER,
    "AsyncSQLAlchemySaver.from_conn_string(pool_config): ours only": (
        "sizes the engine's pool (min_size, max_size), as upstream's store takes it"
    ),
    "AsyncSQLAlchemySaver.from_conn_string(schema): ours only": _SCHEMA,
    # --- store ---------------------------------------------------------------------------------
    "AsyncSQLAlchemyStore.MIGRATIONS: upstream only": _ALEMBIC,
    "AsyncSQLAlchemyStore.VECTOR_MIGRATIONS: upstream only": _VECTOR_MIGRATIONS,
    "AsyncSQLAlchemyStore.__init__(conn): annotation 'AsyncConnection | AsyncEngine', upstream "
    "'AsyncConnectionPool[AsyncConnection[dict[str, Any]]] | AsyncConnection[dict[str, Any]]'": (
        _CONN
    ),
    "AsyncSQLAlchemyStore.__init__(pipe): upstream only": (
        "a psycopg pipeline; a batch is already one statement (or one transaction) here"
    ),
    "AsyncSQLAlchemyStore.__init__(deserializer): annotation 'Callable[[bytes], dict[str, Any]] "
    "| None', upstream 'Callable[[Fragment | bytes], dict[str, Any]] | None'": _DESERIALIZER,
    "AsyncSQLAlchemyStore.__init__(index): annotation 'Mapping[str, Any] | None', upstream "
    "'None | PostgresIndexConfig'": _INDEX_CONFIG,
    "AsyncSQLAlchemyStore.from_conn_string(index): annotation 'Mapping[str, Any] | None', "
    "upstream 'None | PostgresIndexConfig'": _INDEX_CONFIG,
    "AsyncSQLAlchemyStore.__init__(ttl): annotation 'Mapping[str, Any] | None | TTLConfig', "
    "upstream 'None | TTLConfig'": _TTL_CONFIG,
    "AsyncSQLAlchemyStore.from_conn_string(ttl): annotation 'Mapping[str, Any] | None | "
    "TTLConfig', upstream 'None | TTLConfig'": _TTL_CONFIG,
    "AsyncSQLAlchemyStore.from_conn_string(pool_config): annotation 'Mapping[str, Any] | None', "
    "upstream 'None | PoolConfig'": _POOL_CONFIG,
    "AsyncSQLAlchemyStore.__init__(retry): ours only": _RETRY,
    "AsyncSQLAlchemyStore.from_conn_string(retry): ours only": _RETRY,
    "AsyncSQLAlchemyStore.__init__(schema): ours only": _SCHEMA,
    "AsyncSQLAlchemyStore.from_conn_string(deserializer): ours only": (
        "upstream takes a deserializer only in the constructor"
    ),
    "AsyncSQLAlchemyStore.from_conn_string(engine_kwargs): ours only": _ENGINE_KWARGS,
    "AsyncSQLAlchemyStore.from_conn_string(pgbouncer): ours only": _PGBOUNCER,
    "AsyncSQLAlchemyStore.from_conn_string(schema): ours only": _SCHEMA,
    "AsyncSQLAlchemyStore.conn: property, upstream attribute": _CONN_READ_ONLY,
    "AsyncSQLAlchemyStore.lock: upstream only": _NO_LOCK,
    "AsyncSQLAlchemyStore.pipe: upstream only": _PSYCOPG,
    "AsyncSQLAlchemyStore.supports_pipeline: upstream only": _PSYCOPG,
    "AsyncSQLAlchemyStore.db: ours only": _DB,
    "AsyncSQLAlchemyStore.schema: ours only": _SCHEMA + "; read-only",
    "AsyncSQLAlchemyStore.start_ttl_sweeper(sweep_interval_minutes): annotation 'None | float', "
    "upstream 'None | int'": _SWEEP_MINUTES,
    # --- sync saver (upstream PostgresSaver) ---------------------------------------------------
    "SQLAlchemySaver.INSERT_CHECKPOINT_WRITES_SQL: upstream only": _SQL_TEXT,
    "SQLAlchemySaver.SELECT_PENDING_SENDS_SQL: upstream only": _SQL_TEXT,
    "SQLAlchemySaver.SELECT_SQL: upstream only": _SQL_TEXT,
    "SQLAlchemySaver.UPSERT_CHECKPOINTS_SQL: upstream only": _SQL_TEXT,
    "SQLAlchemySaver.UPSERT_CHECKPOINT_BLOBS_SQL: upstream only": _SQL_TEXT,
    "SQLAlchemySaver.UPSERT_CHECKPOINT_WRITES_SQL: upstream only": _SQL_TEXT,
    "SQLAlchemySaver.MIGRATIONS: upstream only": _ALEMBIC,
    "SQLAlchemySaver.__init__(conn): annotation 'URL | str', upstream "
    "'ConnectionPool[Connection[dict[str, Any]]] | Connection[dict[str, Any]]'": _SYNC_CONN,
    "SQLAlchemySaver.__init__(pipe): upstream only": (
        "a psycopg pipeline; a batch of statements is already one round trip here"
    ),
    "SQLAlchemySaver.__init__(serde): kind KEYWORD_ONLY, upstream POSITIONAL_OR_KEYWORD": (
        "as for AsyncSQLAlchemySaver: upstream's second positional parameter is the psycopg "
        "pipe, so a positional call written for upstream fails loudly instead of passing a "
        "pipe as the serializer"
    ),
    "SQLAlchemySaver.__init__(retry): ours only": _RETRY,
    "SQLAlchemySaver.__init__(group_commit): ours only": _GROUP_COMMIT,
    "SQLAlchemySaver.__init__(schema): ours only": _SCHEMA,
    "SQLAlchemySaver.__init__(pool_config): ours only": _SYNC_POOL_CONFIG,
    "SQLAlchemySaver.__init__(pgbouncer): ours only": _PGBOUNCER,
    "SQLAlchemySaver.__init__(engine_kwargs): ours only": _ENGINE_KWARGS,
    "SQLAlchemySaver.from_conn_string(conn_string): annotation 'URL | str', upstream 'str'": (
        _URL_OBJECT
    ),
    "SQLAlchemySaver.from_conn_string(serde): ours only": (
        "as upstream's AsyncPostgresSaver.from_conn_string takes it (its sync one does not)"
    ),
    "SQLAlchemySaver.from_conn_string(retry): ours only": _RETRY,
    "SQLAlchemySaver.from_conn_string(group_commit): ours only": _GROUP_COMMIT,
    "SQLAlchemySaver.from_conn_string(schema): ours only": _SCHEMA,
    "SQLAlchemySaver.from_conn_string(pool_config): ours only": (
        "sizes the engine's pool (min_size, max_size), as upstream's store takes it"
    ),
    "SQLAlchemySaver.from_conn_string(pgbouncer): ours only": _PGBOUNCER,
    "SQLAlchemySaver.from_conn_string(engine_kwargs): ours only": _ENGINE_KWARGS,
    "SQLAlchemySaver.__enter__: ours only": _OWNS,
    "SQLAlchemySaver.__exit__: ours only": _OWNS,
    "SQLAlchemySaver.close: ours only": _OWNS,
    "SQLAlchemySaver.conn: upstream only": _SYNC_NO_CONN,
    "SQLAlchemySaver.lock: upstream only": _NO_LOCK,
    "SQLAlchemySaver.pipe: upstream only": _PSYCOPG,
    "SQLAlchemySaver.supports_pipeline: upstream only": _PSYCOPG,
    "SQLAlchemySaver.schema: ours only": _SCHEMA + "; read-only",
    "SQLAlchemySaver.aprune(keep_last): ours only": _KEEP_LAST,
    "SQLAlchemySaver.prune(keep_last): ours only": _KEEP_LAST,
    # --- sync store (upstream PostgresStore) ---------------------------------------------------
    "SQLAlchemyStore.MIGRATIONS: upstream only": _ALEMBIC,
    "SQLAlchemyStore.VECTOR_MIGRATIONS: upstream only": _VECTOR_MIGRATIONS,
    "SQLAlchemyStore.__init__(conn): annotation 'URL | str', upstream "
    "'ConnectionPool[Connection[dict[str, Any]]] | Connection[dict[str, Any]]'": _SYNC_CONN,
    "SQLAlchemyStore.__init__(pipe): upstream only": (
        "a psycopg pipeline; a batch is already one statement (or one transaction) here"
    ),
    "SQLAlchemyStore.__init__(deserializer): annotation 'Callable[[bytes], dict[str, Any]] "
    "| None', upstream 'Callable[[Fragment | bytes], dict[str, Any]] | None'": _DESERIALIZER,
    "SQLAlchemyStore.__init__(index): annotation 'Mapping[str, Any] | None', upstream "
    "'None | PostgresIndexConfig'": _INDEX_CONFIG,
    "SQLAlchemyStore.__init__(ttl): annotation 'Mapping[str, Any] | None | TTLConfig', "
    "upstream 'None | TTLConfig'": _TTL_CONFIG,
    "SQLAlchemyStore.__init__(retry): ours only": _RETRY,
    "SQLAlchemyStore.__init__(schema): ours only": _SCHEMA,
    "SQLAlchemyStore.__init__(pool_config): ours only": _SYNC_POOL_CONFIG,
    "SQLAlchemyStore.__init__(pgbouncer): ours only": _PGBOUNCER,
    "SQLAlchemyStore.__init__(engine_kwargs): ours only": _ENGINE_KWARGS,
    "SQLAlchemyStore.from_conn_string(conn_string): annotation 'URL | str', upstream 'str'": (
        _URL_OBJECT
    ),
    "SQLAlchemyStore.from_conn_string(index): annotation 'Mapping[str, Any] | None', "
    "upstream 'None | PostgresIndexConfig'": _INDEX_CONFIG,
    "SQLAlchemyStore.from_conn_string(ttl): annotation 'Mapping[str, Any] | None | "
    "TTLConfig', upstream 'None | TTLConfig'": _TTL_CONFIG,
    "SQLAlchemyStore.from_conn_string(pool_config): annotation 'Mapping[str, Any] | None', "
    "upstream 'None | PoolConfig'": _POOL_CONFIG,
    "SQLAlchemyStore.from_conn_string(deserializer): ours only": (
        "upstream takes a deserializer only in the constructor"
    ),
    "SQLAlchemyStore.from_conn_string(retry): ours only": _RETRY,
    "SQLAlchemyStore.from_conn_string(schema): ours only": _SCHEMA,
    "SQLAlchemyStore.from_conn_string(pgbouncer): ours only": _PGBOUNCER,
    "SQLAlchemyStore.from_conn_string(engine_kwargs): ours only": _ENGINE_KWARGS,
    "SQLAlchemyStore.__enter__: ours only": _OWNS,
    "SQLAlchemyStore.__exit__: ours only": _OWNS,
    "SQLAlchemyStore.close: ours only": _OWNS + "; the TTL sweeper stops first",
    "SQLAlchemyStore.conn: upstream only": _SYNC_NO_CONN,
    "SQLAlchemyStore.lock: upstream only": _NO_LOCK,
    "SQLAlchemyStore.pipe: upstream only": _PSYCOPG,
    "SQLAlchemyStore.supports_pipeline: upstream only": _PSYCOPG,
    "SQLAlchemyStore.schema: ours only": _SCHEMA + "; read-only",
    "SQLAlchemyStore.start_ttl_sweeper(sweep_interval_minutes): annotation 'None | float', "
    "upstream 'None | int'": _SWEEP_MINUTES,
}

_FROM_PSYCOPG = (
    "upstream's error comes from psycopg or the server (psycopg.DataError and its kin), a "
    "type we cannot subclass without depending on psycopg; ours is InvalidInputError (a "
    "ValueError), raised before anything is sent, with the reason"
)

BEHAVIOUR: dict[str, str] = {
    "store: list namespaces in get, put and delete": (
        "accepted everywhere, as search and list_namespaces accept them upstream; upstream's "
        "get, put and delete fail with TypeError (unhashable list)"
    ),
    "store: str namespace refused": (
        "a str is refused (InvalidNamespaceError, also a TypeError): upstream takes it as one "
        "label per character, so 'abc' becomes ('a', 'b', 'c')"
    ),
    "store: int and UUID keys are str() everywhere": (
        "get and delete find what put stored for them, as in upstream's sync PostgresStore; "
        "upstream's async store's get with an int key finds nothing and its delete fails in "
        "the server"
    ),
    "store: other non-str keys refused": (
        "a float, bytes or None key is refused (InvalidInputError, also a TypeError): upstream's "
        "async store stores the server's text form of the value (bytes as '\\x6b') or fails, "
        "its sync store stores str(key) ('None', \"b'kk'\")"
    ),
    "store: values must be mappings": (
        "a list of pairs is refused like any non-mapping (InvalidInputError, also a "
        "TypeError); upstream's dict(value) turns it into a dict"
    ),
    "store: values with datetime, UUID, dataclass": (
        "stored as orjson writes them (ISO text, ...); upstream's json.dumps raises TypeError"
    ),
    "store: ttl is a number of minutes from 0 to 1e9": (
        "a str, a bool or a negative ttl is refused (upstream takes float(ttl): '5' is 5 "
        "minutes, True is 1, -1 is already expired); NaN, infinities and ttls past what a "
        "timestamptz can hold fail in upstream's server"
    ),
    "store: limit, offset and max_depth are ints": (
        "a float or None is refused (upstream sends it to the server, which rounds 1.5 and "
        "reads limit=None as no limit); max_depth < 1 is a ValueError (upstream: "
        "AttributeError)"
    ),
    "store: index= str is one path": (
        "index='text' indexes the field text; upstream iterates the string and indexes one "
        "path per character"
    ),
    "store: unknown ops and match types refused": (
        "an object that is not an Op, or a match type other than prefix/suffix, raises "
        "InvalidInputError; upstream returns None for the op or logs a warning and ignores "
        "the condition"
    ),
    "store: unknown TTLConfig keys refused": (
        "a misspelt key (defualt_ttl) raises InvalidInputError; upstream ignores it"
    ),
    "store: sweep interval must be finite": (
        "NaN or a non-positive interval raises InvalidInputError; upstream's sweeper then "
        "times out erratically"
    ),
    "store: start_ttl_sweeper without a TTLConfig sweeps": (
        "items with a per-put ttl expire whatever the configuration; upstream returns a "
        "finished task and never sweeps without a TTLConfig"
    ),
    "store: filter that is not a dict": (
        "InvalidInputError (a ValueError); upstream fails with AttributeError ('list' object "
        "has no attribute 'items')"
    ),
    "store: lone surrogate in a filter": (
        "InvalidInputError that is also a UnicodeEncodeError, as for keys, labels and values; "
        "upstream's orjson raises TypeError"
    ),
    "store: filter operands with datetime, UUID": (
        "compared as the text orjson writes for them (ISO text, ...), which is what a value "
        "holding them was stored as; upstream's $eq and $ne (json.dumps) raise TypeError for "
        "them, its plain equality (orjson) and ordering operators match as ours"
    ),
    "store: filter keys are strings": (
        "a filter key that is not a str ({1: 1}) is refused (InvalidInputError); upstream "
        "binds it as it is, and an int then indexes a JSON array, so it matches nothing"
    ),
    "store: ordering operators take numbers and strings": (
        "$gt, $gte, $lt and $lte with None, a list or a dict are refused (InvalidInputError); "
        "upstream compares the operand's JSON text with the value's, which orders nothing "
        "meaningful (a datetime operand is compared as its ISO text on both)"
    ),
    "store: bad input upstream's server rejects": _FROM_PSYCOPG,
    "saver: bad input upstream's server rejects": _FROM_PSYCOPG,
    "saver: alist limit must be an int": (
        "a float is refused (InvalidInputError); upstream sends it to the server, which rounds it"
    ),
    "saver: alist filter must be a dict": (
        "a non-dict filter is refused (InvalidInputError); upstream matches it by JSON "
        "containment, so [1] lists nothing"
    ),
    "saver: alist limit below 1 lists nothing": (
        "limit=0 or a negative limit lists nothing; upstream sends a negative LIMIT to the "
        "server, which fails with psycopg's DataError"
    ),
    "saver: channel values JSON cannot hold are stored": (
        "a str with NUL or a lone surrogate and a NaN or infinite float go to a blob through "
        "serde, and both read them back as InMemorySaver does (the default serializer writes a "
        "lone surrogate as '?'); upstream puts them in the checkpoint's JSON, which its server "
        "refuses (psycopg.DataError)"
    ),
    "saver: metadata and filters with datetime, UUID": (
        "stored and matched as orjson writes them (ISO text, ...), as the store does with "
        "values; upstream's json.dumps raises TypeError"
    ),
    "saver: checkpoint_ns None is the root namespace": (
        "a put or writes with checkpoint_ns=None go to the root namespace '', as reads "
        "already take None for '' on both; upstream's server refuses the NULL "
        "(psycopg's NotNullViolation)"
    ),
    "saver: thread ids cannot be None": (
        "adelete_thread(None) is refused (InvalidInputError); upstream deletes nothing "
        "(thread_id = NULL matches no row)"
    ),
}
