"""Prepared calls of every mutation (``SCENARIOS``): one that succeeds and one that fails
with a known error, each in a fresh workspace. Used by the audit, permission and tenant
isolation tests, which run every mutation of the schema."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import GraphQLObjectType, get_named_type
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.models import (
    AuditLog,
    Base,
    DeliveryStatus,
    Event,
    Role,
    User,
    WebhookDelivery,
)
from crm_graphql.schema import schema
from crm_graphql.services import api_keys, jobs
from crm_graphql.services.actor import Actor
from tests import support

assert schema._schema.mutation_type is not None
MUTATIONS = schema._schema.mutation_type.fields
MUTATION_NAMES = sorted(MUTATIONS)
STALE_VERSION = 999
IDLE_JOB_KIND = "test-idle"  # no runner runs it


def document(name: str) -> str:
    """``mutation($i: <Input>) { name(input: $i) { <node> { id } errors {...} } }``, from
    the schema: the payload's Relay nodes (their ids) and its errors."""
    field = MUTATIONS[name]
    assert list(field.args) == ["input"], f"{name} does not take one `input`: write its document"
    payload = get_named_type(field.type)
    assert isinstance(payload, GraphQLObjectType)
    nodes = [
        f"{key} {{ id }}"
        for key, sub in payload.fields.items()
        if any(i.name == "Node" for i in getattr(get_named_type(sub.type), "interfaces", ()))
    ]
    selection = " ".join([*nodes, "errors { code field message }"])
    return f"mutation($i: {field.args['input'].type}) {{ {name}(input: $i) {{ {selection} }} }}"


def node_id(payload: dict[str, Any], field: str | None = None) -> str | None:
    """The global ID of the entity a mutation payload returns (None: it returns none);
    ``field`` names it in a payload with several (a message and its conversation)."""
    if field is not None:
        return payload[field]["id"]  # type: ignore[no-any-return]
    ids = [value["id"] for value in payload.values() if isinstance(value, dict)]
    assert len(ids) <= 1, payload
    return ids[0] if ids else None


def unknown_id(type_name: str) -> str:
    return to_global_id(type_name, uuid.uuid4())


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def error_codes(result: support.GraphQLResponse, name: str) -> list[str]:
    """Codes of the payload's ``errors``, or of top-level errors when there is no payload."""
    payload = (result.data or {}).get(name)
    if payload is not None:
        return [e["code"] for e in payload["errors"]]
    return [e.get("extensions", {}).get("code") for e in result.errors]


@dataclass(frozen=True)
class Call:
    """One prepared call of a mutation."""

    input: dict[str, Any]
    entity: str | None = None  # global ID the audit must name; None: the payload's entity
    client: support.GraphQLClient | None = None  # None: the admin user's client
    error: str | None = None  # the code a failing call must answer with
    node: str | None = None  # payload field of the audited entity, when the payload has several
    api_key_id: uuid.UUID | None = None  # the client's API key, the audit's actor (not ``user``)


