"""The requests' pool (``db.engine.requests_engine``) against a real PostgreSQL: a load
above ``CRM_DB_POOL_SIZE`` waits for the pool's connections, which stay open, instead of
opening overflow connections that are closed the moment they are returned (under M1 that
opened and closed a PostgreSQL backend every few requests).

The pool has no overflow, so no operation may hold one of its connections while it waits
for a second one (``resolvers.context.Context``): with every connection held by such
operations, each would wait for the others until the pool's timeout (30 s) and fail. An
app with a pool of one connection serves many such operations at once, well within it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from crm_graphql.db.engine import requests_engine
from crm_graphql.models import Role
from tests import support
from tests.realtime.processes import serving_in_process, wait_for

SIZE = 3


async def _alive(database_url: str, pids: set[int]) -> set[int]:
    """Which of these backends the server still runs."""
    conn = await asyncpg.connect(support.asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE pid = any($1)", pids)
    finally:
        await conn.close()
    return {row["pid"] for row in rows}


async def test_a_load_above_the_pool_size_reuses_the_same_connections(database_url: str) -> None:
    engine = requests_engine(database_url, SIZE)
    used: list[int] = []

    async def hold() -> None:
        async with engine.connect() as conn:
            used.append(await conn.scalar(text("SELECT pg_backend_pid() FROM pg_sleep(0.02)")))

    try:
        # Five at a time, six times over, each holding its connection for a moment; the
        # load drops to nothing between rounds. (With SQLAlchemy's default overflow, the
        # two above the pool's size were new backends in every round: 15 in all.)
        for _ in range(6):
            await asyncio.gather(*(hold() for _ in range(5)))
        assert len(used) == 30
        backends = set(used)
        assert len(backends) == SIZE, used
        assert await _alive(database_url, backends) == backends
        assert engine.sync_engine.pool.checkedin() == SIZE
    finally:
        await engine.dispose()
    assert await _alive(database_url, backends) == set()


# CRM_DB_POOL_SIZE of the apps below. With one connection, an operation that holds it
# while it waits for another waits for itself, whatever the interleaving; with more, it
# fails only when its peers do the same at the same moment.
POOL = 1
AT_ONCE = 6  # operations of each kind at a time: more than the pool holds
# Well below the pool's timeout: operations waiting for each other's connections would
# all still be waiting (and then fail); served in turn, they take about a second.
DEADLINE_S = 20

# Two writes in one document, the first's payload read after its write through the
# request's read session (pages and counts of the new customer): the second write's
# transaction starts after those reads, in the same request.
WRITE_READ_WRITE = """mutation($a: CreateCustomerInput!, $b: CreateCustomerInput!) {
  a: createCustomer(input: $a) {
    customer {
      id
      deals(first: 2) { totalCount edges { node { id } } }
      activities(first: 2) { totalCount }
    }
    errors { code }
  }
  b: createCustomer(input: $b) { customer { id } errors { code } }
}"""
# One write whose payload reads nested fields after it.
WRITE_THEN_READ = """mutation($a: CreateCustomerInput!) {
  createCustomer(input: $a) {
    customer { id company { name } owner { name } deals(first: 2) { totalCount } }
    errors { code }
  }
}"""
# Executed, not compiled (``customFields`` is decrypted per caller): sibling root fields
# resolved together, the change feed (which reads the primary) among them.
MIXED_QUERY = """{
  me { id name }
  customers(first: 5) { edges { node { id customFields deals(first: 2) { totalCount } } } }
  changes(first: 5) { cursor }
}"""


def _customer(name: str) -> dict[str, str]:
    return {"name": f"{name} {uuid.uuid4().hex[:8]}"}


async def _all_in_time(operations: list[Awaitable[Any]]) -> list[Any]:
    try:
        async with asyncio.timeout(DEADLINE_S):
            return await asyncio.gather(*operations)
    except TimeoutError:
        pytest.fail(
            f"{len(operations)} operations on a pool of {POOL} still waited after "
            f"{DEADLINE_S} s: some hold a connection while they wait for another"
        )


async def _in_use(http: httpx.AsyncClient) -> float:
    """Connections of the requests' pool checked out now (``/metrics``)."""
    samples = support.metric_samples((await http.get("/metrics")).text)
    return support.metric(
        samples, "crm_graphql_db_pool_connections", pool="sqlalchemy_requests", state="in_use"
    )


async def _received(ws: support.WSClient, socket: int) -> dict[str, Any]:
    try:
        return await ws.receive(DEADLINE_S)
    except TimeoutError:
        pytest.fail(
            f"socket {socket} got no answer in {DEADLINE_S} s: the sockets opened before it "
            f"keep the connections of the pool of {POOL}"
        )


