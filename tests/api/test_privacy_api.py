"""Data protection through GraphQL: sensitive custom fields encrypted at rest and hidden
from viewers and API keys; a customer's data exported; a customer erased while orders,
deals, counts and the audit trail stay."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id
from crm_graphql.models import AuditLog, Base, Customer, Event, Role, User, Workspace
from crm_graphql.services import api_keys
from crm_graphql.services.actor import Actor
from tests import support
from tests.documents import CREATE_ACTIVITY, START_CONVERSATION, UPDATE_CUSTOMER

SET_SENSITIVE = """mutation($keys: [String!]!) {
  setSensitiveCustomFields(input: {keys: $keys}) { keys customersChanged errors { code } }
}"""
CUSTOMER_FIELDS = """id name email phone tags customFields erasedAt archivedAt
  address { city } purchaseSummary { orderCount totals { amount currency } }"""
CREATE_CUSTOMER = f"""mutation($i: CreateCustomerInput!) {{
  createCustomer(input: $i) {{ customer {{ {CUSTOMER_FIELDS} }} errors {{ code field }} }}
}}"""
READ = f"query($id: ID!) {{ node(id: $id) {{ ... on Customer {{ {CUSTOMER_FIELDS} }} }} }}"
EXPORT = """mutation($id: ID!) {
  exportCustomerData(input: {customerId: $id}) { customer { id } data errors { code } }
}"""
ERASE = f"""mutation($id: ID!) {{
  eraseCustomer(input: {{customerId: $id}}) {{ customer {{ {CUSTOMER_FIELDS} }} errors {{ code }} }}
}}"""
NATIONAL_ID = "NI-83-77-1204"


async def call(client: support.GraphQLClient, document: str, name: str, **variables: Any) -> Any:
    payload = (await client(document, variables)).ok()[name]
    assert payload["errors"] == [], payload
    return payload


async def api_client(
    sessionmaker: async_sessionmaker[AsyncSession],
    user: User,
    client: support.GraphQLClient,
    *scopes: str,
) -> support.GraphQLClient:
    admin = Actor(workspace_id=user.workspace_id, role=Role.ADMIN, user_id=user.id)
    async with sessionmaker() as session, session.begin():
        _, token = await api_keys.create_api_key(admin, session, name="Partner", scopes=scopes)
    return support.GraphQLClient(client.http, token)


async def raw_rows(sessionmaker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID) -> str:
    """Every row of every table of the workspace, as PostgreSQL prints it."""
    parts = []
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            if "workspace_id" in table.c:
                value = await session.scalar(
                    text(
                        f"SELECT string_agg(t::text, '\n') FROM {table.name} t WHERE workspace_id = :w"
                    ),
                    {"w": workspace_id},
                )
                parts.append(value or "")
    return "\n".join(parts)


async def test_sensitive_custom_fields_are_encrypted_and_hidden_from_viewers_and_keys(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    client: support.GraphQLClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    admin, agent, viewer = as_role[Role.ADMIN], as_role[Role.AGENT], as_role[Role.VIEWER]
    fields = {"tier": "gold", "nationalId": NATIONAL_ID}
    ada = (
        await call(
            agent, CREATE_CUSTOMER, "createCustomer", i={"name": "Ada", "customFields": fields}
        )
    )["customer"]
    # Only admins choose sensitive fields; the existing value moves into encryption.
    refused = (await agent(SET_SENSITIVE, {"keys": ["nationalId"]})).ok()[
        "setSensitiveCustomFields"
    ]
    assert [e["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    made = await call(
        admin, SET_SENSITIVE, "setSensitiveCustomFields", keys=["nationalId", " nationalId "]
    )
    assert made["keys"] == ["nationalId"] and made["customersChanged"] == 1
    assert (await viewer("{ sensitiveCustomFields }")).ok() == {
        "sensitiveCustomFields": ["nationalId"]
    }

    async with sessionmaker() as session:
        row = await session.scalar(
            select(Customer).where(Customer.id == from_global_id(ada["id"])[1])
        )
    assert row is not None and row.custom_fields == {"tier": "gold"}
    assert row.custom_fields_encrypted and row.custom_fields_encrypted.startswith("v1:")
    # Nowhere in clear any more: not in the row, not in the audit of its creation.
    assert NATIONAL_ID not in await raw_rows(sessionmaker, workspace.id)

    # Readers: agents and admins see the value; viewers and API keys see the key, null.
    reader = await api_client(sessionmaker, users[Role.ADMIN], client, api_keys.CUSTOMERS_READ)
    for who, expected in (
        (admin, fields),
        (agent, fields),
        (viewer, {"tier": "gold", "nationalId": None}),
        (reader, {"tier": "gold", "nationalId": None}),
    ):
        seen = (await who(READ, {"id": ada["id"]})).ok()["node"]["customFields"]
        assert seen == expected

    # A new customer's sensitive value never reaches the table in clear, nor the audit.
    bob = (
        await call(
            agent,
            CREATE_CUSTOMER,
            "createCustomer",
            i={"name": "Bob", "customFields": {"nationalId": "NI-BOB-99"}},
        )
    )["customer"]
    assert bob["customFields"] == {"nationalId": "NI-BOB-99"}
    assert "NI-BOB-99" not in await raw_rows(sessionmaker, workspace.id)

    # Editing other fields keeps the ciphertext (nothing re-encrypted, nothing in the audit).
    before = await _ciphertext(sessionmaker, bob["id"])
    await call(
        agent,
        UPDATE_CUSTOMER,
        "updateCustomer",
        i={"id": bob["id"], "customFields": {"nationalId": "NI-BOB-99", "tier": "silver"}},
    )
    assert await _ciphertext(sessionmaker, bob["id"]) == before

    # A key that cannot read them cannot write them either.
    writer = await api_client(
        sessionmaker, users[Role.ADMIN], client, api_keys.CUSTOMERS_WRITE, api_keys.CUSTOMERS_READ
    )
    denied = (
        await writer(UPDATE_CUSTOMER, {"i": {"id": bob["id"], "customFields": {"nationalId": "X"}}})
    ).ok()
    assert [e["code"] for e in denied["updateCustomer"]["errors"]] == ["FORBIDDEN"]
    kept = await call(
        writer,
        UPDATE_CUSTOMER,
        "updateCustomer",
        i={"id": bob["id"], "customFields": {"tier": "bronze"}},
    )
    assert kept["customer"]["customFields"] == {"tier": "bronze", "nationalId": None}
    assert (await agent(READ, {"id": bob["id"]})).ok()["node"]["customFields"] == {
        "tier": "bronze",
        "nationalId": "NI-BOB-99",
    }

    # No longer sensitive: the values come back to the plain column.
    cleared = await call(admin, SET_SENSITIVE, "setSensitiveCustomFields", keys=[])
    assert cleared["customersChanged"] == 2
    async with sessionmaker() as session:
        row = await session.scalar(
            select(Customer).where(Customer.id == from_global_id(bob["id"])[1])
        )
    assert row is not None and row.custom_fields == {"tier": "bronze", "nationalId": "NI-BOB-99"}
    assert row.custom_fields_encrypted is None


async def _ciphertext(sessionmaker: async_sessionmaker[AsyncSession], global_id: str) -> str | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(Customer.custom_fields_encrypted).where(
                Customer.id == from_global_id(global_id)[1]
            )
        )


CREATE_ORDER = """mutation($i: CreateOrderInput!) { createOrder(input: $i) { order { id } errors { code } } }"""
CREATE_DEAL = """mutation($i: CreateDealInput!) { createDeal(input: $i) { deal { id amount } errors { code } } }"""
CREATE_PIPELINE = """mutation($i: CreatePipelineInput!) {
  createPipeline(input: $i) { pipeline { id } errors { code } }
}"""
CUSTOMER_SAYS = """mutation($i: PostCustomerMessageInput!) {
  postCustomerMessage(input: $i) { message { id } errors { code } }
}"""
MERGE = """mutation($i: MergeCustomersInput!) { mergeCustomers(input: $i) { customer { id } errors { code } } }"""
HISTORY = """query($id: ID!) { node(id: $id) { ... on Customer {
  deals { totalCount nodes { amount title } }
  activities { totalCount nodes { subject body } }
  orders { totalCount nodes { amount } }
  conversations { totalCount nodes { messages { nodes { body } } } }
} } }"""

PERSONAL = (
    "Ada Lovelace",
    "ada@example.com",
    "+442079460000",  # as stored (E.164)
    "Marylebone",
    NATIONAL_ID,
    "my card ends 4242",
    "Call about her late husband",
    "Ada Byron",
)


@pytest.fixture
async def ada(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    client: support.GraphQLClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> str:
    """A customer with everything: contact details, a sensitive field, an order, a deal,
    a note, a conversation with the customer's own message, a merged duplicate."""
    admin = as_role[Role.ADMIN]
    await call(admin, SET_SENSITIVE, "setSensitiveCustomFields", keys=["nationalId"])
    input = {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "address": {"city": "Marylebone"},
        "tags": ["vip"],
        "customFields": {"nationalId": NATIONAL_ID, "tier": "gold"},
    }
    ada = (await call(admin, CREATE_CUSTOMER, "createCustomer", i=input))["customer"]["id"]
    await call(admin, UPDATE_CUSTOMER, "updateCustomer", i={"id": ada, "phone": "+44 20 7946 0001"})
    await call(admin, UPDATE_CUSTOMER, "updateCustomer", i={"id": ada, "phone": "+44 20 7946 0000"})
    await call(
        admin,
        CREATE_ORDER,
        "createOrder",
        i={"customerId": ada, "amount": "100.50", "currency": "EUR"},
    )
    pipeline = await call(
        admin, CREATE_PIPELINE, "createPipeline", i={"name": "Sales", "stages": [{"name": "Lead"}]}
    )
    await call(
        admin,
        CREATE_DEAL,
        "createDeal",
        i={
            "title": "Renewal",
            "currency": "EUR",
            "amount": "900",
            "customerId": ada,
            "pipelineId": pipeline["pipeline"]["id"],
        },
    )
    await call(
        admin,
        CREATE_ACTIVITY,
        "createActivity",
        i={
            "type": "CALL",
            "subject": "Call about her late husband",
            "body": "Ada Byron asked",
            "customerId": ada,
        },
    )
    conversation = (
        await call(
            admin,
            START_CONVERSATION,
            "startConversation",
            i={"customerId": ada, "channel": "CHAT", "body": "Hello Ada Lovelace"},
        )
    )["conversation"]["id"]
    channel = await api_client(
        sessionmaker, users[Role.ADMIN], client, api_keys.CONVERSATIONS_WRITE
    )
    await call(
        channel,
        CUSTOMER_SAYS,
        "postCustomerMessage",
        i={"conversationId": conversation, "body": "my card ends 4242"},
    )
    duplicate = (
        await call(
            admin,
            CREATE_CUSTOMER,
            "createCustomer",
            i={"name": "Ada Byron", "phone": "+44 20 7946 0000"},
        )
    )["customer"]["id"]
    await call(admin, MERGE, "mergeCustomers", i={"survivorId": ada, "mergedIds": [duplicate]})
    return ada  # type: ignore[no-any-return]


