"""Pages and their nested relations load in a constant number of SQL statements."""

from __future__ import annotations

import gc
import uuid
import weakref
from typing import Any

import pytest

from crm_graphql import demo, models
from crm_graphql.models import Role
from crm_graphql.resolvers.context import Context
from crm_graphql.services import customers
from crm_graphql.services.actor import Actor
from tests import support
from tests.api.conftest import StatementCounter

GRAPH = """query($n: Int!) {
  customers(first: $n, orderBy: [{field: NAME}]) {
    totalCount
    edges { cursor node {
      id name email
      company { name domain }
      owner { name email }
      deals(first: 5) { totalCount nodes { title amount currency status } }
      activities(first: 5) { nodes { type subject occurredAt } }
      orders(first: 5) { nodes { number amount currency placedAt } }
      purchaseSummary { orderCount totals { amount currency } lastOrderAt }
    } }
  }
}"""


@pytest.fixture
async def demo_client(sessionmaker: Any, client: support.GraphQLClient) -> support.GraphQLClient:
    domain = f"dl-{uuid.uuid4().hex[:8]}.example"
    async with sessionmaker() as session, session.begin():
        await demo.seed_demo(
            session, seed=7, workspace_name=f"Loaders {domain}", email_domain=domain
        )
    email, password, _ = demo.demo_logins(domain)[0]
    return await client.logged_in(email, password)


async def test_statements_do_not_grow_with_page_size(
    demo_client: support.GraphQLClient, counter: StatementCounter
) -> None:
    counts = {}
    for n in (10, 100):
        counter.statements.clear()
        data = (await demo_client(GRAPH, {"n": n})).ok()
        edges = data["customers"]["edges"]
        assert len(edges) == n
        counts[n] = len(counter.statements)
    print("statements per query:", counts)
    assert counts[10] == counts[100], counts
    assert counts[100] <= 10, counter.statements
    # The graph is really there: some customers have company, deals, activities, orders.
    nodes = [e["node"] for e in edges]
    assert any(n["company"] for n in nodes)
    assert any(n["deals"]["nodes"] for n in nodes)
    assert all(len(n["activities"]["nodes"]) <= 5 for n in nodes)
    assert any(n["purchaseSummary"]["orderCount"] > 0 for n in nodes)


async def test_nested_pages_match_their_own_queries(demo_client: support.GraphQLClient) -> None:
    """A customer's nested deals page equals the root deals list filtered by customer."""
    data = (await demo_client(GRAPH, {"n": 30})).ok()
    for edge in data["customers"]["edges"]:
        node = edge["node"]
        if node["deals"]["totalCount"] < 2:
            continue
        root = (
            await demo_client(
                "query($c: ID!) { deals(first: 5, filter: {customerId: {eq: $c}}) { totalCount nodes { title } } }",
                {"c": node["id"]},
            )
        ).ok()["deals"]
        assert root["totalCount"] == node["deals"]["totalCount"]
        assert [d["title"] for d in root["nodes"]] == [d["title"] for d in node["deals"]["nodes"]]
        break
    else:
        pytest.fail("demo data has no customer with two deals")


async def test_a_closed_scope_frees_its_loaders_without_the_garbage_collector(
    app: Any, sessionmaker: Any, actors: dict[Role, Actor]
) -> None:
    """Loaders hold their scope's loaded rows; each loader holds its ``Loaders`` through
    its batch function (a reference cycle). Closing the scope (the end of a request or of
    a live event's rendering) frees them at once: left to the collector, they made most
    of the garbage of a live-chat load and its pauses (issue 12)."""
    agent = actors[Role.AGENT]
    async with sessionmaker() as session, session.begin():
        customer = await customers.create_customer(agent, session, {"name": "Loaded"})
    context = Context(app=app.state.crm, actor=agent, request_id=uuid.uuid4().hex)
    gc.disable()  # only reference counting may free them
    try:
        loaders = context.loaders
        assert (await loaders.by_id(models.Customer).load(customer.id)).name == "Loaded"
        freed = weakref.ref(loaders)
        del loaders
        await context.close()
        assert freed() is None
    finally:
        gc.enable()
