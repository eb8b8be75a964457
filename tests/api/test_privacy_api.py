"""Data protection through GraphQL: sensitive custom fields encrypted at rest and hidden
from viewers and API keys; a customer's data exported; a customer erased while orders,
deals, counts and the audit trail stay."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Base, Customer, Role, User, Workspace
from crm_graphql.resolvers.ids import from_global_id
from crm_graphql.services import api_keys
from crm_graphql.services.actor import Actor
from tests import support

SET_SENSITIVE = """mutation($keys: [String!]!) {
  setSensitiveCustomFields(input: {keys: $keys}) { keys customersChanged errors { code } }
}"""
CUSTOMER_FIELDS = """id name email phone tags customFields erasedAt archivedAt
  address { city } purchaseSummary { orderCount totals { amount currency } }"""
CREATE_CUSTOMER = f"""mutation($i: CreateCustomerInput!) {{
  createCustomer(input: $i) {{ customer {{ {CUSTOMER_FIELDS} }} errors {{ code field }} }}
}}"""
UPDATE_CUSTOMER = """mutation($i: UpdateCustomerInput!) {
  updateCustomer(input: $i) { customer { id customFields } errors { code field message } }
}"""
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