@dataclass
class Env:
    """What scenarios prepare with. Every call is made by, or logs in as, ``user``."""

    admin: support.GraphQLClient
    anonymous: support.GraphQLClient
    user: User
    sessionmaker: async_sessionmaker[AsyncSession]

    async def run(self, name: str, call: Call) -> support.GraphQLResponse:
        return await (call.client or self.admin)(document(name), {"i": call.input})

    async def make(self, mutation: str, /, **input: Any) -> str:
        """Run a mutation that must succeed; the global ID of the entity it returns."""
        payload = (await self.run(mutation, Call(input))).ok()[mutation]
        assert payload["errors"] == [], payload
        created = node_id(payload)
        assert created, payload
        return created

    @property
    def user_id(self) -> str:
        return to_global_id("User", self.user.id)

    async def refresh_token(self) -> str:
        result = await self.anonymous(
            "mutation($i: LoginInput!) { login(input: $i) { refreshToken } }",
            {"i": {"email": self.user.email, "password": support.PASSWORD}},
        )
        return result.ok()["login"]["refreshToken"]  # type: ignore[no-any-return]

    async def customer(self) -> str:
        return await self.make("createCustomer", name=unique("Customer"))

    async def agent_user(self) -> str:
        return await self.make("createUser", **await user_input(self))

    async def company(self) -> str:
        return await self.make("createCompany", name=unique("Company"))

    async def pipeline(self) -> str:
        return await self.make("createPipeline", name=unique("Pipeline"))

    async def stage(self, pipeline: str | None = None) -> str:
        pipeline = pipeline or await self.pipeline()
        return await self.make("createStage", pipelineId=pipeline, name=unique("Stage"))

    async def deal(self, stage: str | None = None) -> str:
        stage = stage or await self.stage()
        return await self.make("createDeal", title=unique("Deal"), stageId=stage, currency="EUR")

    async def activity(self) -> str:
        customer = await self.customer()
        return await self.make("createActivity", type="NOTE", subject="Hi", customerId=customer)

    async def order(self) -> str:
        customer = await self.customer()
        return await self.make("createOrder", customerId=customer, amount="10", currency="EUR")

    async def product(self) -> str:
        return await self.make("createProduct", **await product_input(self))

    async def conversation(self) -> str:
        customer = await self.customer()
        return await self.make("startConversation", customerId=customer, channel="CHAT")

    async def webhook(self) -> str:
        """A webhook no test event goes to (only erasures): server processes of the test
        session dispatch deliveries in the background, which would change the rows a test
        compares before and after a call."""
        return await self.make(
            "createWebhook", url="http://127.0.0.1:9/crm", eventTypes=["customer.erased"]
        )

    async def webhook_delivery(self, status: DeliveryStatus) -> str:
        """A delivery of a new webhook in ``status`` (written directly: deliveries are made
        by the dispatcher, not by a mutation); a pending one is due in a day, so no
        dispatcher of another test makes it meanwhile."""
        webhook_id = from_global_id(await self.webhook())[1]
        due = datetime.now(UTC) + timedelta(days=1 if status is DeliveryStatus.PENDING else 0)
        async with self.sessionmaker() as session, session.begin():
            event = Event(
                workspace_id=self.user.workspace_id,
                topic="workspace",
                type="pipeline.created",
                entity_type="Pipeline",
                payload={},
            )
            session.add(event)
            await session.flush()
            delivery = WebhookDelivery(
                workspace_id=self.user.workspace_id,
                webhook_id=webhook_id,
                event_id=event.id,
                status=status,
                attempts=1,
                next_attempt_at=due,
            )
            session.add(delivery)
        return to_global_id("WebhookDelivery", delivery.id)

    async def segment(self) -> str:
        """A segment shared with the workspace (managers may change it, agents may not)."""
        return await self.make(
            "createSegment", name=unique("Segment"), filter=SEGMENT_FILTER, shared=True
        )

    async def job(self) -> str:
        """A queued job of ``user`` of a kind no runner knows, so it stays queued."""
        actor = Actor(workspace_id=self.user.workspace_id, role=Role.ADMIN, user_id=self.user.id)
        async with self.sessionmaker() as session, session.begin():
            job = await jobs.create_job(
                actor, session, kind=IDLE_JOB_KIND, params={}, action="testJob"
            )
        return to_global_id("Job", job.id)

    async def api_key(self, *scopes: str) -> tuple[support.GraphQLClient, uuid.UUID]:
        """A client authenticated by a new API key of ``user``'s workspace (made by the
        service directly, so its audit row is not the one a scenario checks), and its id."""
        admin = Actor(workspace_id=self.user.workspace_id, role=Role.ADMIN, user_id=self.user.id)
        async with self.sessionmaker() as session, session.begin():
            key, token = await api_keys.create_api_key(
                admin, session, name=unique("Channel"), scopes=scopes
            )
        return support.GraphQLClient(self.admin.http, token), key.id

    async def custom_field(self) -> str:
        return await self.make(
            "createCustomFieldDefinition",
            entity="CUSTOMER",
            key="f" + uuid.uuid4().hex[:8],
            label="Tier",
            type="SINGLE_SELECT",
            options=["gold", "silver"],
        )

    async def customer_says(self, conversation: str) -> None:
        """A customer message through a channel integration's API key."""
        channel, _ = await self.api_key(api_keys.CONVERSATIONS_WRITE)
        call = Call({"conversationId": conversation, "body": "Hello?"}, client=channel)
        result = (await self.run("postCustomerMessage", call)).ok()["postCustomerMessage"]
        assert result["errors"] == [], result


