"""Companies through GraphQL over HTTP: CRUD, typed errors, relations, lists."""

from __future__ import annotations

import uuid
from typing import Any

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Role, User, Workspace
from crm_graphql.services import auth
from tests import support

CREATE = """mutation($i: CreateCompanyInput!) {
  createCompany(input: $i) {
    company {
      id name domain website employeeCount tags customFields version
      address { city postalCode } owner { id }
    }
    errors { code field message }
  }
}"""
UPDATE = """mutation($i: UpdateCompanyInput!) {
  updateCompany(input: $i) { company { id name version domain } errors { code field message } }
}"""
ARCHIVE = """mutation($i: ArchiveInput!) {
  archiveCompany(input: $i) { company { id archivedAt } errors { code field message } }
}"""
LIST = """query($f: CompanyFilter, $o: [CompanyOrder!], $archived: Boolean! = false) {
  companies(filter: $f, orderBy: $o, includeArchived: $archived) { totalCount nodes { name } }
}"""


async def create(client: support.GraphQLClient, **fields: Any) -> dict[str, Any]:
    payload = (await client(CREATE, {"i": fields})).ok()["createCompany"]
    assert payload["errors"] == [], payload
    return payload["company"]  # type: ignore[no-any-return]


async def test_create_and_read_company(
    as_role: dict[Role, support.GraphQLClient], users: dict[Role, User]
) -> None:
    agent = as_role[Role.AGENT]
    owner = to_global_id("User", users[Role.MANAGER].id)
    company = await create(
        agent,
        name=" Acme Ltd ",
        domain="ACME.com",
        website="acme.com",
        employeeCount=120,
        tags=["b2b", "b2b"],
        customFields={"tier": "gold"},
        ownerId=owner,
        address={"city": "Leeds", "postalCode": "LS1"},
    )
    assert company["name"] == "Acme Ltd"
    assert company["domain"] == "acme.com"
    assert company["website"] == "https://acme.com"
    assert company["employeeCount"] == 120
    assert company["tags"] == ["b2b"]
    assert company["customFields"] == {"tier": "gold"}
    assert company["address"] == {"city": "Leeds", "postalCode": "LS1"}
    assert company["owner"] == {"id": owner}
    assert company["version"] == 1
    node = (
        await agent(
            "query($id: ID!) { node(id: $id) { id ... on Company { name } } }",
            {"id": company["id"]},
        )
    ).ok()
    assert node["node"] == {"id": company["id"], "name": "Acme Ltd"}


async def test_company_lists_its_customers_and_deals(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    acme = await create(admin, name="Acme")
    other = await create(admin, name="Other")
    for name in ("Ann", "Ben"):
        result = await admin(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { errors { code } } }",
            {"i": {"name": name, "companyId": acme["id"]}},
        )
        assert result.ok()["createCustomer"]["errors"] == []
    pipeline = (
        await admin(
            'mutation { createPipeline(input: {name: "P", stages: [{name: "Lead"}]}) '
            "{ pipeline { id } errors { code } } }"
        )
    ).ok()["createPipeline"]["pipeline"]
    deal = (
        await admin(
            "mutation($i: CreateDealInput!) { createDeal(input: $i) { errors { code } } }",
            {
                "i": {
                    "title": "Acme deal",
                    "pipelineId": pipeline["id"],
                    "currency": "EUR",
                    "companyId": acme["id"],
                }
            },
        )
    ).ok()["createDeal"]
    assert deal["errors"] == []
    query = """{ companies(orderBy: [{field: NAME}]) { nodes {
        name
        customers(orderBy: [{field: NAME}]) { totalCount nodes { name company { name } } }
        deals { totalCount nodes { title company { id } } }
    } } }"""
    nodes = (await admin(query)).ok()["companies"]["nodes"]
    assert [n["name"] for n in nodes] == ["Acme", "Other"]
    assert nodes[0]["customers"]["totalCount"] == 2
    assert [c["name"] for c in nodes[0]["customers"]["nodes"]] == ["Ann", "Ben"]
    assert nodes[0]["customers"]["nodes"][0]["company"] == {"name": "Acme"}
    assert nodes[0]["deals"]["totalCount"] == 1
    assert nodes[0]["deals"]["nodes"][0] == {"title": "Acme deal", "company": {"id": acme["id"]}}
    assert nodes[1]["customers"]["totalCount"] == 0 and nodes[1]["deals"]["nodes"] == []
    assert other["id"] != acme["id"]


