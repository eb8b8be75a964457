"""Subscriptions over Server-Sent Events (GraphQL over SSE, "distinct connections" mode)
against a real uvicorn: the official graphql-sse client, resume by Last-Event-ID without
loss or duplicates, authentication and credentials that end, compression that does not
hold events back, and the 406 for a subscription asked for as one JSON answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from crm_graphql.global_ids import decode_id
from crm_graphql.models import Role, User
from crm_graphql.services import deals
from crm_graphql.services.auth import TokenConfig, issue_access_token
from crm_graphql.services.events import Position
from tests import support
from tests.realtime.streams import head_cursor

BOARD = """subscription($p: ID!, $after: String) {
  dealBoard(pipelineId: $p, after: $after) { cursor type deal { title } }
}"""
FEED = """subscription($after: String) {
  activityFeed(after: $after) { cursor activity { subject } }
}"""


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server, timeout=20) as client:
        yield client


@pytest.fixture
def manager(http: httpx.AsyncClient, tokens: dict[Role, str]) -> support.GraphQLClient:
    return support.GraphQLClient(http, tokens[Role.MANAGER])


async def _new_board(
    gql: support.GraphQLClient, sessionmaker: Any, users: dict[Role, User]
) -> tuple[str, dict[str, str]]:
    """A new pipeline's global id, and the board subscription's variables that yield
    exactly what is written on it from now on (``after`` its stream's head)."""
    data = (
        await gql(
            'mutation { createPipeline(input: {name: "Board", stages: [{name: "A"}]}) { pipeline { id } errors { message } } }'
        )
    ).ok()["createPipeline"]
    pipeline = data["pipeline"]["id"]
    pipeline_id = decode_id(pipeline, "Pipeline")
    assert pipeline_id is not None
    workspace_id = users[Role.ADMIN].workspace_id
    topic = deals.pipeline_topic(pipeline_id)
    return pipeline, {"p": pipeline, "after": await head_cursor(sessionmaker, workspace_id, topic)}


async def _deal(gql: support.GraphQLClient, pipeline: str, title: str) -> None:
    data = (
        await gql(
            'mutation($p: ID!, $t: String!) { createDeal(input: {pipelineId: $p, title: $t, currency: "EUR"}) { deal { id } errors { message } } }',
            {"p": pipeline, "t": title},
        )
    ).ok()["createDeal"]
    assert data["errors"] == [], data


# ------------------------------------------------------------ the official client


class NodeClient:
    """tests/clients/graphql_sse_subscription.mjs, driven line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = 20) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, "the graphql-sse client exited"
        return json.loads(raw)  # type: ignore[no-any-return]

    async def expect(self, key: str) -> dict[str, Any]:
        line = await self.line()
        assert key in line, line
        return line

    async def command(self, name: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(name.encode() + b"\n")
        await self.proc.stdin.drain()


async def test_official_graphql_sse_client_resumes_by_last_event_id_without_loss_or_duplicates(
    live_server: str,
    manager: support.GraphQLClient,
    tokens: dict[Role, str],
    sessionmaker: Any,
    users: dict[Role, User],
) -> None:
    pipeline, variables = await _new_board(manager, sessionmaker, users)
    request = {"query": BOARD, "variables": variables}
    argv = support.node_command(
        "tests/clients/graphql_sse_subscription.mjs",
        f"{live_server}/graphql",
        tokens[Role.AGENT],
        json.dumps(request),
        "dealBoard",
    )
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=support.ROOT
    )
    client = NodeClient(proc)
    try:
        assert await client.expect("connected") == {"connected": False, "lastEventId": None}
        received: list[dict[str, Any]] = []
        for title in ("one", "two", "three"):
            await _deal(manager, pipeline, title)
        for _ in range(3):
            received.append((await client.expect("result"))["result"]["data"]["dealBoard"])
        await client.command("drop")
        await client.expect("dropped")
        for title in ("four", "five"):  # written while the client is away
            await _deal(manager, pipeline, title)
        await client.command("reconnect")
        reconnected = await client.expect("connected")
        assert reconnected == {"connected": True, "lastEventId": received[-1]["cursor"]}
        for _ in range(2):
            received.append((await client.expect("result"))["result"]["data"]["dealBoard"])
        await _deal(manager, pipeline, "six")  # live again
        received.append((await client.expect("result"))["result"]["data"]["dealBoard"])
        titles = [event["deal"]["title"] for event in received]
        assert titles == ["one", "two", "three", "four", "five", "six"]
        positions = [Position.decode(event["cursor"]) for event in received]
        assert positions == sorted(set(positions))  # in order, each once
        await client.command("stop")
        assert await client.line() == {"complete": True}
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# ------------------------------------------------------------------ the protocol


async def test_events_carry_their_cursor_as_id_and_last_event_id_resumes_after_it(
    http: httpx.AsyncClient,
    manager: support.GraphQLClient,
    tokens: dict[Role, str],
    sessionmaker: Any,
    users: dict[Role, User],
) -> None:
    pipeline, variables = await _new_board(manager, sessionmaker, users)
    async with support.event_stream(http, tokens[Role.AGENT], BOARD, variables) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        await _deal(manager, pipeline, "first")
        event_id, result = await stream.next_result()
        assert result["data"]["dealBoard"]["deal"]["title"] == "first"
        assert event_id == result["data"]["dealBoard"]["cursor"]
    for title in ("second", "third"):
        await _deal(manager, pipeline, title)
    # The `after` variable still names the old cursor: Last-Event-ID comes later, it wins.
    async with support.event_stream(
        http, tokens[Role.AGENT], BOARD, variables, last_event_id=event_id
    ) as stream:
        titles = []
        for _ in range(2):
            _, result = await stream.next_result()
            titles.append(result["data"]["dealBoard"]["deal"]["title"])
        assert titles == ["second", "third"]
    async with support.event_stream(
        http, tokens[Role.AGENT], BOARD, variables, last_event_id="not-a-cursor"
    ) as stream:
        _, result = await stream.next_result()
        assert result["errors"][0]["extensions"]["code"] == "VALIDATION"
        assert [m.event for m in await stream.ended()] == ["complete"]


async def test_request_errors_come_as_a_next_event_then_complete(
    http: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    """As the protocol asks: an accepted stream carries them (EventSource reads no 4xx)."""
    async with support.event_stream(http, tokens[Role.AGENT], "subscription { nope }") as stream:
        assert stream.response.status_code == 200
        _, result = await stream.next_result()
        assert result["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert [m.event for m in await stream.ended()] == ["complete"]


async def test_a_query_streams_one_result_then_complete(
    http: httpx.AsyncClient, tokens: dict[Role, str], users: dict[Role, User]
) -> None:
    async with support.event_stream(http, tokens[Role.AGENT], "{ me { email } }") as stream:
        event_id, result = await stream.next_result()
        assert event_id is None
        assert result == {"data": {"me": {"email": users[Role.AGENT].email}}}
        assert [m.event for m in await stream.ended()] == ["complete"]


async def test_no_or_bad_credentials_get_401_before_any_stream(http: httpx.AsyncClient) -> None:
    for token in (None, "not-a-token", "crm_unknownkey_123"):
        async with support.event_stream(http, token, FEED) as stream:
            response = stream.response
            assert response.status_code == 401, token
            assert response.headers["www-authenticate"].startswith("Bearer")
            body = json.loads(await response.aread())
            assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_revoking_the_api_key_ends_its_stream_with_an_error_and_complete(
    http: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    admin = support.GraphQLClient(http, tokens[Role.ADMIN])
    created = (
        await admin(
            'mutation { createApiKey(input: {name: "SSE", scopes: [CUSTOMERS_READ]}) { apiKey { id } token errors { message } } }'
        )
    ).ok()["createApiKey"]
    async with support.event_stream(http, created["token"], FEED) as stream:
        assert stream.response.status_code == 200
        revoked = (
            await admin(
                "mutation($k: ID!) { revokeApiKey(input: {id: $k}) { errors { message } } }",
                {"k": created["apiKey"]["id"]},
            )
        ).ok()["revokeApiKey"]
        assert revoked["errors"] == []
        messages = await stream.ended()
    assert [m.event for m in messages] == ["next", "complete"], messages
    error = messages[0].json()["errors"][0]
    assert error == {"message": "API key revoked", "extensions": {"code": "UNAUTHENTICATED"}}
    async with support.event_stream(http, created["token"], FEED) as stream:
        assert stream.response.status_code == 401


async def test_an_expired_access_token_ends_its_stream_without_complete(
    http: httpx.AsyncClient, settings: Any, users: dict[Role, User]
) -> None:
    """Renewable: the client reconnects (with a fresh token) and resumes; the comment
    says why."""
    config = TokenConfig(secret_key=settings.secret_key, access_ttl=timedelta(seconds=2))
    token = issue_access_token(config, users[Role.AGENT])[0]
    async with support.event_stream(http, token, FEED) as stream:
        assert stream.response.status_code == 200
        messages = await stream.ended()
    assert [(m.event, m.comment) for m in messages] == [
        (None, "access token expired: reconnect with a fresh token")
    ]


@pytest.mark.parametrize("encoding", ["identity", "gzip", "br"])
async def test_compression_passes_each_event_on_as_it_comes(
    http: httpx.AsyncClient,
    manager: support.GraphQLClient,
    tokens: dict[Role, str],
    sessionmaker: Any,
    users: dict[Role, User],
    encoding: str,
) -> None:
    """The stream never ends by itself: an event read from it was not held back until the
    end (starlette-compress flushes each message of a compressed event stream)."""
    pipeline, variables = await _new_board(manager, sessionmaker, users)
    async with support.event_stream(
        http,
        tokens[Role.AGENT],
        BOARD,
        variables,
        headers={"Accept-Encoding": encoding},
    ) as stream:
        assert stream.response.headers.get("content-encoding", "identity") == encoding
        assert "content-length" not in stream.response.headers
        for n in range(2):
            title = f"compressed {n}"
            await _deal(manager, pipeline, title)
            _, result = await stream.next_result()
            assert result["data"]["dealBoard"]["deal"]["title"] == title


async def test_a_subscription_asked_for_as_json_gets_406_naming_where_to_subscribe(
    http: httpx.AsyncClient, live_server: str, tokens: dict[Role, str]
) -> None:
    gql = support.GraphQLClient(http, tokens[Role.AGENT])
    posted = await gql(FEED, headers={"Accept": "application/json"})
    got = await http.get(
        "/graphql",
        params={"query": FEED},
        headers={"Authorization": f"Bearer {tokens[Role.AGENT]}"},
    )
    for status, body in ((posted.status, posted.body), (got.status_code, got.json())):
        assert status == 406
        error = body["errors"][0]
        assert error["extensions"]["code"] == "SUBSCRIPTION_NEEDS_STREAM"
        websocket = live_server.replace("http://", "ws://") + "/graphql"
        assert websocket in error["message"] and "text/event-stream" in error["message"]


async def test_get_streams_queries_and_subscriptions_but_not_mutations(
    http: httpx.AsyncClient, tokens: dict[Role, str], users: dict[Role, User]
) -> None:
    """GET is for EventSource-style clients (with the Authorization header)."""
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {tokens[Role.AGENT]}"}
    me = {"data": {"me": {"email": users[Role.AGENT].email}}}
    expected: list[tuple[dict[str, str], Any]] = [
        ({"query": "{ me { email } }"}, me),
        ({"query": "mutation { logout(input: {}) { ok } }"}, "METHOD_NOT_ALLOWED"),
        ({"query": "query A { me { email } }", "operationName": "B"}, "GRAPHQL_VALIDATION_FAILED"),
    ]
    for params, answer in expected:
        async with http.stream("GET", "/graphql", params=params, headers=headers) as response:
            assert response.status_code == 200
            stream = support.EventStreamReader(response)
            _, result = await stream.next_result()
            if isinstance(answer, str):
                assert result["errors"][0]["extensions"]["code"] == answer
            else:
                assert result == answer
            assert [m.event for m in await stream.ended()] == ["complete"]


async def test_a_live_dashboard_streams_its_answer_then_each_change(
    http: httpx.AsyncClient,
    manager: support.GraphQLClient,
    tokens: dict[Role, str],
    sessionmaker: Any,
    users: dict[Role, User],
) -> None:
    """Dashboards push their renderings to the stream as to a socket (no ids: no cursor)."""
    pipeline, _ = await _new_board(manager, sessionmaker, users)
    query = """subscription($p: ID!) {
      dashboard { dealsAggregate(filter: {pipelineId: {eq: $p}}) { count } }
    }"""
    async with support.event_stream(http, tokens[Role.MANAGER], query, {"p": pipeline}) as stream:
        event_id, result = await stream.next_result()
        assert event_id is None
        assert result == {"data": {"dashboard": {"dealsAggregate": {"count": 0}}}}
        await _deal(manager, pipeline, "counted")
        _, result = await stream.next_result()
        assert result == {"data": {"dashboard": {"dealsAggregate": {"count": 1}}}}


async def test_an_unknown_persisted_query_is_a_next_event_then_complete(
    http: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {tokens[Role.AGENT]}"}
    async with http.stream("POST", "/graphql", json=body, headers=headers) as response:
        stream = support.EventStreamReader(response)
        _, result = await stream.next_result()
        assert result["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        assert [m.event for m in await stream.ended()] == ["complete"]