async def test_export_returns_everything_held_about_a_customer(
    as_role: dict[Role, support.GraphQLClient],
    ada: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    for role in (Role.AGENT, Role.VIEWER):
        denied = (await as_role[role](EXPORT, {"id": ada})).ok()["exportCustomerData"]
        assert [e["code"] for e in denied["errors"]] == ["FORBIDDEN"] and denied["data"] is None
    payload = await call(as_role[Role.MANAGER], EXPORT, "exportCustomerData", id=ada)
    data = payload["data"]
    assert payload["customer"]["id"] == ada
    profile = data["customer"]
    assert (profile["name"], profile["email"], profile["phone"]) == (
        "Ada Lovelace",
        "ada@example.com",
        "+442079460000",
    )
    assert profile["custom_fields"] == {"nationalId": NATIONAL_ID, "tier": "gold"}
    assert "custom_fields_encrypted" not in profile
    assert [o["amount"] for o in data["orders"]] == ["100.50"]
    assert [d["title"] for d in data["deals"]] == ["Renewal"]
    assert [a["subject"] for a in data["activities"]] == ["Call about her late husband"]
    [conversation] = data["conversations"]
    assert [m["body"] for m in conversation["messages"]] == [
        "Hello Ada Lovelace",
        "my card ends 4242",
    ]
    actions = [e["action"] for e in data["audit_log"]]
    assert (
        actions.count("updateCustomer") == 2
        and "createCustomer" in actions
        and "mergeCustomers" in actions
    )
    # The export itself is audited, with the manager as actor.
    async with sessionmaker() as session:
        rows = list(
            await session.scalars(
                select(AuditLog).where(
                    AuditLog.action == "exportCustomerData",
                    AuditLog.entity_id == from_global_id(ada)[1],
                )
            )
        )
    assert len(rows) == 1 and rows[0].changes["exported"]["after"]["messages"] == 2


async def test_erase_removes_personal_data_and_keeps_aggregates_and_audit(
    as_role: dict[Role, support.GraphQLClient],
    ada: str,
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = as_role[Role.ADMIN]
    before = await raw_rows(sessionmaker, workspace.id)
    assert all(value in before for value in PERSONAL if value != NATIONAL_ID)
    history_before = (await admin(HISTORY, {"id": ada})).ok()["node"]
    async with sessionmaker() as session:
        audit_count = await session.scalar(
            select(text("count(*)"))
            .select_from(AuditLog)
            .where(AuditLog.workspace_id == workspace.id)
        )

    denied = (await as_role[Role.MANAGER](ERASE, {"id": ada})).ok()["eraseCustomer"]
    assert [e["code"] for e in denied["errors"]] == ["FORBIDDEN"]

    # The audit log is append-only (migration 0003): erasure's redaction passes its trigger.
    erased = (await call(admin, ERASE, "eraseCustomer", id=ada))["customer"]
    again = (await call(admin, ERASE, "eraseCustomer", id=ada))["customer"]  # idempotent

    assert erased["name"] == "Erased customer" and erased["erasedAt"] and erased["archivedAt"]
    assert (
        erased["email"],
        erased["phone"],
        erased["address"],
        erased["tags"],
        erased["customFields"],
    ) == (None, None, None, [], {})
    assert again == erased
    # Aggregates stay right.
    assert erased["purchaseSummary"] == {
        "orderCount": 1,
        "totals": [{"amount": "100.50", "currency": "EUR"}],
    }
    history = (await admin(HISTORY, {"id": ada})).ok()["node"]
    assert history["deals"] == history_before["deals"]
    assert history["orders"] == history_before["orders"]
    assert history["activities"]["totalCount"] == 1
    assert history["activities"]["nodes"] == [{"subject": "[erased]", "body": None}]
    bodies = [m["body"] for c in history["conversations"]["nodes"] for m in c["messages"]["nodes"]]
    assert bodies == ["[erased]", "[erased]"]

    # Nothing personal is left anywhere in the workspace: rows, audit entries, events.
    after = await raw_rows(sessionmaker, workspace.id)
    assert [value for value in PERSONAL if value in after] == []
    async with sessionmaker() as session:
        audit_after = await session.scalar(
            select(text("count(*)"))
            .select_from(AuditLog)
            .where(AuditLog.workspace_id == workspace.id)
        )
        erase_rows = list(
            await session.scalars(
                select(AuditLog)
                .where(AuditLog.workspace_id == workspace.id, AuditLog.action == "eraseCustomer")
                # In the order written: the second erasure redacts the first one's row
                # again, and an updated row may come back after a newer one unordered.
                .order_by(AuditLog.created_at, AuditLog.id)
            )
        )
        events = list(
            await session.scalars(
                select(Event).where(
                    Event.workspace_id == workspace.id, Event.type == "customer.erased"
                )
            )
        )
    assert audit_after == audit_count + 2  # every entry kept, plus one per erase call
    assert [r.changes["erased"]["after"]["customers"] for r in erase_rows] == [2, 2]
    assert len(events) == 2 and events[0].payload["customer_id"] == str(from_global_id(ada)[1])
    # Live activity feeds hear of the changed activity (once: erasing again changes nothing).
    async with sessionmaker() as session:
        updates = list(
            await session.scalars(
                select(Event).where(
                    Event.workspace_id == workspace.id,
                    Event.type == "activity.updated",
                    Event.created_at >= erase_rows[0].created_at,
                )
            )
        )
    assert [(u.payload["version"], u.payload["changed"]) for u in updates] == [
        (2, ["body", "subject"])
    ]