async def test_update_with_stale_version_conflicts(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    company = await create(agent, name="Versioned")
    ok = (
        await agent(UPDATE, {"i": {"id": company["id"], "name": "V2", "expectedVersion": 1}})
    ).ok()["updateCompany"]
    assert ok["errors"] == [] and ok["company"]["version"] == 2
    stale = (
        await agent(UPDATE, {"i": {"id": company["id"], "name": "V3", "expectedVersion": 1}})
    ).ok()["updateCompany"]
    assert stale["company"] is None
    assert stale["errors"][0]["code"] == "CONFLICT"
    again = (
        await agent(
            "query($id: ID!) { node(id: $id) { ... on Company { name version } } }",
            {"id": company["id"]},
        )
    ).ok()
    assert again["node"] == {"name": "V2", "version": 2}


async def test_update_leaves_out_unset_fields_and_clears_nulls(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    company = await create(agent, name="Keep", domain="keep.io")
    renamed = (await agent(UPDATE, {"i": {"id": company["id"], "name": "Kept"}})).ok()[
        "updateCompany"
    ]
    assert renamed["company"]["domain"] == "keep.io"  # left out: unchanged
    cleared = (await agent(UPDATE, {"i": {"id": company["id"], "domain": None}})).ok()[
        "updateCompany"
    ]
    assert cleared["company"] == {"id": company["id"], "name": "Kept", "version": 3, "domain": None}


async def test_owner_from_another_workspace_is_not_found(
    as_role: dict[Role, support.GraphQLClient], sessionmaker: Any
) -> None:
    async with sessionmaker() as session, session.begin():
        other: Workspace = await auth.create_workspace(
            session, name=f"Elsewhere {uuid.uuid4().hex}"
        )
        stranger: User = await auth.create_user(
            session,
            workspace=other,
            email=f"s-{uuid.uuid4().hex[:10]}@example.com",
            password=support.PASSWORD,
            role=Role.ADMIN,
        )
    payload = (
        await as_role[Role.ADMIN](
            CREATE, {"i": {"name": "Z", "ownerId": to_global_id("User", stranger.id)}}
        )
    ).ok()["createCompany"]
    assert payload["company"] is None
    assert (
        payload["errors"][0]["code"] == "NOT_FOUND" and payload["errors"][0]["field"] == "ownerId"
    )
    # An ID of another type is no user either.
    company = await create(as_role[Role.ADMIN], name="Real")
    wrong_type = (
        await as_role[Role.ADMIN](CREATE, {"i": {"name": "Y", "ownerId": company["id"]}})
    ).ok()["createCompany"]
    assert wrong_type["errors"][0]["code"] == "NOT_FOUND"
    assert (await as_role[Role.ADMIN](LIST)).ok()["companies"]["nodes"] == [{"name": "Real"}]


async def test_viewer_cannot_create_companies(as_role: dict[Role, support.GraphQLClient]) -> None:
    payload = (await as_role[Role.VIEWER](CREATE, {"i": {"name": "Nope"}})).ok()["createCompany"]
    assert payload["company"] is None
    assert payload["errors"][0]["code"] == "FORBIDDEN"
    assert (await as_role[Role.VIEWER](LIST)).ok()["companies"]["totalCount"] == 0


async def test_invalid_domain_is_a_validation_error(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    payload = (
        await as_role[Role.AGENT](CREATE, {"i": {"name": "X", "domain": "https://x.com/path"}})
    ).ok()["createCompany"]
    assert (
        payload["errors"][0]["code"] == "VALIDATION" and payload["errors"][0]["field"] == "domain"
    )


async def test_filter_order_and_archive(as_role: dict[Role, support.GraphQLClient]) -> None:
    agent = as_role[Role.AGENT]
    await create(agent, name="Small", employeeCount=5, tags=["smb"])
    big = await create(agent, name="Big", employeeCount=5000, industry="Steel")
    await create(agent, name="Unknown")

    async def names(
        filter: dict[str, Any] | None = None,
        order: list[dict[str, str]] | None = None,
        archived: bool = False,
    ) -> list[str]:
        data = (await agent(LIST, {"f": filter, "o": order, "archived": archived})).ok()
        return [n["name"] for n in data["companies"]["nodes"]]

    assert await names() == ["Big", "Small", "Unknown"]  # by name by default
    assert await names({"employeeCount": {"gt": 10}}) == ["Big"]
    assert await names({"employeeCount": {"isNull": True}}) == ["Unknown"]
    assert await names(
        {"or": [{"tags": {"contains": ["smb"]}}, {"industry": {"eq": "Steel"}}]}
    ) == ["Big", "Small"]
    # NULLs sort last in both directions.
    assert await names(order=[{"field": "EMPLOYEE_COUNT", "direction": "DESC"}]) == [
        "Big",
        "Small",
        "Unknown",
    ]

    manager = as_role[Role.MANAGER]
    archived = (await manager(ARCHIVE, {"i": {"id": big["id"]}})).ok()["archiveCompany"]
    assert archived["errors"] == [] and archived["company"]["archivedAt"]
    assert await names() == ["Small", "Unknown"]
    assert await names(archived=True) == ["Big", "Small", "Unknown"]
