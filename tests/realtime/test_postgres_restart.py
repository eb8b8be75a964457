"""PostgreSQL stopped and started again under a stream of writes and reads (issue 12,
point 4): every request that fails because of it answers ``UNAVAILABLE``, never
``INTERNAL``; an operation that produced no data is an HTTP 503 with ``Retry-After``.

A real ``pg_ctl stop -m fast`` / ``start`` of a cluster of this test's own: sessions are
ended by the server (AdminShutdown), new connections refused while it shuts down and
starts (``the database system is shutting down`` / ``starting up``), then refused at the
TCP level while it is down."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from crm_graphql.db.engine import make_engine, make_sessionmaker
from crm_graphql.models import Role
from crm_graphql.services import auth
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import support
from tests.realtime.processes import PostgresCluster, ServerProcess, server_env, wait_for
from tests.realtime.streams import close_code

SEND = """mutation($i: SendMessageInput!) {
  sendMessage(input: $i) { message { id seq } errors { code message } }
}"""
# One read the compiled path answers, one the executed path answers.
READS = (
    "{ customers(first: 5) { edges { node { id name } } } }",
    "{ conversations(first: 5) { edges { node { id status } } } me { email } }",
)
START = """mutation($i: StartConversationInput!) {
  startConversation(input: $i) { conversation { id } errors { code message } }
}"""
EVENTS = """subscription($id: ID!) {
  conversationEvents(conversationId: $id) { cursor type }
}"""
CUSTOMER = """mutation { createCustomer(input: {name: "Restart"}) {
  customer { id } errors { code message } } }"""


@dataclass
class Answer:
    kind: str
    status: int
    body: Any
    retry_after: str | None

    @property
    def codes(self) -> set[str]:
        return {str((e.get("extensions") or {}).get("code")) for e in self.body.get("errors") or []}

    @property
    def no_data(self) -> bool:
        data = self.body.get("data")
        return data is None or all(v is None for v in data.values())


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    # Not under pytest's base temp: a pytest run starting meanwhile makes that 0700,
    # and the cluster runs as another user when the tests run as root.
    directory = Path(tempfile.mkdtemp(prefix="crm-test-pg-"))
    cluster = PostgresCluster(directory)
    cluster.init()
    cluster.start()
    try:
        support.create_database(cluster.url(), "crm")
        support.migrate(cluster.url("crm"))
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def server_on_private_postgres(
    settings: Any, private_postgres: PostgresCluster, redis_url: str, tmp_path_factory: Any
) -> AsyncIterator[ServerProcess]:
    env = server_env(settings, redis_url, CRM_DATABASE_URL=private_postgres.url("crm"))
    server = ServerProcess("pg-restart", env, Path(tmp_path_factory.mktemp("pg-restart-logs")))
    await server.launch()
    try:
        yield server
    finally:
        server.stop()


async def _agent_token(settings: Any, database_url: str) -> str:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            workspace = await auth.create_workspace(session, name=f"Restart {uuid.uuid4().hex}")
            user = await auth.create_user(
                session,
                workspace=workspace,
                email=f"agent-{uuid.uuid4().hex[:8]}@example.com",
                password=support.PASSWORD,
                role=Role.AGENT,
            )
    finally:
        await engine.dispose()
    return issue_access_token(TokenConfig(secret_key=settings.secret_key), user)[0]


async def test_postgres_restart_answers_unavailable_never_internal(
    settings: Any, private_postgres: PostgresCluster, server_on_private_postgres: ServerProcess
) -> None:
    server = server_on_private_postgres
    token = await _agent_token(settings, private_postgres.url("crm"))
    answers: list[Answer] = []
    served_after_restart: dict[str, int] = {}
    restarted = asyncio.Event()
    stop = asyncio.Event()

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        gql = support.GraphQLClient(http, token)
        customer = (await gql(CUSTOMER)).ok()["createCustomer"]["customer"]["id"]
        started = await gql(START, {"i": {"customerId": customer, "channel": "CHAT"}})
        conversation = started.ok()["startConversation"]["conversation"]["id"]

        async def ask(kind: str, query: str, variables: dict[str, Any]) -> Answer:
            payload = {"query": query, "variables": variables}
            try:
                response = await http.post("/graphql", json=payload, headers=gql.headers())
            except httpx.HTTPError as exc:
                return Answer(kind, 0, {"errors": [{"extensions": {"code": repr(exc)}}]}, None)
            try:
                body = response.json()
            except ValueError:
                body = {"errors": [{"extensions": {"code": "NOT JSON"}}], "text": response.text}
            return Answer(kind, response.status_code, body, response.headers.get("retry-after"))

        async def worker(kind: str, query: str, variables: Any) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                answer = await ask(kind, query, variables(n) if callable(variables) else variables)
                answers.append(answer)
                if restarted.is_set() and not answer.codes:
                    served_after_restart[kind] = served_after_restart.get(kind, 0) + 1
                await asyncio.sleep(0.02)

        def message(n: int) -> dict[str, Any]:
            return {"i": {"conversationId": conversation, "body": f"message {n}"}}

        open_socket = await support.WSClient.connect(server.url, token)
        await open_socket.acknowledged()
        workers = [asyncio.create_task(worker(f"send-{i}", SEND, message)) for i in range(3)]
        workers += [asyncio.create_task(worker(f"read-{i}", q, {})) for i, q in enumerate(READS)]
        try:
            await wait_for(lambda: len(answers) >= 15, timeout=20, what="traffic before")
            await asyncio.to_thread(private_postgres.stop, "fast")
            stopped_at = time.monotonic()
            await wait_for(
                lambda: sum(1 for a in answers if a.codes) >= 10,
                timeout=20,
                what="failures while stopped",
            )
            # A subscription started meanwhile on an open connection is told the same.
            await open_socket.subscribe(EVENTS, {"id": conversation})
            message = await open_socket.receive()
            payload = message["payload"]
            ws_errors = payload if message["type"] == "error" else payload["errors"]
            assert [e["extensions"]["code"] for e in ws_errors] == ["UNAVAILABLE"], message
            assert ws_errors[0]["extensions"]["retryAfter"] == 2, message
            # A connection opened meanwhile cannot have its credentials checked: it is
            # closed with 1013 (try again later), which clients retry.
            for protocol in ("graphql-transport-ws", "graphql-ws"):
                late = await support.WSClient.connect(server.url, token, protocol=protocol)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await late.receive()
                assert close_code(closed.value) == 1013, (protocol, server.log_tail(60))
                assert "unavailable" in (closed.value.rcvd.reason or ""), closed.value
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - stopped_at)))
            await asyncio.to_thread(private_postgres.start)
            restarted.set()
            await wait_for(
                lambda: (
                    len(served_after_restart) == len(workers)
                    and min(served_after_restart.values()) >= 3
                ),
                timeout=45,
                what="every client served again after the restart",
            )
        finally:
            stop.set()
            await asyncio.gather(*workers)
            await open_socket.close()

    failed = [a for a in answers if a.codes]
    tally = Counter((a.kind.split("-")[0], a.status, ",".join(sorted(a.codes))) for a in failed)
    wrong = [a for a in failed if a.codes != {"UNAVAILABLE"}]
    assert not wrong, (
        dict(tally),
        [(a.kind, a.status, a.body) for a in wrong[:3]],
        server.log_tail(400),
    )
    for a in failed:
        for error in a.body["errors"]:
            assert isinstance(error["extensions"].get("retryAfter"), int), a.body
        if a.no_data:
            assert a.status == 503, (a.kind, a.status, a.body)
            assert a.retry_after is not None and int(a.retry_after) >= 1, (a.kind, a.body)
        else:
            assert a.status == 200, (a.kind, a.status, a.body)
    sends = [a for a in failed if a.kind.startswith("send")]
    reads = [a for a in failed if a.kind.startswith("read")]
    assert sends and reads, "the outage was not seen by both writes and reads"
    print(f"{len(answers)} answers, {len(failed)} failed, all UNAVAILABLE: {dict(tally)}")
