"""Open query budgets (README, "Query cost and budgets"): an answer reports its computed
cost and the caller's rate budget in ``extensions.cost`` when asked with ``X-CRM-Cost``;
admins set a partner API key's rate and cost budgets with ``setApiKeyBudget``, which the
key is then held to, over the compiled and the executed read paths alike, and which are
audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from crm_graphql.models import Role, User
from crm_graphql.settings import Settings
from tests import support

CUSTOMERS = "query($n: Int) { customers(first: $n) { nodes { id name } } }"
ASK = {"X-CRM-Cost": "1"}

CREATE_KEY = """mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) {
  token apiKey { id rateLimitPerMinute maxQueryCost } errors { code } } }"""
SET_BUDGET = """mutation($i: SetApiKeyBudgetInput!) { setApiKeyBudget(input: $i) {
  apiKey { id rateLimitPerMinute maxQueryCost } errors { code field message } } }"""
AUDIT = """query($id: ID!) { auditLog(filter: {action: {eq: "setApiKeyBudget"},
  entityId: {eq: $id}}) { nodes { action changes entityId } } }"""


def _cost_of_customers(page: int) -> int:
    """``customers`` (1) plus ``page`` times ``nodes { id name }`` (3): decision 0003."""
    return 1 + page * 3


def _limited(settings: Settings, **overrides: Any) -> Any:
    return support.app_client(
        settings, client_ip=support.random_ip(), rate_limits=True, **overrides
    )


def _server_with_key_limits(settings: Settings) -> Any:
    """An app of its own with rate limits on: 50 operations a minute per key, a cost of
    1000 per operation."""
    return _limited(settings, rate_limit_api_key_per_minute=50, max_query_cost=1000)


async def _key(
    admin: support.GraphQLClient, scopes: tuple[str, ...] | list[str] = ("CUSTOMERS_READ",)
) -> tuple[str, support.GraphQLClient]:
    created = (await admin(CREATE_KEY, {"i": {"name": "Partner", "scopes": list(scopes)}})).ok()[
        "createApiKey"
    ]
    assert created["apiKey"]["rateLimitPerMinute"] is None
    assert created["apiKey"]["maxQueryCost"] is None
    return created["apiKey"]["id"], support.GraphQLClient(admin.http, created["token"])


async def test_the_cost_and_rate_budget_are_reported_when_asked_and_only_then(
    settings: Settings, users: dict[Role, User]
) -> None:
    async with _limited(settings, rate_limit_user_per_minute=7) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        plain = await client(CUSTOMERS, {"n": 10})
        plain.ok()
        assert "extensions" not in plain.body
        assert plain.headers["ratelimit-remaining"] == "6"
        for page, remaining in ((10, 5), (3, 4)):
            asked = await client(CUSTOMERS, {"n": page}, headers=ASK)
            asked.ok()
            # The read took the compiled path, and still reports its cost.
            assert asked.headers["x-crm-read-path"] == "compiled"
            cost = asked.body["extensions"]["cost"]
            assert cost["requestedQueryCost"] == _cost_of_customers(page)
            assert cost["maximumQueryCost"] == settings.max_query_cost
            throttle = cost["throttleStatus"]
            assert throttle["maximumAvailable"] == 7 == int(asked.headers["ratelimit-limit"])
            assert throttle["currentlyAvailable"] == remaining
            assert str(remaining) == asked.headers["ratelimit-remaining"]
            assert throttle["restoreRate"] == round(7 / 60, 3)
            assert throttle["windowSeconds"] == 60
            assert throttle["resetSeconds"] == int(asked.headers["ratelimit-reset"])
        # An executed operation (a mutation) reports its cost too; a document that does
        # not parse has none.
        broken = await client("{ customers(first: 1) {", headers=ASK)
        assert broken.body["extensions"]["cost"]["requestedQueryCost"] is None
        mutation = await client("mutation { logout { ok errors { code } } }", headers=ASK)
        assert mutation.body["extensions"]["cost"]["requestedQueryCost"] == 4
        assert "x-crm-read-path" not in mutation.headers
    # Without rate limits there is no throttle status, the cost is still reported.
    async with support.app_client(settings) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        asked = await client(CUSTOMERS, {"n": 2}, headers=ASK)
        assert asked.body["extensions"]["cost"] == {
            "requestedQueryCost": _cost_of_customers(2),
            "maximumQueryCost": settings.max_query_cost,
            "throttleStatus": None,
        }


async def test_each_operation_of_a_batch_reports_its_own_cost(
    settings: Settings, users: dict[Role, User]
) -> None:
    async with _limited(settings, rate_limit_user_per_minute=10) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        batch = [
            {"query": CUSTOMERS, "variables": {"n": 1}},
            {"query": CUSTOMERS, "variables": {"n": 4}},
        ]
        response = await client.http.post(
            "/graphql", json=batch, headers={**client.headers(), **ASK}
        )
        assert response.status_code == 200
        costs = [r["extensions"]["cost"] for r in response.json()]
        assert [c["requestedQueryCost"] for c in costs] == [4, 13]
        # One rate decision for the whole batch (both operations were charged at once).
        assert {c["throttleStatus"]["currentlyAvailable"] for c in costs} == {8}


async def test_an_admin_sets_a_keys_budgets_and_the_key_is_held_to_them(
    settings: Settings, users: dict[Role, User]
) -> None:
    async with _server_with_key_limits(settings) as anonymous:
        admin = await anonymous.logged_in(users[Role.ADMIN].email, support.PASSWORD)
        key_id, partner = await _key(admin)
        budget = {"id": key_id, "rateLimitPerMinute": 4, "maxQueryCost": 20}
        set_ = (await admin(SET_BUDGET, {"i": budget})).ok()["setApiKeyBudget"]
        assert set_["errors"] == []
        assert set_["apiKey"] == budget

        within = await partner(CUSTOMERS, {"n": 5}, headers=ASK)
        within.ok()
        assert within.headers["ratelimit-limit"] == "4"
        assert within.headers["ratelimit-policy"] == "4;w=60"
        cost = within.body["extensions"]["cost"]
        assert cost["requestedQueryCost"] == _cost_of_customers(5) <= 20
        assert cost["maximumQueryCost"] == 20
        assert cost["throttleStatus"]["maximumAvailable"] == 4
        assert cost["throttleStatus"]["currentlyAvailable"] == 3

        over = await partner(CUSTOMERS, {"n": 10}, headers=ASK)
        assert over.status == 400
        assert over.errors[0]["extensions"] == {
            "code": "QUERY_TOO_COSTLY",
            "limit": 20,
            "cost": _cost_of_customers(10),
        }
        assert over.body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2

        # The cost budget back to the server's: the same read passes; the rate budget stays.
        reset_cost = {**budget, "maxQueryCost": None}
        assert (await admin(SET_BUDGET, {"i": reset_cost})).ok()["setApiKeyBudget"][
            "apiKey"
        ] == reset_cost
        again = await partner(CUSTOMERS, {"n": 10}, headers=ASK)
        again.ok()
        assert again.body["extensions"]["cost"]["maximumQueryCost"] == 1000
        assert (await partner(CUSTOMERS, {"n": 1})).status == 200
        refused = await partner(CUSTOMERS, {"n": 1})
        assert refused.status == 429
        assert refused.errors[0]["extensions"]["code"] == "RATE_LIMITED"
        assert refused.headers["ratelimit-limit"] == "4"

        # Every change is audited, in the API's names.
        entries = (await admin(AUDIT, {"id": key_id})).ok()["auditLog"]["nodes"]
        assert [e["changes"] for e in entries] == [
            {"maxQueryCost": {"before": 20, "after": None}},
            {
                "maxQueryCost": {"before": None, "after": 20},
                "rateLimitPerMinute": {"before": None, "after": 4},
            },
        ]


async def test_a_key_budget_is_at_most_the_servers(
    settings: Settings, users: dict[Role, User]
) -> None:
    async with _server_with_key_limits(settings) as anonymous:
        admin = await anonymous.logged_in(users[Role.ADMIN].email, support.PASSWORD)
        key_id, _ = await _key(admin)
        for field, value in (
            ("rateLimitPerMinute", 51),
            ("maxQueryCost", 1001),
            ("rateLimitPerMinute", 0),
            ("maxQueryCost", -5),
        ):
            result = await admin(SET_BUDGET, {"i": {"id": key_id, field: value}})
            payload = result.ok()["setApiKeyBudget"]
            assert payload["apiKey"] is None
            assert [(e["code"], e["field"]) for e in payload["errors"]] == [
                ("VALIDATION", field)
            ], payload
        # Not an admin: refused.
        manager = await anonymous.logged_in(users[Role.MANAGER].email, support.PASSWORD)
        refused = await manager(SET_BUDGET, {"i": {"id": key_id, "rateLimitPerMinute": 5}})
        assert [e["code"] for e in refused.ok()["setApiKeyBudget"]["errors"]] == ["FORBIDDEN"]


async def test_a_get_answer_varies_with_the_ask_for_its_cost(client: support.GraphQLClient) -> None:
    params = {"query": "{ __typename }"}
    plain = await client.http.get("/graphql", params=params, headers={"Accept": "application/json"})
    asked = await client.http.get(
        "/graphql", params=params, headers={"Accept": "application/json", **ASK}
    )
    assert plain.status_code == asked.status_code == 200
    assert "extensions" not in plain.json()
    assert asked.json()["extensions"]["cost"]["requestedQueryCost"] == 0
    # Caches keep the two apart: they differ, and so do their validators.
    assert "X-CRM-Cost" in asked.headers["vary"] and "X-CRM-Cost" in plain.headers["vary"]
    assert plain.headers["etag"] != asked.headers["etag"]


# ------------------------------------------------------- over WebSockets and SSE

PIPELINE = """mutation { createPipeline(input: {name: "Board", stages: [{name: "A"}]}) {
  pipeline { id } errors { message } } }"""
DEAL = """mutation($p: ID!, $t: String!) { createDeal(input: {pipelineId: $p, title: $t,
  currency: "EUR"}) { deal { id } errors { message } } }"""
BOARD = "subscription($p: ID!) { dealBoard(pipelineId: $p) { type deal { title } } }"
# dealBoard, type, deal, title: 1 each (HTTP runs no subscription to compare with).
BOARD_COST = 4
NEW_CUSTOMER = """mutation($n: String!) { createCustomer(input: {name: $n}) {
  customer { id name } errors { code } } }"""
PARTNER_SCOPES = ["CUSTOMERS_READ", "CUSTOMERS_WRITE", "DEALS_READ"]


@pytest.fixture(scope="module")
def limited_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn with rate limits on: 50 operations a minute per key by default, a
    cost of at most 1000 per operation."""
    env = {
        "CRM_RATE_LIMITS": "true",
        "CRM_RATE_LIMIT_API_KEY_PER_MINUTE": "50",
        "CRM_MAX_QUERY_COST": "1000",
        "CRM_WEBHOOK_DISPATCHER": "false",
    }
    with support.run_uvicorn(settings, extra_env=env) as base_url:
        yield base_url


