"""A partner API key's own rate budget (``setApiKeyBudget``) holds across server
processes: two uvicorn processes on the same PostgreSQL and Redis share one bucket per
key, so a burst spread over both gets the key's budget once, not once per process, and
another key keeps its own."""

from __future__ import annotations

import asyncio
import time

import httpx

from crm_graphql.models import Role
from tests import support
from tests.realtime.processes import Spawn

CREATE_KEY = """mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) {
  token apiKey { id } errors { code } } }"""
SET_BUDGET = """mutation($i: SetApiKeyBudgetInput!) { setApiKeyBudget(input: $i) {
  apiKey { rateLimitPerMinute } errors { code } } }"""
CUSTOMERS = "{ customers(first: 1) { nodes { id } } }"
BUDGET = 6  # operations a minute: one back every 10 s
BURST = 30
SERVER_KEY_BUDGET = 100


async def _key(admin: support.GraphQLClient, budget: int | None = None) -> str:
    created = (
        await admin(CREATE_KEY, {"i": {"name": "Partner", "scopes": ["CUSTOMERS_READ"]}})
    ).ok()["createApiKey"]
    assert created["errors"] == [], created
    if budget is not None:
        set_ = await admin(
            SET_BUDGET, {"i": {"id": created["apiKey"]["id"], "rateLimitPerMinute": budget}}
        )
        assert set_.ok()["setApiKeyBudget"] == {
            "apiKey": {"rateLimitPerMinute": budget},
            "errors": [],
        }
    return created["token"]  # type: ignore[no-any-return]


async def test_a_keys_rate_budget_is_shared_by_every_process(
    spawn: Spawn, tokens: dict[Role, str]
) -> None:
    extra = {
        "CRM_RATE_LIMITS": "true",
        "CRM_RATE_LIMIT_API_KEY_PER_MINUTE": str(SERVER_KEY_BUDGET),
    }
    a, b = await asyncio.gather(spawn("budget-A", **extra), spawn("budget-B", **extra))
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        admin = support.GraphQLClient(on_a, tokens[Role.ADMIN])
        limited = await _key(admin, BUDGET)
        other = await _key(admin)
        clients = [support.GraphQLClient(http, limited) for http in (on_a, on_b)]

        started = time.monotonic()
        answers = await asyncio.gather(
            *(clients[i % 2](CUSTOMERS, headers={"X-CRM-Cost": "1"}) for i in range(BURST))
        )
        elapsed = time.monotonic() - started

        accepted = [r for r in answers if r.status == 200]
        refused = [(i, r) for i, r in enumerate(answers) if r.status != 200]
        # The budget once for both processes (plus what it got back during the burst,
        # nothing unless the machine took 10 s for it).
        assert len(accepted) == BUDGET + int(elapsed // 10), (len(accepted), elapsed)
        if elapsed < 10:
            # One bucket: each accepted operation saw a different amount left.
            left = sorted(
                r.body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
                for r in accepted
            )
            assert left == list(range(BUDGET))
        for _, response in refused:
            assert response.status == 429
            assert response.errors[0]["extensions"]["code"] == "RATE_LIMITED"
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["ratelimit-limit"] == str(BUDGET)
        # Both processes refused (each got half of the burst, more than the budget).
        assert {i % 2 for i, _ in refused} == {0, 1}

        # Another key is not held to it: the server's budget for keys, on both processes.
        for http in (on_a, on_b, on_a, on_b):
            response = await support.GraphQLClient(http, other)(CUSTOMERS)
            assert response.status == 200, response.body
            assert response.headers["ratelimit-limit"] == str(SERVER_KEY_BUDGET)
        # And the limited key is still refused on either.
        for client in clients:
            assert (await client(CUSTOMERS)).status == 429
