"""Partner API keys managed over GraphQL, scopes checked on every field, and the audit log
read by admins and protected against change by the database itself."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.models import Role, User
from tests import support

CREATE_KEY = """mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) {
  token apiKey { id name prefix scopes lastUsedAt revokedAt createdBy { name } }
  errors { code field message } } }"""
REVOKE_KEY = """mutation($id: ID!) { revokeApiKey(input: {id: $id}) {
  apiKey { id revokedAt } errors { code message } } }"""
KEYS = "{ apiKeys(first: 10) { edges { node { id name prefix scopes lastUsedAt revokedAt } } } }"
CREATE_CUSTOMER = """mutation($i: CreateCustomerInput!) { createCustomer(input: $i) {
  customer { id name } errors { code message } } }"""


async def create_key(admin: support.GraphQLClient, *scopes: str, **extra: Any) -> dict[str, Any]:
    result = await admin(CREATE_KEY, {"i": {"name": "Partner", "scopes": list(scopes), **extra}})
    payload = result.ok()["createApiKey"]
    assert payload["errors"] == [], payload
    return payload  # type: ignore[no-any-return]


async def test_admin_creates_lists_and_revokes_keys_and_the_secret_is_only_hashed(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = as_role[Role.ADMIN]
    created = await create_key(admin, "CUSTOMERS_READ", "DEALS_READ")
    token, key = created["token"], created["apiKey"]
    assert token.startswith(f"crm_{key['prefix']}_")
    assert key["scopes"] == ["CUSTOMERS_READ", "DEALS_READ"]
    assert key["createdBy"] == {"name": "Admin User"} and key["lastUsedAt"] is None

    secret = token.split("_", 2)[2]
    async with sessionmaker() as session:
        stored = (
            await session.execute(
                text("SELECT api_keys::text AS row, secret_hash FROM api_keys WHERE prefix = :p"),
                {"p": key["prefix"]},
            )
        ).one()
    assert secret not in stored.row and token not in stored.row
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()

    partner = support.GraphQLClient(admin.http, token)
    assert (await partner("{ customers(first: 1) { totalCount } }")).ok()
    listed = (await admin(KEYS)).ok()["apiKeys"]["edges"]
    assert [e["node"]["id"] for e in listed] == [key["id"]]
    assert listed[0]["node"]["lastUsedAt"] is not None  # kept on use
    # The list never shows a token again: there is no field for it.
    assert "token" not in str(listed)

    revoked = (await admin(REVOKE_KEY, {"id": key["id"]})).ok()["revokeApiKey"]
    assert revoked["errors"] == [] and revoked["apiKey"]["revokedAt"]
    refused = await partner("{ customers(first: 1) { totalCount } }")
    assert refused.status == 401
    assert refused.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("role", [Role.MANAGER, Role.AGENT, Role.VIEWER])
async def test_only_admins_manage_keys(
    as_role: dict[Role, support.GraphQLClient], role: Role
) -> None:
    client = as_role[role]
    payload = (await client(CREATE_KEY, {"i": {"name": "x", "scopes": ["DEALS_READ"]}})).ok()
    assert [e["code"] for e in payload["createApiKey"]["errors"]] == ["FORBIDDEN"]
    listed = await client(KEYS)
    assert listed.data is None or listed.data.get("apiKeys") is None
    assert [e["extensions"]["code"] for e in listed.errors] == ["FORBIDDEN"]


async def test_a_key_cannot_manage_keys_even_with_every_scope(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    every = [
        "CUSTOMERS_READ", "CUSTOMERS_WRITE", "DEALS_READ", "DEALS_WRITE",
        "CONVERSATIONS_READ", "CONVERSATIONS_WRITE", "WEBHOOKS_MANAGE",
    ]  # fmt: skip
    partner = support.GraphQLClient(admin.http, (await create_key(admin, *every))["token"])
    payload = (await partner(CREATE_KEY, {"i": {"name": "x", "scopes": ["DEALS_READ"]}})).ok()
    assert [e["code"] for e in payload["createApiKey"]["errors"]] == ["FORBIDDEN"]


async def test_key_input_is_validated(as_role: dict[Role, support.GraphQLClient]) -> None:
    admin = as_role[Role.ADMIN]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    cases = [
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "  ", "scopes": ["DEALS_READ"]}, "name"),
        ({"name": "x", "scopes": ["DEALS_READ"], "expiresAt": past}, "expiresAt"),
    ]
    for given, field in cases:
        payload = (await admin(CREATE_KEY, {"i": given})).ok()["createApiKey"]
        assert payload["apiKey"] is None and payload["token"] is None
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", field)]
    unknown = await admin(CREATE_KEY, {"i": {"name": "x", "scopes": ["EVERYTHING"]}})
    assert unknown.status == 400  # not a value of the ApiKeyScope enum


async def test_every_field_checks_the_key_scope(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    customer = (await admin(CREATE_CUSTOMER, {"i": {"name": "Scoped"}})).ok()["createCustomer"]
    reader = support.GraphQLClient(admin.http, (await create_key(admin, "CUSTOMERS_READ"))["token"])
    # Customers are readable; their deals need deals:read, so that field alone fails.
    result = await reader(
        "query($id: ID!) { node(id: $id) { ... on Customer { name deals(first: 5) { totalCount } } } }",
        {"id": customer["customer"]["id"]},
    )
    assert result.status == 200
    assert result.data == {"node": None}  # `deals` is non-null: the error nulls its parent
    assert [(e["extensions"]["code"], e["path"]) for e in result.errors] == [
        ("FORBIDDEN", ["node", "deals"])
    ]
    assert "deals:read" in result.errors[0]["message"]
    named = await reader(
        "query($id: ID!) { node(id: $id) { ... on Customer { name } } }",
        {"id": customer["customer"]["id"]},
    )
    assert named.ok() == {"node": {"name": "Scoped"}}
    # Root lists and mutations of other scopes are refused.
    deals = await reader("{ deals(first: 1) { totalCount } }")
    assert [e["extensions"]["code"] for e in deals.errors] == ["FORBIDDEN"]
    created = (await reader(CREATE_CUSTOMER, {"i": {"name": "Nope"}})).ok()["createCustomer"]
    assert [e["code"] for e in created["errors"]] == ["FORBIDDEN"]
    assert "customers:write" in created["errors"][0]["message"]

    writer = support.GraphQLClient(
        admin.http, (await create_key(admin, "CUSTOMERS_WRITE"))["token"]
    )
    made = (await writer(CREATE_CUSTOMER, {"i": {"name": "By key"}})).ok()["createCustomer"]
    assert made["errors"] == [] and made["customer"]["name"] == "By key"
    audit = (
        await admin(
            "query($id: ID!) { auditLog(filter: {entityId: {eq: $id}}) { edges { node { "
            "action actor { id } apiKey { name } } } } }",
            {"id": made["customer"]["id"]},
        )
    ).ok()["auditLog"]["edges"]
    assert [e["node"] for e in audit] == [
        {"action": "createCustomer", "actor": None, "apiKey": {"name": "Partner"}}
    ]


async def test_keys_work_over_websocket_with_their_scopes(
    live_server: str, users: dict[Role, User]
) -> None:
    async with httpx.AsyncClient(base_url=live_server, timeout=20) as http:
        admin = await support.GraphQLClient(http).logged_in(
            users[Role.ADMIN].email, support.PASSWORD
        )
        reader = (await create_key(admin, "DEALS_READ"))["token"]
        outsider = (await create_key(admin, "CUSTOMERS_READ"))["token"]
        pipeline = (
            await admin(
                'mutation { createPipeline(input: {name: "Keys", stages: [{name: "A"}]}) { '
                "pipeline { id } errors { message } } }"
            )
        ).ok()["createPipeline"]["pipeline"]["id"]
        board = "subscription($p: ID!) { dealBoard(pipelineId: $p) { type deal { title } } }"

        ws = await support.WSClient.connect(live_server, reader)
        try:
            await ws.acknowledged()
            await ws.subscribe(board, {"p": pipeline})
            await asyncio.sleep(0.3)
            made = await admin(
                'mutation($p: ID!) { createDeal(input: {pipelineId: $p, title: "Over WS", '
                'currency: "EUR"}) { errors { message } } }',
                {"p": pipeline},
            )
            assert made.ok()["createDeal"]["errors"] == []
            event = (await ws.next_data())["dealBoard"]
            assert event == {"type": "deal.created", "deal": {"title": "Over WS"}}
        finally:
            await ws.close()

        ws = await support.WSClient.connect(live_server, outsider)
        try:
            await ws.acknowledged()
            await ws.subscribe(board, {"p": pipeline})
            message = await ws.receive()
            # Refused before any event: an error, or a result without data.
            payload = message["payload"]
            errors = payload if message["type"] == "error" else payload["errors"]
            assert message["type"] == "error" or payload["data"] is None, message
            assert errors[0]["extensions"]["code"] == "FORBIDDEN"
        finally:
            await ws.close()


AUDIT = """query($f: AuditLogFilter, $first: Int) { auditLog(first: $first, filter: $f) {
  totalCount edges { node { id action entityType entityId requestId clientIp changes
  actor { name } entity { id } } } } }"""


async def test_admins_read_the_audit_log_with_filters(
    as_role: dict[Role, support.GraphQLClient], users: dict[Role, User]
) -> None:
    admin, agent = as_role[Role.ADMIN], as_role[Role.AGENT]
    made = await agent(
        CREATE_CUSTOMER, {"i": {"name": "Audited"}}, headers={"X-Request-Id": "req-audit-1"}
    )
    customer = made.ok()["createCustomer"]["customer"]["id"]
    await agent(
        'mutation($id: ID!) { updateCustomer(input: {id: $id, name: "Audited 2"}) { errors { code } } }',
        {"id": customer},
    )

    by_entity = (await admin(AUDIT, {"f": {"entityId": {"eq": customer}}})).ok()["auditLog"]
    assert by_entity["totalCount"] == 2
    newest, first = (e["node"] for e in by_entity["edges"])
    assert (newest["action"], first["action"]) == ("updateCustomer", "createCustomer")
    assert newest["changes"]["name"] == {"before": "Audited", "after": "Audited 2"}
    assert first["changes"]["name"] == {"before": None, "after": "Audited"}
    assert first["requestId"] == "req-audit-1" and first["clientIp"]
    assert first["actor"] == {"name": "Agent User"} and first["entity"] == {"id": customer}
    assert first["entityType"] == "Customer" and first["entityId"] == customer

    by_request = (await admin(AUDIT, {"f": {"requestId": {"eq": "req-audit-1"}}})).ok()
    assert [e["node"]["id"] for e in by_request["auditLog"]["edges"]] == [first["id"]]
    agent_id = (await agent("{ me { id } }")).ok()["me"]["id"]
    by_actor = (
        await admin(AUDIT, {"f": {"actorId": {"eq": agent_id}, "action": {"eq": "updateCustomer"}}})
    ).ok()["auditLog"]
    assert [e["node"]["id"] for e in by_actor["edges"]] == [newest["id"]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = (await admin(AUDIT, {"f": {"createdAt": {"gt": future}}})).ok()["auditLog"]
    assert later["totalCount"] == 0

    for role in (Role.MANAGER, Role.AGENT, Role.VIEWER):
        refused = await as_role[role](AUDIT)
        assert [e["extensions"]["code"] for e in refused.errors] == ["FORBIDDEN"]
        refused_node = await as_role[role](
            "query($id: ID!) { node(id: $id) { id } }", {"id": first["id"]}
        )
        assert [e["extensions"]["code"] for e in refused_node.errors] == ["FORBIDDEN"]


async def test_audit_entries_speak_the_apis_language_old_entries_too(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = as_role[Role.ADMIN]
    made = await admin(CREATE_CUSTOMER, {"i": {"name": "Named", "lifecycleStage": "LEAD"}})
    customer = made.ok()["createCustomer"]["customer"]["id"]
    company = (
        await admin('mutation { createCompany(input: {name: "Named Co"}) { company { id } } }')
    ).ok()["createCompany"]["company"]["id"]
    owner = to_global_id("User", users[Role.AGENT].id)
    change = {"id": customer, "ownerId": owner, "companyId": company, "lifecycleStage": "CUSTOMER"}
    update = "mutation($i: UpdateCustomerInput!) { updateCustomer(input: $i) { errors { code } } }"
    assert (await admin(update, {"i": change})).ok()["updateCustomer"]["errors"] == []

    entries = (await admin(AUDIT, {"f": {"entityId": {"eq": customer}}})).ok()["auditLog"]
    updated = next(e["node"] for e in entries["edges"] if e["node"]["action"] == "updateCustomer")
    # camelCase names, references as global IDs, enum values as the schema spells them.
    assert updated["changes"] == {
        "ownerId": {"before": None, "after": owner},
        "companyId": {"before": None, "after": company},
        "lifecycleStage": {"before": "LEAD", "after": "CUSTOMER"},
    }
    # The stored entry is as it was written (append-only): read the same way.
    async with sessionmaker() as session:
        stored = await session.scalar(
            text(
                "SELECT changes FROM audit_log WHERE action = 'updateCustomer' AND entity_id = :id"
            ),
            {"id": from_global_id(customer)[1]},
        )
    assert stored["owner_id"]["after"] == str(users[Role.AGENT].id)
    assert stored["lifecycle_stage"] == {"before": "lead", "after": "customer"}


async def test_the_database_refuses_to_change_or_delete_audit_entries(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    users: dict[Role, User],
) -> None:
    await as_role[Role.AGENT](CREATE_CUSTOMER, {"i": {"name": "Immutable"}})
    workspace = {"w": users[Role.ADMIN].workspace_id}
    for statement in (
        "UPDATE audit_log SET action = 'forged' WHERE workspace_id = :w",
        "UPDATE audit_log SET changes = '{}' WHERE workspace_id = :w",
        "DELETE FROM audit_log WHERE workspace_id = :w",
        "TRUNCATE audit_log",
    ):
        async with sessionmaker() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(text(statement), workspace)
    # Redaction (erasing a person) may rewrite `changes`, and nothing else.
    async with sessionmaker() as session, session.begin():
        await session.execute(text("SET LOCAL crm.audit_redaction = 'on'"))
        await session.execute(
            text('UPDATE audit_log SET changes = \'{"name": "[erased]"}\' WHERE workspace_id = :w'),
            workspace,
        )
    async with sessionmaker() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            async with session.begin():
                await session.execute(text("SET LOCAL crm.audit_redaction = 'on'"))
                await session.execute(
                    text("UPDATE audit_log SET action = 'forged' WHERE workspace_id = :w"),
                    workspace,
                )
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT action, changes FROM audit_log "
                    "WHERE workspace_id = :w AND action <> 'login'"
                ),
                workspace,
            )
        ).all()
    assert [(r.action, r.changes) for r in rows] == [("createCustomer", {"name": "[erased]"})]