Prepare = Callable[[Env], Awaitable[Call]]
Inputs = Callable[[Env], Awaitable[dict[str, Any]]]
Maker = Callable[[Env], Awaitable[str]]


@dataclass(frozen=True)
class Scenario:
    succeeds: Prepare
    fails: Prepare


def creating(inputs: Inputs, bad: dict[str, Any], error: str) -> Scenario:
    """A create mutation: valid ``inputs``; the same with ``bad`` fails with ``error``."""

    async def succeeds(env: Env) -> Call:
        return Call(await inputs(env))

    async def fails(env: Env) -> Call:
        return Call({**await inputs(env), **bad}, error=error)

    return Scenario(succeeds, fails)


def changing(make: Maker, good: dict[str, Any], bad: dict[str, Any], error: str) -> Scenario:
    """A mutation of an existing entity (made by ``make``), given by ``id``."""

    async def succeeds(env: Env) -> Call:
        id = await make(env)
        return Call({"id": id, **good}, entity=id)

    async def fails(env: Env) -> Call:
        return Call({"id": await make(env), **bad}, error=error)

    return Scenario(succeeds, fails)


def archiving(make: Maker) -> Scenario:
    return changing(make, {}, {"expectedVersion": STALE_VERSION}, "CONFLICT")


def login_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        credentials = {"email": env.user.email, "password": support.PASSWORD}
        return Call(credentials, client=env.anonymous)

    async def fails(env: Env) -> Call:
        credentials = {"email": env.user.email, "password": "wrong password"}
        return Call(credentials, client=env.anonymous, error="INVALID_CREDENTIALS")

    return Scenario(succeeds, fails)


def refresh_token_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        return Call({"refreshToken": await env.refresh_token()}, client=env.anonymous)

    async def fails(env: Env) -> Call:
        return Call({"refreshToken": "not-a-token"}, client=env.anonymous, error="UNAUTHENTICATED")

    return Scenario(succeeds, fails)


def logout_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        return Call({"refreshToken": await env.refresh_token()}, entity=env.user_id)

    async def fails(env: Env) -> Call:
        return Call({}, client=env.anonymous, error="UNAUTHENTICATED")

    return Scenario(succeeds, fails)


def merge_customers_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        survivor, duplicate = await env.customer(), await env.customer()
        return Call({"survivorId": survivor, "mergedIds": [duplicate]}, entity=survivor)

    async def fails(env: Env) -> Call:
        survivor, duplicate = await env.customer(), await env.customer()
        merged = [duplicate, unknown_id("Customer")]  # fails after locking the others
        return Call({"survivorId": survivor, "mergedIds": merged}, error="NOT_FOUND")

    return Scenario(succeeds, fails)


def upsert_customers_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        existing = await env.make("createCustomer", name=unique("Customer"), email=email)
        records = [{"name": "Updated", "email": email.upper()}, {"name": unique("New")}]
        return Call({"records": records}, entity=existing)

    async def fails(env: Env) -> Call:
        return Call({"records": []}, error="VALIDATION")

    return Scenario(succeeds, fails)


def upsert_companies_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        domain = f"{uuid.uuid4().hex[:10]}.example.com"
        existing = await env.make("createCompany", name=unique("Company"), domain=domain)
        records = [{"name": "Updated", "domain": domain.upper()}, {"name": unique("New")}]
        return Call({"records": records}, entity=existing)

    async def fails(env: Env) -> Call:
        return Call({"records": [{"name": str(i)} for i in range(1001)]}, error="VALIDATION")

    return Scenario(succeeds, fails)


def upsert_deals_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        key = "x" + uuid.uuid4().hex[:8]
        await env.make(
            "createCustomFieldDefinition", entity="DEAL", key=key, label="Their id", type="TEXT"
        )
        stage = await env.stage()
        existing = await env.make(
            "createDeal", title=unique("Deal"), stageId=stage, currency="EUR",
            customFields={key: "ext-1"},
        )  # fmt: skip
        records = [
            {"title": "Updated", "currency": "EUR", "customFields": {key: "ext-1"}},
            {"title": unique("New"), "stageId": stage, "currency": "EUR",
             "customFields": {key: "ext-2"}},
        ]  # fmt: skip
        return Call({"records": records, "matchOn": key}, entity=existing)

    async def fails(env: Env) -> Call:
        records = [{"title": str(i), "currency": "EUR"} for i in range(1001)]
        return Call({"records": records}, error="VALIDATION")

    return Scenario(succeeds, fails)


