"""Fixtures of the real-time resilience tests: a private Redis (so it can be killed), two
long-lived server processes A and B sharing PostgreSQL and that Redis, and a factory for
short-lived servers that a test may kill, cut off or shut down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_graphql.models import Role, User
from tests import support
from tests.realtime.processes import Cluster, RedisServer, ServerProcess, Spawn, server_env


@pytest.fixture(scope="package")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("realtime-logs")


@pytest.fixture(scope="package")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
async def cluster(
    settings: Any, private_redis: RedisServer, logs_dir: Path
) -> AsyncIterator[Cluster]:
    env = server_env(settings, private_redis.url)
    servers = Cluster(ServerProcess("A", env, logs_dir), ServerProcess("B", env, logs_dir))
    try:
        await asyncio.gather(servers.a.launch(), servers.b.launch())
        yield servers
    finally:
        for server in (servers.a, servers.b):
            server.stop()


@pytest.fixture
def redis_up(private_redis: RedisServer) -> RedisServer:
    """The private Redis, started again if a test left it dead."""
    if private_redis.proc is None or private_redis.proc.poll() is not None:
        private_redis.start()
    return private_redis


@pytest.fixture
async def servers(cluster: Cluster, redis_up: RedisServer) -> Cluster:
    """A and B, running (started again if a test left one dead) with Redis up."""
    for server in (cluster.a, cluster.b):
        if not server.alive():
            await server.launch()
    return cluster


@pytest.fixture
async def spawn(settings: Any, redis_up: RedisServer, logs_dir: Path) -> AsyncIterator[Spawn]:
    """Start an extra server process (with extra ``CRM_*`` variables); stopped after the
    test whatever happened to it."""
    started: list[ServerProcess] = []

    async def spawn(name: str, **extra: str) -> ServerProcess:
        server = ServerProcess(name, server_env(settings, redis_up.url, **extra), logs_dir)
        started.append(server)
        await server.launch()
        return server

    try:
        yield spawn
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def workspace_id(users: dict[Role, User]) -> uuid.UUID:
    return users[Role.ADMIN].workspace_id


class Api:
    """The GraphQL API of one server process, as a manager of the test's workspace."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.gql = support.GraphQLClient(http, token)
        self.http = http

    async def customer(self, name: str) -> str:
        data = (
            await self.gql(
                "mutation($n: String!) { createCustomer(input: {name: $n}) { customer { id } errors { message } } }",
                {"n": name},
            )
        ).ok()["createCustomer"]
        assert not data["errors"], data
        return data["customer"]["id"]  # type: ignore[no-any-return]

    async def activity(self, customer: str, subject: str) -> support.GraphQLResponse:
        return await self.gql(
            "mutation($c: ID!, $s: String!) { createActivity(input: {type: NOTE, subject: $s, customerId: $c}) { activity { id } errors { code message } } }",
            {"c": customer, "s": subject},
        )

    async def note(self, customer: str, subject: str) -> None:
        """Log a note and assert it was written."""
        data = (await self.activity(customer, subject)).ok()["createActivity"]
        assert not data["errors"], data

    async def pipeline(self) -> str:
        data = (
            await self.gql(
                'mutation { createPipeline(input: {name: "Board", stages: [{name: "A"}, {name: "B"}]}) { pipeline { id } errors { message } } }'
            )
        ).ok()["createPipeline"]
        assert not data["errors"], data
        return data["pipeline"]["id"]  # type: ignore[no-any-return]

    async def deal(self, pipeline: str, title: str) -> None:
        data = (
            await self.gql(
                'mutation($p: ID!, $t: String!) { createDeal(input: {pipelineId: $p, title: $t, currency: "EUR"}) { deal { id } errors { message } } }',
                {"p": pipeline, "t": title},
            )
        ).ok()["createDeal"]
        assert not data["errors"], data

    async def conversation(self, customer: str) -> str:
        """Start a chat with the customer; its ID."""
        data = (
            await self.gql(
                "mutation($c: ID!) { startConversation(input: {customerId: $c, channel: CHAT}) { conversation { id } errors { message } } }",
                {"c": customer},
            )
        ).ok()["startConversation"]
        assert not data["errors"], data
        return data["conversation"]["id"]  # type: ignore[no-any-return]

    async def send(self, conversation: str, body: str) -> dict[str, Any]:
        """Send an agent's message and assert it was written: its ``id`` and ``seq``."""
        data = (
            await self.gql(
                "mutation($c: ID!, $b: String!) { sendMessage(input: {conversationId: $c, body: $b}) { message { id seq } errors { message } } }",
                {"c": conversation, "b": body},
            )
        ).ok()["sendMessage"]
        assert not data["errors"], data
        return data["message"]  # type: ignore[no-any-return]


@pytest.fixture
def api(tokens: dict[Role, str]) -> Callable[[ServerProcess], Any]:
    """``async with api(server) as a:`` an ``Api`` on that server."""
    import contextlib

    @contextlib.asynccontextmanager
    async def open_api(server: ServerProcess) -> AsyncIterator[Api]:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            yield Api(http, tokens[Role.MANAGER])

    return open_api
