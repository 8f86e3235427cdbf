"""Fixtures of the fault-injection suites: a private cluster, a database per test, a backend
killer, the lost-ACK proxy and PgBouncer.

Databases on the shared server (embedded, or ``TEST_DATABASE_URL``) come from the harness's
``database_factory``, so killing "every other backend of the database" never touches another
test's or another helper's connections. Suites that restart the server use a private cluster
(:mod:`tests.faults.cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from langgraph_sqlalchemy import migrations
from langgraph_sqlalchemy.engine import create_engine

from .cluster import PrivateCluster, free_port, server_user
from .proxy import LostAckProxy


def duration(short: float, full: float, request: pytest.FixtureRequest) -> float:
    """Seconds a timed suite runs: ``full`` under ``-m slow`` tests, else ``short``;
    ``FAULTS_DURATION`` overrides both."""
    override = os.environ.get("FAULTS_DURATION")
    if override:
        return float(override)
    return full if request.node.get_closest_marker("slow") is not None else short


async def migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def migrated_url(database_factory: Callable[[], Awaitable[str]]) -> str:
    """A database of its own on the shared server, migrated to head."""
    url = await database_factory()
    await migrate(url)
    return url


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
async def cluster_db(private_cluster: PrivateCluster) -> AsyncIterator[str]:
    """A migrated database of its own on the private cluster (dropped afterwards)."""
    name = f"lgsa_faults_{os.urandom(6).hex()}"
    admin = await asyncpg.connect(private_cluster.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')  # generated hex name, not input
    finally:
        await admin.close()
    url = private_cluster.url(name)
    await migrate(url)
    yield url
    admin = await asyncpg.connect(private_cluster.url())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class BackendKiller:
    """Terminates every other backend of one database every ``interval`` seconds.

    Runs on a raw asyncpg connection of its own (excluded from its own purge), so the library's
    retries never help the killer and the killer never spares the library.
    """

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.rounds = 0
        self.kills = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _loop(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            while not self._stop.is_set():
                killed = await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
                self.rounds += 1
                self.kills += int(killed)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)
        finally:
            await conn.close()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


@pytest.fixture
async def lost_ack_proxy(private_cluster: PrivateCluster) -> AsyncIterator[LostAckProxy]:
    proxy = await LostAckProxy("127.0.0.1", private_cluster.port).start()
    yield proxy
    await proxy.close()


# -- PgBouncer ------------------------------------------------------------------------------

PGBOUNCER_INSTALL = "apt-get update && apt-get install -y pgbouncer"


class PgBouncer:
    """A PgBouncer in transaction pooling mode in front of the private cluster."""

    def __init__(self, cluster: PrivateCluster, binary: str, *, pool_size: int = 2) -> None:
        self.cluster = cluster
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lgsa-faults-pgbouncer-"))
        self.pool_size = pool_size
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> str:
        # The settings the README recommends; auth_type=any only because this pooler is private
        # to the test (loopback, throwaway cluster with trust auth).
        return (
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.cluster.port} user=postgres\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            "server_reset_query =\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )

    def start(self) -> None:
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(self.config)
        user = server_user()  # PgBouncer refuses to run as root
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            for path in (self.dir, ini):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.process = subprocess.Popen(
            [self.binary, str(ini)], user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"pgbouncer exited ({self.process.returncode}): {err}")
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pgbouncer did not start listening within 10 s")

    def url(self, database: str) -> str:
        return self.cluster.url(database, port=self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
    )


@pytest.fixture
def pgbouncer(private_cluster: PrivateCluster) -> Iterator[PgBouncer]:
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip(f"the pgbouncer binary is not installed (Debian/Ubuntu: {PGBOUNCER_INSTALL})")
    bouncer = PgBouncer(private_cluster, binary)
    bouncer.start()
    yield bouncer
    bouncer.stop()