async def test_more_writes_and_reads_at_once_than_pooled_connections_all_succeed(
    settings: Any, tokens: dict[Role, str]
) -> None:
    async with support.app_client(settings, db_pool_size=POOL, job_runner=False) as client:
        client.token = tokens[Role.MANAGER]
        operations: list[Awaitable[support.GraphQLResponse]] = []
        for i in range(AT_ONCE):
            both = {"a": _customer(f"First {i}"), "b": _customer(f"Second {i}")}
            operations.append(client(WRITE_READ_WRITE, both))
            operations.append(client(WRITE_THEN_READ, {"a": _customer(f"Only {i}")}))
            operations.append(client(MIXED_QUERY))
        responses = await _all_in_time(operations)
        for response in responses:
            data = response.ok()
            assert all(not field.get("errors") for field in data.values() if field), data
        # Executed (sessions of the requests' pool), not compiled (asyncpg pools of its
        # own): the compiled path would leave the property untested.
        assert not any("x-crm-read-path" in r.headers for r in responses)
        firsts = [r.data["a"]["customer"] for r in responses if "a" in r.data]
        assert len(firsts) == AT_ONCE
        assert all(c["deals"]["totalCount"] == 0 for c in firsts), firsts
        assert await _in_use(client.http) == 0


async def test_operations_over_websockets_give_their_connection_back(
    settings: Any, tokens: dict[Role, str]
) -> None:
    # A socket's GraphQL context lives as long as the socket; its operations' reads may not
    # keep their connection (nor wait for another in the socket's next mutation).
    token = tokens[Role.MANAGER]
    small = settings.model_copy(update={"db_pool_size": POOL, "job_runner": False})
    async with (
        serving_in_process(small) as (base_url, _),
        httpx.AsyncClient(base_url=base_url, timeout=DEADLINE_S + 10) as http,
    ):
        sockets: list[support.WSClient] = []
        try:
            for i in range(POOL + 2):
                ws = await support.WSClient.connect(base_url, token)
                sockets.append(ws)
                # Its credentials are checked in the database too.
                assert (await _received(ws, i))["type"] == "connection_ack"
                # A write, then reads: the socket's last operation read through a session.
                both = {"a": _customer(f"Socket {i}"), "b": _customer(f"Socket {i} too")}
                for document, variables in ((WRITE_READ_WRITE, both), (MIXED_QUERY, None)):
                    await ws.subscribe(document, variables)
                    answer = await _received(ws, i)
                    assert answer["type"] == "next", answer
                    assert not answer["payload"].get("errors"), answer
                    assert (await _received(ws, i))["type"] == "complete"
            # The sockets stay open, idle: none of the pool's connections is theirs.

            async def none_in_use() -> bool:
                return await _in_use(http) == 0

            await wait_for(none_in_use, timeout=5, what="no connection of the pool in use")
            client = support.GraphQLClient(http, token)
            responses = await _all_in_time(
                [client(WRITE_THEN_READ, {"a": _customer(f"Http {i}")}) for i in range(AT_ONCE)]
            )
            for response in responses:
                assert not response.ok()["createCustomer"]["errors"], response.body
        finally:
            for ws in sockets:
                await ws.close()


# A write whose payload reads, then a mutation that opens a session of its own
# (``Context.own_session``): typing in a conversation, and exchanging a refresh token.
WRITE_READ_TYPING = """mutation($a: CreateCustomerInput!, $c: ID!) {
  a: createCustomer(input: $a) { customer { id deals(first: 2) { totalCount } } errors { code } }
  t: setTyping(input: { conversationId: $c }) { ok errors { code } }
}"""
WRITE_READ_REFRESH = """mutation($a: CreateCustomerInput!, $r: String!) {
  a: createCustomer(input: $a) { customer { id deals(first: 2) { totalCount } } errors { code } }
  r: refreshToken(input: { refreshToken: $r }) { accessToken errors { code } }
}"""
START = """mutation($c: ID!) {
  startConversation(input: { customerId: $c, channel: CHAT }) { conversation { id } errors { code } }
}"""
LOGIN = """mutation($i: LoginInput!) { login(input: $i) { refreshToken errors { code } } }"""


async def test_mutations_with_a_session_of_their_own_wait_for_no_second_connection(
    settings: Any, tokens: dict[Role, str], users: dict[Role, Any]
) -> None:
    async with support.app_client(settings, db_pool_size=POOL, job_runner=False) as client:
        client.token = tokens[Role.AGENT]
        made = (await client(WRITE_THEN_READ, {"a": _customer("Typing")})).ok()
        customer = made["createCustomer"]["customer"]["id"]
        started = (await client(START, {"c": customer})).ok()["startConversation"]
        conversation = started["conversation"]["id"]
        refresh_tokens = []
        for _ in range(AT_ONCE):
            login = {"email": users[Role.AGENT].email, "password": support.PASSWORD}
            answer = (await client(LOGIN, {"i": login})).ok()["login"]
            refresh_tokens.append(answer["refreshToken"])
        operations: list[Awaitable[support.GraphQLResponse]] = []
        for i, refresh in enumerate(refresh_tokens):
            operations.append(
                client(WRITE_READ_TYPING, {"a": _customer(f"Typist {i}"), "c": conversation})
            )
            operations.append(client(WRITE_READ_REFRESH, {"a": _customer(f"R {i}"), "r": refresh}))
        responses = await _all_in_time(operations)
        for response in responses:
            data = response.ok()
            assert all(not field.get("errors") for field in data.values()), data
            assert data.get("t", {"ok": True})["ok"], data
            assert data.get("r", {"accessToken": "x"})["accessToken"], data
        assert await _in_use(client.http) == 0
