"""Compiled renderings of live events (issue 14, decision 0039): a subscription whose
selection the compiled path knows renders each event as one statement, with the event's
ids as parameters, and its frames are byte for byte those of the executed rendering (the
oracle): the same random subscriptions, over every event type, for every role and for API
keys, on a server with the compiled path and on one without, catching up on the same
events, must receive the same frames."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from crm_graphql.compiled.compiler import plain_fields
from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Role, User
from crm_graphql.realtime import SERVER_WEBSOCKETS
from crm_graphql.resolvers.readmodel import EVENT_TYPES, OBJECT_TYPES
from crm_graphql.schema import schema
from crm_graphql.services import api_keys, events
from crm_graphql.services.actor import Actor
from crm_graphql.services.auth import TokenConfig, issue_access_token
from tests import support
from tests.api.differential import ReadQueries, Samples
from tests.realtime.processes import serving_in_process

SEED = 14_039
DOCUMENTS_PER_READER = 12


@pytest.fixture
async def two_servers(settings: Any) -> AsyncIterator[tuple[str, str, Starlette]]:
    """The same database and Redis served twice: with the compiled read path, and
    without it (every rendering executed)."""
    executed = settings.model_copy(update={"compiled_reads": False})
    async with (
        serving_in_process(settings, SERVER_WEBSOCKETS) as (compiled_url, app),
        serving_in_process(executed, SERVER_WEBSOCKETS) as (executed_url, _),
    ):
        yield compiled_url, executed_url, app


def _token(settings: Any, user: User) -> str:
    return issue_access_token(TokenConfig(secret_key=settings.secret_key), user)[0]


class _Writer:
    """Mutations through the public API, as one caller."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.client = support.GraphQLClient(http, token)

    async def __call__(
        self, field: str, input: dict[str, Any], select: str, input_type: str | None = None
    ) -> Any:
        name = input_type or field[0].upper() + field[1:]
        document = f"mutation($i: {name}Input!) {{ {field}(input: $i) {{ errors {{ code message }} {select} }} }}"
        result = (await self.client(document, {"i": input})).ok()[field]
        assert not result["errors"], (field, result)
        return result


async def _write_events(
    base_url: str, tokens: dict[str, str], users: dict[Role, User]
) -> dict[str, str]:
    """Events of every type a subscription delivers, written through the API: the ids of
    what they name, for the subscriptions' arguments."""
    ids: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        admin = _Writer(http, tokens["admin"])
        agent = _Writer(http, tokens["agent"])
        channel = _Writer(http, tokens["channel"])
        user_id = {role: to_global_id("User", user.id) for role, user in users.items()}

        customer = (
            await admin(
                "createCustomer",
                {"name": 'Zoë "Q" \\ O\'Neil', "email": f"c-{uuid.uuid4().hex[:8]}@example.com"},
                "customer { id }",
            )
        )["customer"]["id"]
        # The deal board: a pipeline, its stages, a deal moved, a stage added, renamed.
        pipeline = (
            await admin(
                "createPipeline",
                {"name": "Board", "stages": [{"name": "New"}, {"name": "Won", "probability": 90}]},
                "pipeline { id stages { id } }",
            )
        )["pipeline"]
        ids["pipeline"] = pipeline["id"]
        first, last = (s["id"] for s in pipeline["stages"])
        deal = (
            await admin(
                "createDeal",
                {
                    "title": "Deal \u2028 1",
                    "currency": "EUR",
                    "amount": "1234.50",
                    "pipelineId": pipeline["id"],
                    "stageId": first,
                    "customerId": customer,
                },
                "deal { id }",
            )
        )["deal"]["id"]
        await admin("moveDeal", {"id": deal, "stageId": last}, "deal { id }")
        await admin("createStage", {"pipelineId": pipeline["id"], "name": "Lost"}, "stage { id }")
        await admin("updatePipeline", {"id": pipeline["id"], "name": "Board 2"}, "pipeline { id }")
        # The activity feed: a note logged, edited and archived; a call on the deal.
        note = (
            await agent(
                "createActivity",
                {"type": "NOTE", "subject": "First", "body": "x\ny", "customerId": customer},
                "activity { id }",
            )
        )["activity"]["id"]
        await agent("updateActivity", {"id": note, "subject": "Edited"}, "activity { id }")
        await admin(
            "createActivity",
            {"type": "CALL", "subject": "Call", "customerId": customer, "dealId": deal},
            "activity { id }",
        )
        await admin("archiveActivity", {"id": note}, "activity { id }", "Archive")
        # Conversations: public, private to the agent, over email; messages, a customer's
        # message and rating (an API key's), an assignment changed, read, closed.
        started = {}
        for name, channel_name, private in (
            ("public", "CHAT", False),
            ("private", "CHAT", True),
            ("email", "EMAIL", False),
        ):
            started[name] = (
                await admin(
                    "startConversation",
                    {
                        "customerId": customer,
                        "channel": channel_name,
                        "subject": f"{name} \U0001f600",
                        "isPrivate": private,
                        "assigneeId": user_id[Role.AGENT],
                    },
                    "conversation { id }",
                )
            )["conversation"]["id"]
        ids["conversation"] = started["private"]
        for name in ("public", "private", "email"):
            await agent(
                "sendMessage",
                {"conversationId": started[name], "body": f"Hello {name} <b>\\"},
                "message { id }",
            )
            if name == "private":
                continue  # an API key does not see private conversations
            await channel(
                "postCustomerMessage",
                {"conversationId": started[name], "body": "Thanks"},
                "message { id }",
            )
        await agent("markConversationRead", {"id": started["public"]}, "conversation { id }")
        await admin(
            "assignConversation",
            {"id": started["public"], "assigneeId": user_id[Role.MANAGER]},
            "conversation { id }",
        )
        await channel(
            "rateConversation",
            {"conversationId": started["public"], "score": 4, "comment": "ok"},
            "conversation { id }",
        )
        await admin(
            "setConversationStatus",
            {"id": started["private"], "status": "CLOSED"},
            "conversation { id }",
        )
    return ids


