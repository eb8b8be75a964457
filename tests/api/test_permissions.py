"""The role and scope table of docs/permissions.md, enforced: every query and mutation is run
as every role and as API keys with and without its scopes, and must be allowed or answer
``FORBIDDEN`` exactly as the table says. An operation missing from the table fails."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm_graphql.models import Role
from crm_graphql.schema import schema
from crm_graphql.services.policy import SCOPES
from tests import support
from tests.api.scenarios import Env, error_codes, prepare

DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
ROLES = [Role.ADMIN, Role.MANAGER, Role.AGENT, Role.VIEWER]
ANY_KEY = "any key"


@dataclass(frozen=True)
class Row:
    operation: str
    kind: str  # query | mutation
    roles: frozenset[Role]
    public: bool
    scopes: frozenset[str]  # scopes that let a key in (empty: no key may)


def _table() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `(\w+)` \| (query|mutation) \|", line)
        if not match:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 8, line
        operation, kind, _action, *marks, key = cells
        operation = operation.strip("`")
        assert operation not in rows, f"{operation} appears twice in {DOC.name}"
        assert all(m in ("✓", "✗") for m in marks), line
        if key in ("public", ANY_KEY):
            scopes = SCOPES
        elif key == "✗":
            scopes = frozenset()
        else:
            scopes = frozenset(s.strip().strip("`") for s in key.split(","))
            assert scopes <= SCOPES, line
        rows[operation] = Row(
            operation,
            kind,
            frozenset(role for role, mark in zip(ROLES, marks, strict=True) if mark == "✓"),
            key == "public",
            scopes,
        )
    return rows


TABLE = _table()
assert schema._schema.query_type is not None and schema._schema.mutation_type is not None
QUERIES = sorted(schema._schema.query_type.fields)
MUTATIONS = sorted(schema._schema.mutation_type.fields)


def test_the_table_names_every_query_and_mutation_once() -> None:
    missing = sorted(set(QUERIES + MUTATIONS) - set(TABLE))
    assert missing == [], f"add these to the table of {DOC}: {missing}"
    assert sorted(set(TABLE) - set(QUERIES + MUTATIONS)) == []
    for name in QUERIES:
        assert TABLE[name].kind == "query", name
    for name in MUTATIONS:
        assert TABLE[name].kind == "mutation", name


async def callers(
    row: Row, env: Env, as_role: dict[Role, support.GraphQLClient]
) -> list[tuple[str, support.GraphQLClient, bool]]:
    """(who, client, allowed?) per role, then per API key: one with a single listed scope,
    one with every other scope."""
    found = [(role.value, as_role[role], role in row.roles) for role in ROLES]
    keys: list[tuple[frozenset[str], bool]] = []
    if row.scopes:
        keys.append((frozenset({sorted(row.scopes)[0]}), True))
    if SCOPES - row.scopes:
        keys.append((SCOPES - row.scopes, False))
    for scopes, allowed in keys:
        client, _ = await env.api_key(*sorted(scopes))
        found.append((f"key {sorted(scopes)}", client, allowed))
    return found


@pytest.mark.parametrize("name", [m for m in MUTATIONS if m in TABLE and not TABLE[m].public])
async def test_mutation_follows_the_table(
    name: str, env: Env, as_role: dict[Role, support.GraphQLClient]
) -> None:
    for who, client, allowed in await callers(TABLE[name], env, as_role):
        call = dataclasses.replace(await prepare(name, env), client=client)
        result = await env.run(name, call)
        codes = error_codes(result, name)
        expected = [] if allowed else ["FORBIDDEN"]
        assert codes == expected, f"{name} as {who}: {result.body}"


async def query_document(name: str, env: Env) -> str:
    if name == "salesReport":
        pipeline = await env.pipeline()
        period = 'from: "2026-01-01", to: "2026-12-31"'
        return f'{{ salesReport(pipelineId: "{pipeline}", {period}) {{ winRate {{ won }} }} }}'
    if name == "serviceReport":
        return (
            '{ serviceReport(from: "2026-01-01", to: "2026-12-31") { csat { overall { count } } } }'
        )
    if name == "me":
        return "{ me { id } }"
    if name == "node":
        return '{ node(id: "Q3VzdG9tZXI6MA") { id } }'
    if name == "nodes":
        return "{ nodes(ids: []) { id } }"
    if name == "job":  # the caller's own jobs only: an unknown one reads as null
        return '{ job(id: "Sm9iOjA") { id } }'
    if name == "onlineUsers":
        return "{ onlineUsers { id } }"
    if name == "sensitiveCustomFields":
        return "{ sensitiveCustomFields }"
    if name == "workspace":
        return "{ workspace { id name } }"
    if name == "duplicateCandidates":
        return "{ duplicateCandidates(first: 1) { candidates { score } } }"
    if name == "bulkCustomerChangePreview":  # the table's row is for adding a tag
        return '{ bulkCustomerChangePreview(input: {addTags: ["x"]}) { count } }'
    if name == "bulkCompanyChangePreview":  # the table's row is for adding a tag
        return '{ bulkCompanyChangePreview(input: {addTags: ["x"]}) { count } }'
    if name == "bulkDealChangePreview":  # the table's row is for unassigning the owner
        return "{ bulkDealChangePreview(input: {ownerId: null}) { count } }"
    if name == "changes":
        return "{ changes(first: 1) { cursor } }"
    if name == "search":
        return '{ search(query: "a", first: 1) { edges { cursor } } }'
    if name == "customFieldDefinitions":
        return "{ customFieldDefinitions(entity: CUSTOMER) { id } }"
    if name == "customerCohorts":
        return '{ customerCohorts(from: "2026-01-01", to: "2026-03-31") { month } }'
    if name.endswith("Aggregate"):
        return f"{{ {name} {{ count }} }}"
    if name == "timeSeries":  # the table's row is REVENUE's (orders: customers.read)
        return (
            '{ timeSeries(metric: REVENUE, interval: MONTH, from: "2026-01-01T00:00:00Z", '
            'to: "2026-03-01T00:00:00Z") { count } }'
        )
    return f"{{ {name}(first: 1) {{ totalCount edges {{ cursor }} }} }}"


@pytest.mark.parametrize("name", QUERIES)
async def test_query_follows_the_table(
    name: str, env: Env, as_role: dict[Role, support.GraphQLClient]
) -> None:
    for who, client, allowed in await callers(TABLE[name], env, as_role):
        result = await client(await query_document(name, env))
        assert result.status == 200, (name, who, result.body)
        codes = [e.get("extensions", {}).get("code") for e in result.errors]
        if allowed:
            assert (codes == [] and result.data[name] is not None) or name in (
                "me",
                "node",
                "job",
            ), (
                name,
                who,
                result.body,
            )
        else:
            assert codes == ["FORBIDDEN"], (name, who, result.body)
