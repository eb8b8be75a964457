"""A PostgreSQL wire-protocol proxy that counts the SQL statements clients execute.

Comparator-neutral: our server, the raw floor and PostGraphile all connect through it in
the runner's counting pass (never in a timed run). A statement is a simple-protocol
``Query`` message or an extended-protocol ``Execute``; each is classified by its SQL text
(the ``Parse`` of its prepared statement) so that transaction control (BEGIN, COMMIT,
ROLLBACK, SAVEPOINT, pool pings and resets) can be reported apart from the statements doing the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from dataclasses import dataclass, field

# Not the request's work: transaction control, settings, pool pings (";") and the reset
# asyncpg runs when a connection goes back to its pool.
CONTROL = (
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "START TRANSACTION",
    "SET ",
    "SELECT SET_CONFIG",
    "RESET",
    "DISCARD",
    "SELECT PG_ADVISORY_UNLOCK_ALL",
    ";",
)
SPECIAL_REQUESTS = {80877103, 80877104, 80877102}  # SSL, GSSENC, cancel


@dataclass
class Counts:
    work: int = 0
    control: int = 0
    texts: list[str] = field(default_factory=list)

    def add(self, sql: str) -> None:
        head = sql.lstrip().upper()
        if not head or head.startswith(CONTROL):
            self.control += 1
        else:
            self.work += 1
            if len(self.texts) < 200:
                self.texts.append(sql[:200])


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts = Counts()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._started = threading.Event()

    def reset(self) -> Counts:
        old, self.counts = self.counts, Counts()
        return old

    def start(self) -> int:
        threading.Thread(target=self._run, daemon=True).start()
        self._started.wait(10)
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._started.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serve_forever()

        self._loop.run_until_complete(serve())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        back = asyncio.create_task(self._pipe(up_reader, writer))
        try:
            await self._frontend(reader, up_writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up_writer.close()
            back.cancel()
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _frontend(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        # Untyped start-up packets until the real StartupMessage.
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            rest = await reader.readexactly(length - 8)
            up.write(head + rest)
            await up.drain()
            if code not in SPECIAL_REQUESTS:
                break
        statements: dict[bytes, str] = {}
        portals: dict[bytes, bytes] = {}
        while True:
            head = await reader.readexactly(5)
            kind, length = head[:1], struct.unpack("!i", head[1:])[0]
            body = await reader.readexactly(length - 4)
            if kind == b"Q":
                self.counts.add(body[:-1].decode(errors="replace"))
            elif kind == b"P":
                name, _, rest = body.partition(b"\0")
                statements[name] = rest.partition(b"\0")[0].decode(errors="replace")
            elif kind == b"B":
                portal, _, rest = body.partition(b"\0")
                portals[portal] = rest.partition(b"\0")[0]
            elif kind == b"E":
                portal = body.partition(b"\0")[0]
                self.counts.add(statements.get(portals.get(portal, b""), "?"))
            up.write(head + body)
            if kind in (b"S", b"Q", b"H", b"X"):
                await up.drain()
            if kind == b"X":
                return