def create_export_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        # Nothing changes: the audit row names the workspace whose data leaves.
        workspace = to_global_id("Workspace", env.user.workspace_id)
        return Call({"type": "CUSTOMERS", "format": "CSV"}, entity=workspace)

    async def fails(env: Env) -> Call:
        input = {"type": "CUSTOMERS", "format": "CSV", "fields": ["id", "nope"]}
        return Call(input, error="VALIDATION")

    return Scenario(succeeds, fails)


def start_bulk_change_scenario(
    change: dict[str, Any], refused: dict[str, Any], error: str
) -> Scenario:
    """A bulk change over an empty set (``change``), and one refused before its job."""

    async def succeeds(env: Env) -> Call:
        return Call(change)

    async def fails(env: Env) -> Call:
        return Call(refused, error=error)

    return Scenario(succeeds, fails)


_NO_TAG = {"tags": {"anyOf": ["none-such"]}}


async def import_input(env: Env) -> dict[str, Any]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    return {"type": "CUSTOMERS", "content": f"name,email\nImported,{email}\n"}


def cancel_job_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        job = await env.job()
        return Call({"id": job}, entity=job)

    async def fails(env: Env) -> Call:
        job = await env.job()
        (await env.run("cancelJob", Call({"id": job}))).ok()
        return Call({"id": job}, error="CONFLICT")  # finished already

    return Scenario(succeeds, fails)


def move_deal_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        pipeline = await env.pipeline()
        deal = await env.deal(await env.stage(pipeline))
        return Call({"id": deal, "stageId": await env.stage(pipeline)}, entity=deal)

    async def fails(env: Env) -> Call:
        deal = await env.deal()
        elsewhere = await env.stage()  # a stage of another pipeline
        return Call({"id": deal, "stageId": elsewhere}, error="VALIDATION")

    return Scenario(succeeds, fails)


def send_message_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        input = {"conversationId": await env.conversation(), "body": "Hi", "clientMessageId": "m1"}
        return Call(input, node="message")

    async def fails(env: Env) -> Call:
        input = {"conversationId": await env.conversation(), "body": " "}
        return Call(input, error="VALIDATION")

    return Scenario(succeeds, fails)


def post_customer_message_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        channel, key_id = await env.api_key(api_keys.CONVERSATIONS_WRITE)
        input = {"conversationId": await env.conversation(), "body": "Where is my order?"}
        return Call(input, client=channel, node="message", api_key_id=key_id)

    async def fails(env: Env) -> Call:
        input = {"conversationId": await env.conversation(), "body": "Not a customer"}
        return Call(input, error="FORBIDDEN")  # a user does not post as the customer

    return Scenario(succeeds, fails)


def rate_conversation_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        channel, key_id = await env.api_key(api_keys.CONVERSATIONS_WRITE)
        conversation = await env.conversation()
        input = {"conversationId": conversation, "score": 5, "comment": "Quick and kind"}
        return Call(input, entity=conversation, client=channel, api_key_id=key_id)

    async def fails(env: Env) -> Call:
        channel, _ = await env.api_key(api_keys.CONVERSATIONS_WRITE)
        # A first use stamps the key's `last_used_at`, which the failing call must not.
        (await channel("{ conversations(first: 1) { totalCount } }")).ok()
        input = {"conversationId": await env.conversation(), "score": 6}
        return Call(input, client=channel, error="VALIDATION")

    return Scenario(succeeds, fails)


def assign_conversation_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        conversation = await env.conversation()
        return Call({"id": conversation, "assigneeId": env.user_id}, entity=conversation)

    async def fails(env: Env) -> Call:
        input = {"id": await env.conversation(), "assigneeId": unknown_id("User")}
        return Call(input, error="NOT_FOUND")

    return Scenario(succeeds, fails)


def mark_conversation_read_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        conversation = await env.conversation()
        await env.customer_says(conversation)
        return Call({"id": conversation}, entity=conversation)

    async def fails(env: Env) -> Call:
        conversation = await env.conversation()
        await env.customer_says(conversation)
        return Call({"id": conversation, "upToSeq": 2}, error="VALIDATION")  # past the last

    return Scenario(succeeds, fails)