def _focus() -> dict[str, set[str]]:
    """The fields the compiled path knows, per type: half the documents keep to them."""
    known = {
        name: {"id", *plain_fields(schema, name), *info.relations, *info.lists, *info.computed}
        for name, info in OBJECT_TYPES.items()
    }
    for name in EVENT_TYPES:
        known[name] = set(schema._schema.type_map[name].fields)  # type: ignore[attr-defined]
    return known


async def _frames(base_url: str, token: str, documents: list[tuple[str, Any]]) -> Any:
    """Every message of each operation (the documents, subscribed on one socket) until the
    socket has been quiet for a while: by operation id, as received."""
    ws = await support.WSClient.connect(base_url, token)
    await ws.acknowledged()
    for document, variables in documents:
        await ws.subscribe(document, variables)
    received: dict[str, list[str]] = defaultdict(list)
    try:
        while True:
            try:
                text = await asyncio.wait_for(ws.ws.recv(), 3)
            except TimeoutError:
                break
            message = json.loads(text)
            if message.get("type") in ("ka", "ping", "pong"):
                continue
            received[message["id"]].append(text)
    finally:
        await ws.close()
    return received


async def test_compiled_renderings_are_the_executed_ones_byte_for_byte(
    two_servers: tuple[str, str, Starlette],
    settings: Any,
    sessionmaker: Any,
    users: dict[Role, User],
    actors: dict[Role, Actor],
) -> None:
    compiled_url, executed_url, app = two_servers
    async with sessionmaker() as session, session.begin():
        keys = {}
        for name, scopes in (
            ("channel", ("conversations:read", "conversations:write", "customers:read")),
            ("key conversations", ("conversations:read",)),
            ("key deals", ("deals:read", "customers:read")),
        ):
            _, keys[name] = await api_keys.create_api_key(
                actors[Role.ADMIN], session, name=name, scopes=scopes
            )
    tokens = {role.value: _token(settings, user) for role, user in users.items()}
    tokens.update(keys)
    ids = await _write_events(compiled_url, tokens, users)
    # From the streams' start (the workspace is new): every event, rendered as it is now.
    origin = events.ORIGIN.encode()
    fields = {
        "inbox": f'(after: "{origin}")',
        "conversationEvents": f'(conversationId: "{ids["conversation"]}", after: "{origin}")',
        "activityFeed": f'(after: "{origin}")',
        "dealBoard": f'(pipelineId: "{ids["pipeline"]}", after: "{origin}")',
    }
    rng = random.Random(SEED)
    generator = ReadQueries(schema._schema, Samples(), rng, _focus())
    compiled_reads = app.state.crm.compiled
    hub = app.state.crm.hub
    before = compiled_reads.event_renders, hub.renders
    readers = [*(r.value for r in Role), "key conversations", "key deals"]
    totals: dict[str, int] = defaultdict(int)
    for reader in readers:
        documents = [
            generator.subscription(field, fields[field])
            for field in list(fields) * (DOCUMENTS_PER_READER // len(fields))
        ]
        fast, slow = await asyncio.gather(
            _frames(compiled_url, tokens[reader], documents),
            _frames(executed_url, tokens[reader], documents),
        )
        for index, (document, variables) in enumerate(documents):
            op_id = str(index + 1)
            assert fast.get(op_id) == slow.get(op_id), (reader, document, variables)
            totals[reader] += sum('"type":"next"' in f for f in slow.get(op_id, ()))
    # Every reader got events, and most renderings were compiled (the others select a
    # field only the executed path answers, or an argument it answers with an error).
    assert all(totals[r] for r in readers), totals
    compiled, rendered = compiled_reads.event_renders - before[0], hub.renders - before[1]
    print("STATS", compiled, rendered, dict(totals))
    assert compiled > rendered * 0.6, (compiled, rendered, totals)
