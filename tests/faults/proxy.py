"""A loopback TCP proxy that loses the acknowledgement of a committed write.

The hardest fault for a retrying client is not a connection that drops before the write reaches
the server (a plain retry fixes that) but one that drops after the server committed and before the
client heard about it: the client cannot tell the two apart, so it must be safe to run the write
again. This proxy produces exactly that fault on demand.

It forwards bytes between the client and the server unchanged and reads the server's side of the
PostgreSQL wire protocol (type byte, int32 length, body). When armed, it holds the tail of each
server response, from its first ``CommandComplete`` to the ``ReadyForQuery`` that ends it. If
that ``ReadyForQuery`` says the session is idle again (``I``) and the transaction that just
ended wrote something and committed (a ``COMMIT`` tag after ``BEGIN``, or an autocommit
``INSERT``/``UPDATE``/``DELETE``/``MERGE`` with no error), the commit has certainly happened on
the server; the proxy then drops the held messages and resets both sockets. The client sees its
connection die while waiting for the reply.

Waiting for ``ReadyForQuery`` rather than cutting at the ``CommandComplete`` matters for the
autocommit case: in the extended protocol an implicit transaction commits when the server
processes ``Sync``, after it sent ``CommandComplete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

__all__ = ["LostAckProxy"]

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_WRITE_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})


@dataclass(eq=False)  # identity hashing: sessions live in a set
class _Session:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tags: list[str] = field(default_factory=list)  # command tags since the session was idle
    failed: bool = False
    frozen: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class LostAckProxy:
    """``127.0.0.1:<port>`` in front of ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.connections = 0
        self.cuts: list[list[str]] = []  # the command tags of each transaction whose ACK was lost
        self._armed = 0
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()

    async def start(self) -> LostAckProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            self._reset(session)
        if self._server is not None:
            await self._server.wait_closed()

    def arm(self, times: int = 1) -> None:
        """Lose the acknowledgement of the next ``times`` committed writes."""
        self._armed += times

    @property
    def armed(self) -> int:
        return self._armed

    def freeze_all(self) -> int:
        """Stop forwarding on every open connection without closing it, as a dead network path
        or a vanished host does (no FIN, no RST); new connections still work. Returns how many."""
        sessions = list(self._sessions)
        for session in sessions:
            session.frozen = True
            for task in session.tasks:
                task.cancel()
        return len(sessions)

    def sever_all(self) -> int:
        """Reset every open connection now (a network partition); returns how many."""
        sessions = list(self._sessions)
        for session in sessions:
            self._reset(session)
        return len(sessions)

    # -- plumbing -----------------------------------------------------------------------------

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.transport.abort()
            return
        session = _Session(client=c_writer, server=s_writer)
        self._sessions.add(session)
        try:
            parse = await self._startup(session, c_reader, s_reader)
            upstream = asyncio.ensure_future(self._pump_raw(c_reader, s_writer))
            downstream = asyncio.ensure_future(
                self._pump_messages(session, s_reader) if parse
                else self._pump_raw(s_reader, c_writer)
            )
            session.tasks = [upstream, downstream]
            await asyncio.wait(session.tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not session.frozen:  # a frozen one stays open, silent, until close()
                self._reset(session)

    async def _startup(
        self, session: _Session, c_reader: asyncio.StreamReader, s_reader: asyncio.StreamReader
    ) -> bool:
        """Forward the untyped startup packets; False when the stream becomes opaque (TLS)."""
        while True:
            header = await c_reader.readexactly(8)
            length, code = struct.unpack("!ii", header)
            body = await c_reader.readexactly(length - 8)
            session.server.write(header + body)
            if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                return True
            answer = await s_reader.readexactly(1)
            session.client.write(answer)
            if answer != b"N":
                return False

    async def _pump_raw(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _pump_messages(self, session: _Session, reader: asyncio.StreamReader) -> None:
        held: list[bytes] = []
        while True:
            header = await reader.readexactly(5)
            kind = header[:1]
            (length,) = struct.unpack("!i", header[1:])
            body = await reader.readexactly(length - 4)
            message = header + body
            if kind == b"C":
                session.tags.append(body.rstrip(b"\0").decode().split(" ", 1)[0])
            elif kind == b"E":
                session.failed = True
            if kind != b"Z":
                # Hold from the first CommandComplete on: earlier messages (ParseComplete after
                # a Parse+Flush, DataRows) may be awaited by the client before it sends Sync.
                if self._armed and (held or kind == b"C"):
                    held.append(message)
                else:
                    session.client.write(message)
                    await session.client.drain()
                continue
            status = body[:1]
            if status == b"I":
                ended = session.tags
                committed_write = self._committed_write(ended, session.failed)
                session.tags, session.failed = [], False
                if self._armed and committed_write:
                    self._armed -= 1
                    self.cuts.append(ended)
                    self._reset(session)
                    return
            session.client.write(b"".join(held) + message)
            held.clear()
            await session.client.drain()

    @staticmethod
    def _committed_write(tags: list[str], failed: bool) -> bool:
        if failed or not _WRITE_TAGS.intersection(tags):
            return False
        if "BEGIN" in tags:
            return tags[-1] == "COMMIT"
        return True

    def _reset(self, session: _Session) -> None:
        # abort() sends RST: the client sees "connection reset"/"closed in the middle of
        # operation" at once, like a dropped network path, not an orderly goodbye.
        for writer in (session.client, session.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current:
                task.cancel()
        self._sessions.discard(session)