def revoke_api_key_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        _, key_id = await env.api_key(api_keys.DEALS_READ)
        return Call({"id": to_global_id("ApiKey", key_id)})

    async def fails(env: Env) -> Call:
        return Call({"id": unknown_id("ApiKey")}, error="NOT_FOUND")

    return Scenario(succeeds, fails)


async def _api_key(env: Env) -> str:
    _, key_id = await env.api_key(api_keys.DEALS_READ)
    return to_global_id("ApiKey", key_id)


async def user_input(env: Env) -> dict[str, Any]:
    return {
        "email": f"new-{uuid.uuid4().hex[:10]}@example.com",
        "name": unique("Agent"),
        "role": "AGENT",
        "password": "a long enough password",
    }


async def api_key_input(env: Env) -> dict[str, Any]:
    return {"name": unique("Partner"), "scopes": ["CUSTOMERS_READ"]}


async def webhook_input(env: Env) -> dict[str, Any]:
    return {"url": "http://127.0.0.1:9/in", "eventTypes": ["deal.moved"]}


def redeliver_scenario() -> Scenario:
    async def succeeds(env: Env) -> Call:
        id = await env.webhook_delivery(DeliveryStatus.FAILED)
        return Call({"id": id}, entity=id, node="delivery")

    async def fails(env: Env) -> Call:
        return Call({"id": await env.webhook_delivery(DeliveryStatus.PENDING)}, error="CONFLICT")

    return Scenario(succeeds, fails)


def workspace_scenario(good: dict[str, Any], bad: dict[str, Any], error: str) -> Scenario:
    """A mutation of the workspace's settings: the audit names the workspace."""

    async def succeeds(env: Env) -> Call:
        return Call(good, entity=to_global_id("Workspace", env.user.workspace_id))

    async def fails(env: Env) -> Call:
        return Call(bad, error=error)

    return Scenario(succeeds, fails)


def of_customer() -> Scenario:
    """A mutation taking ``customerId``; an unknown one is NOT_FOUND."""

    async def succeeds(env: Env) -> Call:
        customer = await env.customer()
        return Call({"customerId": customer}, entity=customer)

    async def fails(env: Env) -> Call:
        return Call({"customerId": unknown_id("Customer")}, error="NOT_FOUND")

    return Scenario(succeeds, fails)


async def customer_input(env: Env) -> dict[str, Any]:
    return {"name": "Ada", "companyId": await env.company()}


async def company_input(env: Env) -> dict[str, Any]:
    return {"name": unique("Acme")}


async def pipeline_input(env: Env) -> dict[str, Any]:
    return {"name": unique("Sales"), "stages": [{"name": "Lead"}, {"name": "Won"}]}


async def stage_input(env: Env) -> dict[str, Any]:
    return {"pipelineId": await env.pipeline(), "name": "Proposal", "probability": 40}


async def deal_input(env: Env) -> dict[str, Any]:
    return {"title": "Big one", "stageId": await env.stage(), "currency": "EUR", "amount": "5"}


async def activity_input(env: Env) -> dict[str, Any]:
    return {"type": "CALL", "subject": "Called", "customerId": await env.customer()}


async def order_input(env: Env) -> dict[str, Any]:
    return {"customerId": await env.customer(), "amount": "19.99", "currency": "EUR"}


async def custom_field_input(env: Env) -> dict[str, Any]:
    return {"entity": "DEAL", "key": "r" + uuid.uuid4().hex[:8], "label": "Region", "type": "TEXT"}


async def product_input(env: Env) -> dict[str, Any]:
    return {
        "sku": f"SKU-{uuid.uuid4().hex[:8]}",
        "name": "Beans",
        "price": "9.50",
        "currency": "EUR",
    }


async def conversation_input(env: Env) -> dict[str, Any]:
    return {"customerId": await env.customer(), "channel": "EMAIL", "body": "Dear Ada"}


SEGMENT_FILTER = {"name": {"contains": "a"}, "lifecycleStage": {"in": ["LEAD", "CUSTOMER"]}}


async def segment_input(env: Env) -> dict[str, Any]:
    return {"name": unique("Segment"), "filter": SEGMENT_FILTER, "description": "Leads"}


