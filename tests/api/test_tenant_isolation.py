"""Tenant isolation, generated from the schema: every mutation input field, query argument,
list filter and subscription argument that takes an ID is given IDs of another workspace,
and must answer NOT_FOUND (or null / an empty list for reads) and change nothing in either
workspace."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    get_named_type,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import DeliveryStatus, Role, User, Workspace
from crm_graphql.resolvers.ids import from_global_id, to_global_id
from crm_graphql.schema import schema
from crm_graphql.services import api_keys, auth
from tests import support
from tests.api.scenarios import MUTATION_NAMES, Env, error_codes, prepare, workspace_rows

# Input fields whose name does not say the type they point at.
FIELD_TYPES = {"owner": "User", "assignee": "User", "author": "User", "survivor": "Customer",
               "merged": "Customer"}  # fmt: skip


def _unwrap(type_: Any) -> tuple[Any, bool]:
    """(named type, is a list)."""
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    is_list = isinstance(type_, GraphQLList)
    return get_named_type(type_), is_list


def id_fields(input_type: GraphQLInputObjectType) -> dict[str, bool]:
    """Top-level input fields of type ID or [ID] -> is a list."""
    found = {}
    for name, field in input_type.fields.items():
        named, is_list = _unwrap(field.type)
        if named.name == "ID":
            found[name] = is_list
    return found


def mutation_input(name: str) -> GraphQLInputObjectType:
    assert schema._schema.mutation_type is not None
    named, _ = _unwrap(schema._schema.mutation_type.fields[name].args["input"].type)
    assert isinstance(named, GraphQLInputObjectType)
    return named


MUTATIONS_WITH_IDS = [m for m in MUTATION_NAMES if id_fields(mutation_input(m))]


def type_of_field(field: str, value: Any, entity_type: str | None) -> str:
    """The node type an ID field points at: from the value the scenario put there, else from
    the field's name (``companyId`` -> ``Company``); ``id`` is the mutation's own entity."""
    sample = value[0] if isinstance(value, list) and value else value
    if isinstance(sample, str):
        return from_global_id(sample)[0]
    if field == "id":
        assert entity_type, field
        return entity_type
    stem = field.removesuffix("Ids").removesuffix("Id")
    return FIELD_TYPES.get(stem, stem[:1].upper() + stem[1:])


def payload_entity(name: str) -> str | None:
    assert schema._schema.mutation_type is not None
    payload = get_named_type(schema._schema.mutation_type.fields[name].type)
    assert isinstance(payload, GraphQLObjectType)
    for field in payload.fields.values():
        named = get_named_type(field.type)
        if any(i.name == "Node" for i in getattr(named, "interfaces", ())):
            return str(named.name)
    return None


@pytest.fixture
async def other(
    client: support.GraphQLClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> Env:
    """A second workspace with its own admin: the one whose IDs are tried."""
    async with sessionmaker() as session, session.begin():
        workspace = await auth.create_workspace(session, name=f"Other {uuid.uuid4().hex[:8]}")
        user = await auth.create_user(
            session,
            workspace=workspace,
            email=f"other-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
            name="Other Admin",
        )
    admin = await client.logged_in(user.email, support.PASSWORD)
    return Env(admin, support.GraphQLClient(client.http), user, sessionmaker)


async def foreign_ids(other: Env) -> dict[str, str]:
    """One entity of every node type in the other workspace."""
    stage = await other.stage()
    _, key = await other.api_key(api_keys.DEALS_READ)
    conversation = await other.conversation()
    await other.customer_says(conversation)
    pipeline = (await other.admin("query($s: ID!) { node(id: $s) { ... on Stage { pipeline { id } } } }", {"s": stage})).ok()["node"]["pipeline"]["id"]  # fmt: skip
    return {
        "Customer": await other.customer(),
        "Company": await other.company(),
        "Pipeline": pipeline,
        "Stage": stage,
        "Deal": await other.deal(stage),
        "Activity": await other.activity(),
        "Order": await other.order(),
        "Product": await other.product(),
        "Conversation": conversation,
        "User": other.user_id,
        "ApiKey": to_global_id("ApiKey", key),
        "Webhook": await other.webhook(),
        "WebhookDelivery": await other.webhook_delivery(DeliveryStatus.FAILED),
        "CustomFieldDefinition": await other.custom_field(),
        "Segment": await other.segment(),
        "Job": await other.job(),
    }


def untouched(rows: dict[str, list[Any]]) -> dict[str, list[Any]]:
    # A key's `last_used_at` moves when it is used (the call itself), which is no change.
    return {table: value for table, value in rows.items() if table != "api_keys"}


@pytest.mark.parametrize("name", MUTATIONS_WITH_IDS)
async def test_foreign_ids_in_mutations_are_not_found(
    name: str,
    env: Env,
    other: Env,
    workspace: Workspace,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    foreign = await foreign_ids(other)
    entity = payload_entity(name)
    for field, is_list in id_fields(mutation_input(name)).items():
        call = await prepare(name, env)
        type_name = type_of_field(field, call.input.get(field), entity)
        assert type_name in foreign, f"{name}.{field}: make a {type_name} in foreign_ids"
        value = [foreign[type_name]] if is_list else foreign[type_name]
        tried = dataclasses.replace(call, input={**call.input, field: value})
        mine = await workspace_rows(sessionmaker, workspace.id)
        theirs = await workspace_rows(sessionmaker, other.user.workspace_id)
        result = await env.run(name, tried)
        assert error_codes(result, name) == ["NOT_FOUND"], (name, field, result.body)
        assert untouched(await workspace_rows(sessionmaker, workspace.id)) == untouched(mine)
        assert await workspace_rows(sessionmaker, other.user.workspace_id) == theirs


async def test_foreign_ids_in_node_and_nodes_are_null(env: Env, other: Env) -> None:
    foreign = await foreign_ids(other)
    ids = list(foreign.values())
    for id in ids:
        own = (await other.admin("query($id: ID!) { node(id: $id) { id } }", {"id": id})).ok()
        assert own["node"] == {"id": id}  # it exists, in its own workspace
        result = await env.admin("query($id: ID!) { node(id: $id) { id } }", {"id": id})
        assert result.ok() == {"node": None}, (id, result.body)
    result = await env.admin("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids})
    assert result.ok() == {"nodes": [None] * len(ids)}


def list_filters() -> list[tuple[str, str, str]]:
    """(root list, filter field, node type) for every ID filter of every root list."""
    assert schema._schema.query_type is not None
    found = []
    for name, field in schema._schema.query_type.fields.items():
        connection = get_named_type(field.type)
        if "filter" not in field.args or "nodes" not in getattr(connection, "fields", {}):
            continue  # not a list (aggregates and reports take a list's filter too)
        node_type = get_named_type(
            get_named_type(field.type).fields["nodes"].type  # type: ignore[union-attr]
        ).name
        filter_type, _ = _unwrap(field.args["filter"].type)
        for key, sub in filter_type.fields.items():
            if get_named_type(sub.type).name == "IDFilter":
                found.append(
                    (name, key, node_type if key == "id" else type_of_field(key, None, None))
                )
    return found


async def test_foreign_ids_in_list_filters_match_nothing(env: Env, other: Env) -> None:
    foreign = await foreign_ids(other)
    checked = 0
    for root, key, type_name in list_filters():
        if type_name not in foreign:
            continue
        query = f"query($id: ID!) {{ {root}(filter: {{{key}: {{eq: $id}}}}) {{ totalCount }} }}"
        result = await env.admin(query, {"id": foreign[type_name]})
        assert result.ok()[root]["totalCount"] == 0, (root, key, result.body)
        if key == "id":  # the same filter finds it in its own workspace
            assert (await other.admin(query, {"id": foreign[type_name]})).ok()[root][
                "totalCount"
            ] == 1
        checked += 1
    assert checked >= 10


def subscription_id_arguments() -> list[tuple[str, str, dict[str, Any], str]]:
    """(subscription, variable definitions, arguments as GraphQL text, node type of each
    variable) for every ID argument of every subscription, and every ID field of its
    input-object arguments (``activityFeed(filter: {customerId})``)."""
    assert schema._schema.subscription_type is not None
    found: list[tuple[str, str, dict[str, Any], str]] = []
    for name, field in schema._schema.subscription_type.fields.items():
        direct = {arg: type_of_field(arg, None, None) for arg, a in field.args.items()
                  if _unwrap(a.type)[0].name == "ID"}  # fmt: skip
        if direct:
            params = ", ".join(f"${arg}: ID!" for arg in direct)
            args = ", ".join(f"{arg}: ${arg}" for arg in direct)
            found.append((name, params, direct, args))
        for arg, a in field.args.items():
            named, _ = _unwrap(a.type)
            if isinstance(named, GraphQLInputObjectType):
                for key in id_fields(named):  # one ID of the input at a time
                    found.append((name, "$id: ID!", {"id": type_of_field(key, None, None)},
                                  f"{arg}: {{{key}: $id}}"))  # fmt: skip
    return found


async def test_foreign_ids_in_subscriptions_are_not_found(
    live_server: str, users: dict[Role, User], client: support.GraphQLClient, other: Env
) -> None:
    foreign = await foreign_ids(other)
    async with httpx.AsyncClient(base_url=live_server, timeout=20) as http:
        login = await support.GraphQLClient(http).logged_in(
            users[Role.ADMIN].email, support.PASSWORD
        )
    checked = []
    for name, params, types, args in subscription_id_arguments():
        variables = {var: foreign[type_name] for var, type_name in types.items()}
        ws = await support.WSClient.connect(live_server, login.token)
        try:
            await ws.acknowledged()
            await ws.subscribe(f"subscription({params}) {{ {name}({args}) {{ __typename }} }}", variables)  # fmt: skip
            try:
                message = await ws.receive(timeout=5)
            except TimeoutError:
                raise AssertionError(f"{name}({args}): a foreign ID accepted silently") from None
            payload = message["payload"]
            errors = payload if message["type"] == "error" else payload["errors"]
            assert message["type"] == "error" or payload["data"] is None, (name, args, message)
            assert errors[0]["extensions"]["code"] == "NOT_FOUND", (name, args, message)
        finally:
            await ws.close()
        checked.append(f"{name}({args})")
    assert {
        "conversationEvents(conversationId: $conversationId)",
        "dealBoard(pipelineId: $pipelineId)",
        "typing(conversationId: $conversationId)",
        "activityFeed(filter: {customerId: $id})",
        "activityFeed(filter: {dealId: $id})",
    } <= set(checked), checked