@pytest.fixture
async def live_http(limited_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited_server, timeout=20) as http:
        yield http


async def _partner(
    http: httpx.AsyncClient, admin_token: str, **budget: int
) -> support.GraphQLClient:
    """A new API key (``PARTNER_SCOPES``) with ``budget`` set by an admin."""
    admin = support.GraphQLClient(http, admin_token)
    key_id, partner = await _key(admin, PARTNER_SCOPES)
    if budget:
        set_ = (await admin(SET_BUDGET, {"i": {"id": key_id, **budget}})).ok()
        assert set_["setApiKeyBudget"]["errors"] == []
    return partner


async def _ws(
    base_url: str, token: str, protocol: str, ask: dict[str, Any] | None
) -> support.WSClient:
    """A WebSocket whose connection_init carries the key and ``ask`` (or none)."""
    payload = {"Authorization": f"Bearer {token}", **(ask or {})}
    ws = await support.WSClient.connect(base_url, None, protocol=protocol, payload=payload)
    await ws.acknowledged()
    return ws


async def _payload(ws: support.WSClient, op_id: str) -> dict[str, Any]:
    """The payload of the operation's next ``next``/``data`` message."""
    message = await ws.receive()
    assert message["type"] in ("next", "data") and message["id"] == op_id, message
    return message["payload"]  # type: ignore[no-any-return]