SCENARIOS: dict[str, Scenario] = {
    "login": login_scenario(),
    "refreshToken": refresh_token_scenario(),
    "logout": logout_scenario(),
    "createCustomer": creating(customer_input, {"email": "not-an-email"}, "VALIDATION"),
    "updateCustomer": changing(Env.customer, {"name": "Renamed"}, {"email": "nope"}, "VALIDATION"),
    "archiveCustomer": archiving(Env.customer),
    "mergeCustomers": merge_customers_scenario(),
    "upsertCustomers": upsert_customers_scenario(),
    "createCompany": creating(company_input, {"name": " "}, "VALIDATION"),
    "updateCompany": changing(Env.company, {"industry": "Retail"}, {"name": ""}, "VALIDATION"),
    "archiveCompany": archiving(Env.company),
    "upsertCompanies": upsert_companies_scenario(),
    "createPipeline": creating(
        pipeline_input, {"stages": [{"name": "Lead", "probability": 150}]}, "VALIDATION"
    ),
    "updatePipeline": changing(Env.pipeline, {"name": "Renamed"}, {"name": ""}, "VALIDATION"),
    "archivePipeline": archiving(Env.pipeline),
    "createStage": creating(stage_input, {"pipelineId": unknown_id("Pipeline")}, "NOT_FOUND"),
    "updateStage": changing(Env.stage, {"probability": 50}, {"probability": 101}, "VALIDATION"),
    "archiveStage": archiving(Env.stage),
    "createDeal": creating(deal_input, {"currency": "EURO"}, "VALIDATION"),
    "updateDeal": changing(Env.deal, {"amount": "99.50"}, {"lostReason": "Price"}, "VALIDATION"),
    "archiveDeal": archiving(Env.deal),
    "moveDeal": move_deal_scenario(),
    "upsertDeals": upsert_deals_scenario(),
    "createExport": create_export_scenario(),
    "startBulkCustomerChange": start_bulk_change_scenario(
        {"filter": _NO_TAG, "addTags": ["seen"]},
        {"addTags": ["a"], "removeTags": ["a"]},
        "VALIDATION",
    ),
    "startBulkCompanyChange": start_bulk_change_scenario(
        {"filter": _NO_TAG, "addTags": ["seen"]},
        {"addTags": ["a"], "removeTags": ["a"]},
        "VALIDATION",
    ),
    "startBulkDealChange": start_bulk_change_scenario(
        {"filter": {"title": {"eq": "none-such"}}, "ownerId": None},
        {"stageId": unknown_id("Stage")},
        "NOT_FOUND",
    ),
    "createActivity": creating(activity_input, {"customerId": None}, "VALIDATION"),
    "updateActivity": changing(
        Env.activity, {"subject": "Edited"}, {"dueAt": "2030-01-01T09:00:00Z"}, "VALIDATION"
    ),
    "archiveActivity": archiving(Env.activity),
    "createOrder": creating(order_input, {"amount": "-1"}, "VALIDATION"),
    "updateOrder": changing(
        Env.order, {"status": "REFUNDED"}, {"customerId": unknown_id("Customer")}, "NOT_FOUND"
    ),
    "archiveOrder": archiving(Env.order),
    "createProduct": creating(product_input, {"price": "-1"}, "VALIDATION"),
    "updateProduct": changing(Env.product, {"name": "Dark beans"}, {"sku": " "}, "VALIDATION"),
    "archiveProduct": archiving(Env.product),
    "startConversation": creating(
        conversation_input, {"customerId": unknown_id("Customer")}, "NOT_FOUND"
    ),
    "sendMessage": send_message_scenario(),
    "postCustomerMessage": post_customer_message_scenario(),
    "rateConversation": rate_conversation_scenario(),
    "assignConversation": assign_conversation_scenario(),
    "setConversationStatus": changing(
        Env.conversation,
        {"status": "CLOSED"},
        {"status": "CLOSED", "expectedVersion": STALE_VERSION},
        "CONFLICT",
    ),
    "markConversationRead": mark_conversation_read_scenario(),
    "createApiKey": creating(api_key_input, {"scopes": []}, "VALIDATION"),
    "revokeApiKey": revoke_api_key_scenario(),
    "setApiKeyBudget": changing(
        _api_key,
        {"rateLimitPerMinute": 100, "maxQueryCost": 500},
        {"maxQueryCost": 0},
        "VALIDATION",
    ),
    "createUser": creating(user_input, {"password": "short"}, "VALIDATION"),
    "updateUser": changing(Env.agent_user, {"role": "MANAGER"}, {"name": " "}, "VALIDATION"),
    "createWebhook": creating(webhook_input, {"url": "ftp://hooks.example.com"}, "VALIDATION"),
    "updateWebhook": changing(
        Env.webhook, {"isActive": False}, {"eventTypes": ["Not A Type"]}, "VALIDATION"
    ),
    "deleteWebhook": changing(Env.webhook, {}, {"expectedVersion": STALE_VERSION}, "CONFLICT"),
    "redeliverWebhookDelivery": redeliver_scenario(),
    "rotateWebhookSecret": changing(
        Env.webhook, {}, {"expectedVersion": STALE_VERSION}, "CONFLICT"
    ),
    "setSensitiveCustomFields": workspace_scenario(
        {"keys": ["nationalId"]}, {"keys": [" "]}, "VALIDATION"
    ),
    "setWorkspaceEmailFrom": workspace_scenario(
        {"address": "Support@Acme.Example", "name": "Acme"},
        {"address": "Acme <support@acme.example>"},
        "VALIDATION",
    ),
    "createSegment": creating(segment_input, {"filter": {"nmae": {"eq": "x"}}}, "VALIDATION"),
    "updateSegment": changing(
        Env.segment, {"name": "Renamed"}, {"filter": {"name": {"contans": "a"}}}, "VALIDATION"
    ),
    "archiveSegment": archiving(Env.segment),
    "exportCustomerData": of_customer(),
    "eraseCustomer": of_customer(),
    "createCustomFieldDefinition": creating(custom_field_input, {"key": "Not A Key"}, "VALIDATION"),
    "updateCustomFieldDefinition": changing(
        Env.custom_field, {"addOptions": ["bronze"]}, {"addOptions": ["gold"]}, "VALIDATION"
    ),
    "archiveCustomFieldDefinition": archiving(Env.custom_field),
    "cancelJob": cancel_job_scenario(),
    "startImport": creating(import_input, {"content": " "}, "VALIDATION"),
}


