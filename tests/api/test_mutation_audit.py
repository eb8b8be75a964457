"""Every mutation of the schema is audited, and a failed one leaves no trace.

Table-driven over the schema's Mutation fields, through GraphQL over HTTP: a successful
call writes audit rows in the caller's workspace with the mutation's field name as action,
the caller as actor, the response's ``X-Request-Id`` and the changed entity; a call that
fails with a domain error writes no audit row and changes no row of the workspace. A
mutation without a scenario in ``SCENARIOS`` fails here, so a new one cannot skip its
audit unnoticed.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql import event_catalogue
from crm_graphql.global_ids import from_global_id, to_global_id
from crm_graphql.models import Event, Workspace
from crm_graphql.services import events
from tests.api.scenarios import (
    EXEMPT,
    MUTATION_NAMES,
    SCENARIOS,
    Env,
    audit_rows,
    error_codes,
    node_id,
    scenario_of,
    workspace_rows,
)


def test_scenarios_are_of_existing_mutations() -> None:
    assert sorted(set(SCENARIOS) - set(MUTATION_NAMES)) == []
    assert sorted(set(EXEMPT) - set(MUTATION_NAMES)) == []
    assert sorted(set(EXEMPT) & set(SCENARIOS)) == []


@pytest.mark.parametrize("name", MUTATION_NAMES)
async def test_mutation_is_audited(
    name: str,
    env: Env,
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    call = await scenario_of(name).succeeds(env)
    result = await env.run(name, call)
    payload = result.ok()[name]
    assert payload["errors"] == [], payload
    request_id = result.headers["X-Request-Id"]
    rows = await audit_rows(sessionmaker, request_id)
    assert rows, f"{name} succeeded but wrote no audit row (request {request_id})"
    actor = (None, call.api_key_id) if call.api_key_id else (env.user.id, None)
    assert {(r.workspace_id, r.actor_user_id, r.actor_api_key_id, r.action) for r in rows} == {
        (workspace.id, *actor, name)
    }
    assert all(r.client_ip is not None for r in rows), "the audit row misses the client IP"
    entity = call.entity or node_id(payload, call.node)
    assert entity in {to_global_id(r.entity_type, r.entity_id) for r in rows if r.entity_id}, (
        f"no audit row of {name} names the changed entity {entity}"
    )
    # What it wrote to the event log reaches webhooks in the catalogue's terms: every
    # type and field declared (docs/events.md), IDs as global IDs of their node type.
    async with sessionmaker() as session:
        written = list(
            await session.scalars(
                # The change feed's rows are pulled by ``changes``, never sent to webhooks.
                select(Event).where(
                    Event.workspace_id == workspace.id, Event.topic != events.CHANGES_TOPIC
                )
            )
        )
    for event in written:
        data = event_catalogue.partner_payload(event.type, event.payload)
        for field in event_catalogue.CATALOGUE[event.type].fields:
            value = data.get(field.name)
            if field.node is not None and isinstance(value, str):
                assert from_global_id(value)[0] == field.node, (name, event.type, field.key)


@pytest.mark.parametrize("name", MUTATION_NAMES)
async def test_failed_mutation_writes_nothing(
    name: str,
    env: Env,
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    call = await scenario_of(name).fails(env)
    assert call.error, f"the failing call of {name} must say which error it expects"
    before = await workspace_rows(sessionmaker, workspace.id)
    result = await env.run(name, call)
    assert call.error in error_codes(result, name), result.body
    assert await audit_rows(sessionmaker, result.headers["X-Request-Id"]) == []
    after = await workspace_rows(sessionmaker, workspace.id)
    assert [table for table in before if before[table] != after[table]] == []
