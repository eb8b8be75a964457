"""Webhooks through GraphQL: who may manage them, the secret shown once and stored
encrypted, validation, tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import from_global_id
from crm_graphql.models import Role, User, Webhook, Workspace
from crm_graphql.services import api_keys, auth
from crm_graphql.services.actor import Actor
from tests import support

CREATE = """mutation($i: CreateWebhookInput!) {
  createWebhook(input: $i) {
    webhook { id url eventTypes isActive version }
    secret
    errors { code field message }
  }
}"""
UPDATE = """mutation($i: UpdateWebhookInput!) {
  updateWebhook(input: $i) { webhook { id url eventTypes isActive version } errors { code field } }
}"""
ROTATE = """mutation($i: WebhookInput!) {
  rotateWebhookSecret(input: $i) { webhook { id version } secret errors { code field } }
}"""
DELETE = """mutation($i: WebhookInput!) {
  deleteWebhook(input: $i) { webhook { id } errors { code field } }
}"""
LIST = "{ webhooks { nodes { id url eventTypes isActive deliveries { deliveryId status } } } }"
URL = "http://127.0.0.1:9/crm"


async def create(client: support.GraphQLClient, **input: Any) -> dict[str, Any]:
    payload = (await client(CREATE, {"i": {"url": URL, **input}})).ok()["createWebhook"]
    assert payload["errors"] == [], payload
    return payload  # type: ignore[no-any-return]


async def stored_secret(sessionmaker: async_sessionmaker[AsyncSession], global_id: str) -> str:
    async with sessionmaker() as session:
        value = await session.scalar(
            select(Webhook.secret_encrypted).where(Webhook.id == from_global_id(global_id)[1])
        )
        assert value is not None
        return value


async def test_admin_creates_a_webhook_and_sees_its_secret_once(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    app: Any,
) -> None:
    admin = as_role[Role.ADMIN]
    payload = await create(admin, eventTypes=["message.created", "deal.moved", "deal.moved"])
    webhook, secret = payload["webhook"], payload["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert webhook["eventTypes"] == ["deal.moved", "message.created"]
    assert webhook["isActive"] is True
    listed = (await admin(LIST)).ok()["webhooks"]["nodes"]
    assert listed == [
        {**{k: webhook[k] for k in ("id", "url", "eventTypes", "isActive")}, "deliveries": []}
    ]

    # Stored encrypted under the app's current key, never in clear.
    ciphertext = await stored_secret(sessionmaker, webhook["id"])
    assert secret not in ciphertext
    assert ciphertext.startswith(f"v1:{app.state.crm.keyring.current_kid}:")
    assert app.state.crm.keyring.decrypt(ciphertext) == secret
    async with sessionmaker() as session:
        raw = await session.scalar(text("SELECT string_agg(t::text, '') FROM webhooks t"))
        audit_rows = await session.scalar(text("SELECT string_agg(t::text, '') FROM audit_log t"))
    assert secret not in raw and secret not in audit_rows
    assert ciphertext not in audit_rows

    rotated = (await admin(ROTATE, {"i": {"id": webhook["id"]}})).ok()["rotateWebhookSecret"]
    assert rotated["errors"] == []
    assert rotated["secret"] != secret
    assert (
        app.state.crm.keyring.decrypt(await stored_secret(sessionmaker, webhook["id"]))
        == rotated["secret"]
    )

    updated = (
        await admin(UPDATE, {"i": {"id": webhook["id"], "isActive": False, "eventTypes": []}})
    ).ok()["updateWebhook"]
    assert updated["errors"] == []
    assert updated["webhook"]["isActive"] is False and updated["webhook"]["eventTypes"] == []

    deleted = (await admin(DELETE, {"i": {"id": webhook["id"]}})).ok()["deleteWebhook"]
    assert deleted == {"webhook": {"id": webhook["id"]}, "errors": []}
    assert (await admin(LIST)).ok()["webhooks"]["nodes"] == []
    again = (await admin(DELETE, {"i": {"id": webhook["id"]}})).ok()["deleteWebhook"]
    assert [e["code"] for e in again["errors"]] == ["NOT_FOUND"]


async def test_bad_input_is_a_validation_error(as_role: dict[Role, support.GraphQLClient]) -> None:
    admin = as_role[Role.ADMIN]
    cases = [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": " "}, "url"),
        ({"url": URL, "eventTypes": ["Deal Moved"]}, "eventTypes.0"),
    ]
    for input, field in cases:
        payload = (await admin(CREATE, {"i": input})).ok()["createWebhook"]
        assert payload["webhook"] is None and payload["secret"] is None
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("VALIDATION", field)], (
            input
        )
    assert (await admin(LIST)).ok()["webhooks"]["nodes"] == []


async def test_only_admins_and_keys_with_the_scope_manage_webhooks(
    as_role: dict[Role, support.GraphQLClient],
    users: dict[Role, User],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    for role in (Role.MANAGER, Role.AGENT, Role.VIEWER):
        payload = (await as_role[role](CREATE, {"i": {"url": URL}})).ok()["createWebhook"]
        assert [e["code"] for e in payload["errors"]] == ["FORBIDDEN"], role
        listed = await as_role[role](LIST)
        assert [e["extensions"]["code"] for e in listed.errors] == ["FORBIDDEN"], role

    admin_user = users[Role.ADMIN]
    admin = Actor(workspace_id=admin_user.workspace_id, role=Role.ADMIN, user_id=admin_user.id)
    tokens = {}
    async with sessionmaker() as session, session.begin():
        for scopes in ([api_keys.CUSTOMERS_READ], [api_keys.WEBHOOKS_MANAGE]):
            _, tokens[scopes[0]] = await api_keys.create_api_key(
                admin, session, name="Partner", scopes=scopes
            )
    http = as_role[Role.ADMIN].http
    without = support.GraphQLClient(http, tokens[api_keys.CUSTOMERS_READ])
    payload = (await without(CREATE, {"i": {"url": URL}})).ok()["createWebhook"]
    assert [e["code"] for e in payload["errors"]] == ["FORBIDDEN"]
    assert "webhooks:manage" in payload["errors"][0]["message"]
    partner = support.GraphQLClient(http, tokens[api_keys.WEBHOOKS_MANAGE])
    made = await create(partner)
    assert [w["id"] for w in (await partner(LIST)).ok()["webhooks"]["nodes"]] == [
        made["webhook"]["id"]
    ]


async def test_webhooks_of_another_workspace_do_not_exist(
    as_role: dict[Role, support.GraphQLClient],
    client: support.GraphQLClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    mine = (await create(as_role[Role.ADMIN]))["webhook"]
    async with sessionmaker() as session, session.begin():
        other: Workspace = await auth.create_workspace(
            session, name=f"Other {uuid.uuid4().hex[:8]}"
        )
        await auth.create_user(
            session,
            workspace=other,
            email=f"other-{uuid.uuid4().hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
        email = await session.scalar(select(User.email).where(User.workspace_id == other.id))
    stranger = await client.logged_in(email, support.PASSWORD)
    assert (await stranger(LIST)).ok()["webhooks"]["nodes"] == []
    for document, name in ((ROTATE, "rotateWebhookSecret"), (DELETE, "deleteWebhook")):
        payload = (await stranger(document, {"i": {"id": mine["id"]}})).ok()[name]
        assert [e["code"] for e in payload["errors"]] == ["NOT_FOUND"]
    payload = (await stranger(UPDATE, {"i": {"id": mine["id"], "isActive": False}})).ok()
    assert [e["code"] for e in payload["updateWebhook"]["errors"]] == ["NOT_FOUND"]
    assert [w["isActive"] for w in (await as_role[Role.ADMIN](LIST)).ok()["webhooks"]["nodes"]] == [
        True
    ]