# Mutations that change no data, so write no audit row and have no scenario: each says
# why. Only these are let through; any other mutation without a scenario fails below.
EXEMPT: dict[str, str] = {
    "setTyping": "ephemeral signal over Redis; changes no data (tests/api/test_typing_presence.py)",
}


def scenario_of(name: str) -> Scenario:
    if name in EXEMPT:
        pytest.skip(f"{name} is exempt: {EXEMPT[name]}")
    if name not in SCENARIOS:
        pytest.fail(
            f"Mutation `{name}` has no scenario in SCENARIOS of {__name__}: "
            "add one proving it is audited and that its failures change nothing"
        )
    return SCENARIOS[name]


async def audit_rows(
    sessionmaker: async_sessionmaker[AsyncSession], request_id: str
) -> list[AuditLog]:
    """Audit rows of one request, in any workspace."""
    async with sessionmaker() as session:
        rows = await session.scalars(select(AuditLog).where(AuditLog.request_id == request_id))
        return list(rows)


async def workspace_rows(
    sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the workspace, to tell whether anything changed."""
    tables = [t for t in Base.metadata.sorted_tables if "workspace_id" in t.c]
    async with sessionmaker() as session:
        return {
            table.name: [
                tuple(row)
                for row in await session.execute(
                    select(table)
                    .where(table.c.workspace_id == workspace_id)
                    .order_by(*table.primary_key)
                )
            ]
            for table in tables
        }


async def prepare(name: str, env: Env) -> Call:
    """A call of mutation ``name`` that succeeds for the env's admin (exempt ones too)."""
    if name == "setTyping":  # exempt from the audit scenarios: it changes no data
        return Call({"conversationId": await env.conversation(), "isTyping": True})
    return await scenario_of(name).succeeds(env)


def make_env(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Env:
    admin = as_role[Role.ADMIN]
    return Env(admin, support.GraphQLClient(admin.http), users[Role.ADMIN], sessionmaker)