async def test_an_operation_over_websocket_or_sse_reports_what_http_reports_for_it(
    limited_server: str, live_http: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    """The same document and key: the same cost and maximum (the key's own budget) as
    over HTTP, and the key's rate budget after this operation."""
    partner = await _partner(live_http, tokens[Role.ADMIN], rateLimitPerMinute=6, maxQueryCost=200)
    over_http = await partner(CUSTOMERS, {"n": 7}, headers=ASK)
    over_http.ok()
    http_cost = over_http.body["extensions"]["cost"]
    assert http_cost["requestedQueryCost"] == _cost_of_customers(7)
    assert http_cost["maximumQueryCost"] == 200
    assert http_cost["throttleStatus"]["maximumAvailable"] == 6
    # One operation back every 10 s: the figures below are exact unless the machine
    # stalls that long between two operations.
    available = http_cost["throttleStatus"]["currentlyAvailable"]
    assert available == 5

    ws = await _ws(limited_server, partner.token or "", "graphql-transport-ws", {"X-CRM-Cost": 1})
    try:
        op = await ws.subscribe(CUSTOMERS, {"n": 7})
        answer = await _payload(ws, op)
        assert answer["data"] == over_http.data
        cost = answer["extensions"]["cost"]
        assert {k: cost[k] for k in ("requestedQueryCost", "maximumQueryCost")} == {
            "requestedQueryCost": http_cost["requestedQueryCost"],
            "maximumQueryCost": 200,
        }
        throttle = cost["throttleStatus"]
        assert throttle["currentlyAvailable"] == 4  # counted once more, on the socket
        for same in ("maximumAvailable", "restoreRate", "windowSeconds"):
            assert throttle[same] == http_cost["throttleStatus"][same]
        assert (await ws.receive())["type"] == "complete"
        # A mutation too, with its own cost.
        op = await ws.subscribe(NEW_CUSTOMER, {"n": "Over a socket"})
        answer = await _payload(ws, op)
        assert answer["data"]["createCustomer"]["errors"] == []
        mutation_cost = answer["extensions"]["cost"]
    finally:
        await ws.close()
    again = await partner(NEW_CUSTOMER, {"n": "Over HTTP"}, headers=ASK)
    assert (
        again.body["extensions"]["cost"]["requestedQueryCost"]
        == mutation_cost["requestedQueryCost"]
        == 6
    )
    assert mutation_cost["throttleStatus"]["currentlyAvailable"] == 3

    headers = {**ASK, "Accept": "text/event-stream"}
    async with support.event_stream(
        live_http, partner.token, CUSTOMERS, {"n": 7}, headers=headers
    ) as stream:
        _, result = await stream.next_result()
        assert list(result) == ["data", "extensions"]  # last, as over HTTP
        cost = result["extensions"]["cost"]
        assert cost["requestedQueryCost"] == http_cost["requestedQueryCost"]
        assert cost["maximumQueryCost"] == 200
        assert cost["throttleStatus"]["currentlyAvailable"] == 1
        assert stream.response.headers["ratelimit-remaining"] == "1"
        assert [m.event for m in await stream.ended()] == ["complete"]
    # Refused before it ran (over the key's cost budget): the report comes with the
    # errors, as over HTTP.
    async with support.event_stream(
        live_http, partner.token, CUSTOMERS, {"n": 70}, headers=headers
    ) as stream:
        _, result = await stream.next_result()
        assert result["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
        cost = result["extensions"]["cost"]
        assert (cost["requestedQueryCost"], cost["maximumQueryCost"]) == (
            _cost_of_customers(70),
            200,
        )
        assert cost["throttleStatus"]["currentlyAvailable"] == 0


@pytest.mark.parametrize("transport", ["graphql-transport-ws", "graphql-ws", "sse"])
async def test_a_subscription_reports_its_cost_with_its_first_event_only(
    limited_server: str, live_http: httpx.AsyncClient, tokens: dict[Role, str], transport: str
) -> None:
    manager = support.GraphQLClient(live_http, tokens[Role.MANAGER])
    pipeline = (await manager(PIPELINE)).ok()["createPipeline"]["pipeline"]["id"]
    partner = await _partner(live_http, tokens[Role.ADMIN], maxQueryCost=300)
    token = partner.token or ""
    titles = ["First", "Second"]

    async def deals() -> None:
        await asyncio.sleep(0.5)  # the subscription is registered
        for title in titles:
            data = (await manager(DEAL, {"p": pipeline, "t": title})).ok()["createDeal"]
            assert data["errors"] == [], data

    if transport == "sse":
        headers = {**ASK, "Accept": "text/event-stream"}
        async with support.event_stream(
            live_http, token, BOARD, {"p": pipeline}, headers=headers
        ) as stream:
            writer = asyncio.create_task(deals())
            events = [(await stream.next_result())[1] for _ in titles]
            await writer
    else:
        # Both places a client may put the ask: beside Authorization, or among the
        # HTTP headers it sends in the payload (the legacy client here).
        ask: dict[str, Any] = (
            {"X-CRM-Cost": True}
            if transport == "graphql-transport-ws"
            else {"headers": {"x-crm-cost": "1"}}
        )
        ws = await _ws(limited_server, token, transport, ask)
        try:
            op = await ws.subscribe(BOARD, {"p": pipeline})
            writer = asyncio.create_task(deals())
            events = [await _payload(ws, op) for _ in titles]
            await writer
        finally:
            await ws.close()
    assert [e["data"]["dealBoard"]["deal"]["title"] for e in events] == titles
    first, second = events
    cost = first["extensions"]["cost"]
    assert cost["requestedQueryCost"] == BOARD_COST
    assert cost["maximumQueryCost"] == 300
    assert cost["throttleStatus"]["maximumAvailable"] == 50  # the server's, for keys
    assert "extensions" not in second


@pytest.mark.parametrize("transport", ["graphql-transport-ws", "graphql-ws", "sse"])
async def test_without_the_ask_answers_carry_no_cost(
    limited_server: str, live_http: httpx.AsyncClient, tokens: dict[Role, str], transport: str
) -> None:
    manager = support.GraphQLClient(live_http, tokens[Role.MANAGER])
    pipeline = (await manager(PIPELINE)).ok()["createPipeline"]["pipeline"]["id"]
    token = tokens[Role.AGENT]

    async def deal() -> None:
        await asyncio.sleep(0.5)  # the subscription is registered
        (await manager(DEAL, {"p": pipeline, "t": "Quiet"})).ok()

    if transport == "sse":
        headers = {"Accept": "text/event-stream"}
        async with support.event_stream(live_http, token, CUSTOMERS, {"n": 1}) as stream:
            _, result = await stream.next_result()
            assert set(result) == {"data"}
        async with support.event_stream(
            live_http, token, BOARD, {"p": pipeline}, headers=headers
        ) as stream:
            writer = asyncio.create_task(deal())
            _, event = await stream.next_result()
            await writer
    else:
        ws = await _ws(limited_server, token, transport, None)
        try:
            if transport == "graphql-transport-ws":
                op = await ws.subscribe(CUSTOMERS, {"n": 1})
                assert set(await _payload(ws, op)) == {"data"}
                assert (await ws.receive())["type"] == "complete"
            op = await ws.subscribe(BOARD, {"p": pipeline})
            writer = asyncio.create_task(deal())
            event = await _payload(ws, op)
            await writer
        finally:
            await ws.close()
    assert event == {"data": {"dealBoard": {"type": "deal.created", "deal": {"title": "Quiet"}}}}


async def test_an_event_stream_refused_before_it_runs_reports_as_http_does(
    live_http: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    """An unknown persisted query, an unknown operation name: no cost (nothing to
    measure) and the same maximum as over HTTP, with the rate budget they spent."""
    # A key of 12 operations a minute gets one back every 5 s, so the refusal's spending
    # shows (with the server's 600 a minute, one comes back every 0.1 s: a loaded machine
    # refilled the bucket between the two requests).
    partner = await _partner(live_http, tokens[Role.ADMIN], rateLimitPerMinute=12, maxQueryCost=200)
    auth = {"Authorization": f"Bearer {partner.token}", **ASK}
    unknown_hash = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}}
    unknown_name = {"query": CUSTOMERS, "variables": {"n": 2}, "operationName": "Nope"}
    for body, code in (
        (unknown_hash, "PERSISTED_QUERY_NOT_FOUND"),
        (unknown_name, "GRAPHQL_VALIDATION_FAILED"),
    ):
        over_http = await live_http.post("/graphql", json=body, headers=auth)
        http_cost = over_http.json()["extensions"]["cost"]
        headers = {**auth, "Accept": "text/event-stream"}
        async with live_http.stream("POST", "/graphql", json=body, headers=headers) as response:
            _, result = await support.EventStreamReader(response).next_result()
        assert result["errors"][0]["extensions"]["code"] == code
        cost = result["extensions"]["cost"]
        assert cost["requestedQueryCost"] == http_cost["requestedQueryCost"]
        assert cost["maximumQueryCost"] == http_cost["maximumQueryCost"] == 200
        assert cost["throttleStatus"]["maximumAvailable"] == 12  # the key's budget
        assert (
            cost["throttleStatus"]["currentlyAvailable"]
            < http_cost["throttleStatus"]["currentlyAvailable"]
        )
    assert http_cost["requestedQueryCost"] == _cost_of_customers(2)
