"""Customers through GraphQL over HTTP: CRUD, typed errors, lists, merging."""

from __future__ import annotations

from typing import Any

from crm_graphql.models import Role, User, Workspace
from crm_graphql.services import auth
from tests import support

CREATE = """mutation($i: CreateCustomerInput!) {
  createCustomer(input: $i) { customer { id name email version tags lifecycleStage address { city postalCode } } errors { code field message } }
}"""
UPDATE = """mutation($i: UpdateCustomerInput!) {
  updateCustomer(input: $i) { customer { id name version } errors { code field message } }
}"""
LIST = """query($first: Int, $after: String, $last: Int, $before: String, $filter: CustomerFilter, $order: [CustomerOrder!]) {
  customers(first: $first, after: $after, last: $last, before: $before, filter: $filter, orderBy: $order) {
    totalCount edges { cursor node { name } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def create(client: support.GraphQLClient, **fields: Any) -> dict[str, Any]:
    payload = (await client(CREATE, {"i": fields})).ok()["createCustomer"]
    assert payload["errors"] == [], payload
    return payload["customer"]  # type: ignore[no-any-return]


async def test_create_and_read_customer(as_role: dict[Role, support.GraphQLClient]) -> None:
    agent = as_role[Role.AGENT]
    customer = await create(
        agent,
        name=" Ada Lovelace ",
        email="ADA@Example.com",
        tags=["vip", "vip", "b2b"],
        lifecycleStage="CUSTOMER",
        address={"city": "London", "postalCode": "N1"},
    )
    assert customer["name"] == "Ada Lovelace"
    assert customer["email"] == "ada@example.com"
    assert customer["tags"] == ["vip", "b2b"]
    assert customer["address"] == {"city": "London", "postalCode": "N1"}
    assert customer["version"] == 1
    node = (
        await agent(
            "query($id: ID!) { node(id: $id) { id ... on Customer { name } } }",
            {"id": customer["id"]},
        )
    ).ok()
    assert node["node"] == {"id": customer["id"], "name": "Ada Lovelace"}


async def test_malformed_email_is_a_validation_error(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    payload = (
        await as_role[Role.AGENT](CREATE, {"i": {"name": "X", "email": "not-an-email"}})
    ).ok()["createCustomer"]
    assert payload["customer"] is None
    assert payload["errors"][0]["code"] == "VALIDATION" and payload["errors"][0]["field"] == "email"


async def test_email_already_used_is_duplicate(as_role: dict[Role, support.GraphQLClient]) -> None:
    agent = as_role[Role.AGENT]
    await create(agent, name="One", email="same@example.com")
    payload = (await agent(CREATE, {"i": {"name": "Two", "email": "Same@Example.com"}})).ok()[
        "createCustomer"
    ]
    assert payload["errors"][0]["code"] == "DUPLICATE"


async def test_update_with_stale_version_conflicts(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    customer = await create(agent, name="Versioned")
    ok = (
        await agent(UPDATE, {"i": {"id": customer["id"], "name": "V2", "expectedVersion": 1}})
    ).ok()["updateCustomer"]
    assert ok["customer"]["version"] == 2 and ok["errors"] == []
    stale = (
        await agent(UPDATE, {"i": {"id": customer["id"], "name": "V3", "expectedVersion": 1}})
    ).ok()["updateCustomer"]
    assert stale["errors"][0]["code"] == "CONFLICT"
    again = (
        await agent(
            "query($id: ID!) { node(id: $id) { ... on Customer { name version } } }",
            {"id": customer["id"]},
        )
    ).ok()
    assert again["node"] == {"name": "V2", "version": 2}


async def test_foreign_and_unknown_ids_are_not_found(
    as_role: dict[Role, support.GraphQLClient], sessionmaker: Any
) -> None:
    agent = as_role[Role.AGENT]
    async with sessionmaker() as session, session.begin():
        other: Workspace = await auth.create_workspace(
            session, name="Elsewhere " + support.PASSWORD[:0] + __import__("uuid").uuid4().hex
        )
        stranger: User = await auth.create_user(
            session,
            workspace=other,
            email=f"s-{other.id.hex[:8]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
    other_client = await as_role[Role.AGENT].logged_in(stranger.email, support.PASSWORD)
    foreign = await create(other_client, name="Not yours")
    for bad_id in (
        foreign["id"],
        "bm9wZQ",
        "Q3VzdG9tZXI6MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw",
    ):
        payload = (await agent(UPDATE, {"i": {"id": bad_id, "name": "Mine"}})).ok()[
            "updateCustomer"
        ]
        assert payload["errors"][0]["code"] == "NOT_FOUND", bad_id
        assert (await agent("query($id: ID!) { node(id: $id) { id } }", {"id": bad_id})).ok()[
            "node"
        ] is None
    still = (
        await other_client(
            "query($id: ID!) { node(id: $id) { ... on Customer { name } } }", {"id": foreign["id"]}
        )
    ).ok()
    assert still["node"]["name"] == "Not yours"
    # Referencing another workspace's user as owner is NOT_FOUND too.
    owner = __import__("crm_graphql.global_ids", fromlist=["x"]).to_global_id("User", stranger.id)
    payload = (await agent(CREATE, {"i": {"name": "Z", "ownerId": owner}})).ok()["createCustomer"]
    assert (
        payload["errors"][0]["code"] == "NOT_FOUND" and payload["errors"][0]["field"] == "ownerId"
    )


async def test_keyset_pagination_forward_and_backward(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    names = [f"Page {i:02d}" for i in range(7)]
    for name in names:
        await create(agent, name=name)
    order = [{"field": "NAME", "direction": "ASC"}]
    seen: list[str] = []
    after = None
    while True:
        page = (await agent(LIST, {"first": 3, "after": after, "order": order})).ok()["customers"]
        assert page["totalCount"] == 7
        seen += [e["node"]["name"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == names
    back = (await agent(LIST, {"last": 2, "before": after, "order": order})).ok()["customers"]
    # `after` is the end cursor of the second page ("Page 05").
    assert [e["node"]["name"] for e in back["edges"]] == ["Page 03", "Page 04"]
    assert back["pageInfo"]["hasPreviousPage"] is True
    tail = (await agent(LIST, {"last": 2, "order": order})).ok()["customers"]
    assert [e["node"]["name"] for e in tail["edges"]] == ["Page 05", "Page 06"]


async def test_filters_with_and_or_not_and_multi_field_order(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    await create(agent, name="Alice Smith", lifecycleStage="LEAD", tags=["vip"])
    await create(agent, name="Bob Smith", lifecycleStage="CUSTOMER", tags=["vip", "b2b"])
    await create(agent, name="Carol Jones", lifecycleStage="CUSTOMER")
    await create(agent, name="Dave 100%_off", lifecycleStage="CHURNED")

    async def names(filter: dict[str, Any], order: list[dict[str, str]] | None = None) -> list[str]:
        page = (
            await agent(
                LIST, {"first": 50, "filter": filter, "order": order or [{"field": "NAME"}]}
            )
        ).ok()
        return [e["node"]["name"] for e in page["customers"]["edges"]]

    assert await names({"name": {"contains": "smith"}}) == ["Alice Smith", "Bob Smith"]
    assert await names({"name": {"startsWith": "c"}}) == ["Carol Jones"]
    assert await names({"name": {"contains": "%_"}}) == [
        "Dave 100%_off"
    ]  # LIKE wildcards are literal
    assert await names(
        {"or": [{"lifecycleStage": {"eq": "LEAD"}}, {"lifecycleStage": {"eq": "CHURNED"}}]}
    ) == ["Alice Smith", "Dave 100%_off"]
    assert await names({"not": {"lifecycleStage": {"in": ["CUSTOMER", "CHURNED"]}}}) == [
        "Alice Smith"
    ]
    assert await names(
        {"and": [{"tags": {"contains": ["vip"]}}, {"name": {"ne": "Alice Smith"}}]}
    ) == ["Bob Smith"]
    assert await names({"tags": {"anyOf": ["b2b", "nothing"]}}) == ["Bob Smith"]
    assert await names({"email": {"isNull": True}, "name": {"in": ["Carol Jones"]}}) == [
        "Carol Jones"
    ]
    ordered = await names(
        {},
        [{"field": "LIFECYCLE_STAGE", "direction": "DESC"}, {"field": "NAME", "direction": "DESC"}],
    )
    assert ordered == ["Alice Smith", "Carol Jones", "Bob Smith", "Dave 100%_off"]


async def test_page_size_is_capped(as_role: dict[Role, support.GraphQLClient]) -> None:
    result = await as_role[Role.AGENT]("{ customers(first: 10000) { totalCount } }")
    assert result.status == 200 and result.data is None
    assert result.errors[0]["extensions"]["code"] == "VALIDATION"
    assert "between 0 and 100" in result.errors[0]["message"]
    bad_cursor = await as_role[Role.AGENT]('{ customers(after: "garbage") { totalCount } }')
    assert bad_cursor.errors[0]["extensions"]["code"] == "VALIDATION"


async def test_archive_hides_from_lists_but_not_from_node(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    customer = await create(agent, name="Gone Soon")
    archived = (
        await as_role[Role.MANAGER](
            "mutation($id: ID!) { archiveCustomer(input: {id: $id}) { customer { archivedAt } errors { code } } }",
            {"id": customer["id"]},
        )
    ).ok()
    assert archived["archiveCustomer"]["customer"]["archivedAt"]
    listed = (await agent(LIST, {"first": 50})).ok()["customers"]
    assert "Gone Soon" not in [e["node"]["name"] for e in listed["edges"]]
    with_archived = (await agent("{ customers(includeArchived: true) { nodes { name } } }")).ok()
    assert "Gone Soon" in [n["name"] for n in with_archived["customers"]["nodes"]]


async def test_nulls_sort_last_both_ways_and_paging_crosses_them(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    for name, email in [
        ("N1", "b@example.com"),
        ("N2", None),
        ("N3", "a@example.com"),
        ("N4", None),
    ]:
        await create(agent, name=name, email=email)
    for direction, expected in [
        ("ASC", ["N3", "N1", "N2", "N4"]),
        ("DESC", ["N1", "N3", "N2", "N4"]),
    ]:
        order = [{"field": "EMAIL", "direction": direction}, {"field": "NAME"}]
        whole = (await agent(LIST, {"first": 10, "order": order})).ok()["customers"]
        assert [e["node"]["name"] for e in whole["edges"]] == expected, direction
        forward, after = [], None
        for _ in range(4):
            page = (await agent(LIST, {"first": 1, "after": after, "order": order})).ok()[
                "customers"
            ]
            forward += [e["node"]["name"] for e in page["edges"]]
            after = page["pageInfo"]["endCursor"]
        assert forward == expected
        backward, before = [], None
        for _ in range(4):
            page = (await agent(LIST, {"last": 1, "before": before, "order": order})).ok()[
                "customers"
            ]
            backward = [e["node"]["name"] for e in page["edges"]] + backward
            before = page["pageInfo"]["startCursor"]
        assert backward == expected
