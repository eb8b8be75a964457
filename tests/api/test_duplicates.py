"""Clean data through the API (issue 17, point 5): emails and phone numbers normalised on
write, likely duplicates found by mailbox, number and similar names within a company,
reviewed with ``duplicateCandidates`` and merged with ``mergeCustomers``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Role
from crm_graphql.services import auth, customers
from crm_graphql.services.actor import Actor
from tests import support
from tests.api.scenarios import Env
from tests.factories import create_customer

CANDIDATES = """query($first: Int, $after: String, $customerId: ID, $minScore: Float) {
  duplicateCandidates(first: $first, after: $after, customerId: $customerId, minScore: $minScore) {
    candidates { cursor score nameSimilarity matches { field similarity }
                 customer { id name } duplicate { id name } }
    pageInfo { hasNextPage endCursor }
  }
}"""
CUSTOMER = "query($id: ID!) { node(id: $id) { ... on Customer { email phone } } }"


def pairs(result: support.GraphQLResponse) -> dict[frozenset[str], list[str]]:
    """Each candidate pair (customer and duplicate IDs) -> the fields that matched."""
    found = result.ok()["duplicateCandidates"]["candidates"]
    return {
        frozenset({c["customer"]["id"], c["duplicate"]["id"]}): [m["field"] for m in c["matches"]]
        for c in found
    }


async def test_emails_and_phone_numbers_are_normalised_on_write(
    as_role: dict[Role, support.GraphQLClient], env: Env
) -> None:
    admin = as_role[Role.ADMIN]
    ada = await create_customer(admin, "Ada", email="  Ada.Lovelace@Example.COM ", phone="0044 20 7946 0000")
    assert (await admin(CUSTOMER, {"id": ada})).ok()["node"] == {
        "email": "ada.lovelace@example.com",
        "phone": "+442079460000",
    }
    for given, stored in (
        ("+1 (415) 555-0199", "+14155550199"),
        ("+44 (0)20 7946 0001", "+442079460001"),
        ("+1 202 555 0100 ext. 12", "+12025550100;ext=12"),
        ("555-0100", "555-0100"),  # no country: kept as given
        ("  ", None),
    ):
        result = await admin(
            """mutation($i: UpdateCustomerInput!) {
                updateCustomer(input: $i) { customer { phone } errors { code } } }""",
            {"i": {"id": ada, "phone": given}},
        )
        assert result.ok()["updateCustomer"]["customer"]["phone"] == stored, given
    company = await admin(
        """mutation($i: CreateCompanyInput!) {
            createCompany(input: $i) { company { phone } errors { code } } }""",
        {"i": {"name": "Analytical Engines", "phone": "+49 30 2312 5000"}},
    )
    assert company.ok()["createCompany"]["company"]["phone"] == "+493023125000"
    too_long = await admin(
        """mutation($i: UpdateCustomerInput!) {
            updateCustomer(input: $i) { errors { code field } } }""",
        {"i": {"id": ada, "phone": "+1" + "0" * 60}},
    )
    assert too_long.ok()["updateCustomer"]["errors"] == [{"code": "VALIDATION", "field": "phone"}]


async def make_company(client: support.GraphQLClient, name: str) -> str:
    result = await client(
        "mutation($i: CreateCompanyInput!) { createCompany(input: $i) { company { id } } }",
        {"i": {"name": name}},
    )
    return str(result.ok()["createCompany"]["company"]["id"])


async def test_candidates_by_mailbox_number_and_name_in_a_company_are_merged_away(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin, viewer = as_role[Role.ADMIN], as_role[Role.VIEWER]
    engines = await make_company(admin, "Engines")
    navy = await make_company(admin, "Navy")
    ada = await create_customer(admin, "Ada Lovelace", email="ada.lovelace@gmail.com")
    ada2 = await create_customer(admin, "Ada King", email="adalovelace+crm@GMAIL.com")
    grace = await create_customer(admin, "Grace Hopper", phone="+1 202 555 0100")
    grace2 = await create_customer(admin, "Grace M. Hopper", phone="001-202-555-0100")
    alan = await create_customer(admin, "Alan Turing", companyId=engines)
    alan2 = await create_customer(admin, "Turing, Alan", companyId=engines)
    await create_customer(admin, "Alan Turing", companyId=navy)  # a namesake elsewhere
    await create_customer(admin, "Alan Tuting", companyId=navy)  # ... and a typo there
    await create_customer(admin, "Alma Turner", companyId=engines)  # a colleague
    found = pairs(await viewer(CANDIDATES))
    assert found[frozenset({ada, ada2})] == ["EMAIL"]
    assert found[frozenset({grace, grace2})] == ["PHONE"]
    assert found[frozenset({alan, alan2})] == ["NAME"]
    assert len(found) == 4  # and the typo within Navy
    result = (await viewer(CANDIDATES)).ok()["duplicateCandidates"]["candidates"]
    scores = [c["score"] for c in result]
    assert scores == sorted(scores, reverse=True) and all(0.55 <= s <= 1 for s in scores)
    assert next(c for c in result if c["customer"]["id"] == ada)["duplicate"]["id"] == ada2

    # Paging, one customer's pairs, and a stricter score.
    first = (await viewer(CANDIDATES, {"first": 1})).ok()["duplicateCandidates"]
    rest = (await viewer(CANDIDATES, {"after": first["pageInfo"]["endCursor"]})).ok()
    assert first["pageInfo"]["hasNextPage"]
    assert [c["cursor"] for c in first["candidates"] + rest["duplicateCandidates"]["candidates"]] == [
        c["cursor"] for c in result
    ]
    assert list(pairs(await viewer(CANDIDATES, {"customerId": grace2}))) == [
        frozenset({grace, grace2})
    ]
    assert all(c["score"] >= 0.9 for c in (await viewer(CANDIDATES, {"minScore": 0.9})).ok()[
        "duplicateCandidates"]["candidates"])

    # Another workspace's customers are never paired with these.
    async with sessionmaker() as session, session.begin():
        workspace = await auth.create_workspace(session, name="Elsewhere")
    stranger = Actor(workspace_id=workspace.id, role=Role.ADMIN)
    async with sessionmaker() as session, session.begin():
        await customers.create_customer(
            stranger, session, {"name": "Ada Lovelace", "email": "ada.lovelace+x@gmail.com"}
        )
    assert len(pairs(await viewer(CANDIDATES))) == 4

    # Reviewed and merged: the pair is gone.
    merged = await admin(
        "mutation($i: MergeCustomersInput!) { mergeCustomers(input: $i) { errors { code } } }",
        {"i": {"survivorId": ada, "mergedIds": [ada2]}},
    )
    assert merged.ok()["mergeCustomers"]["errors"] == []
    assert frozenset({ada, ada2}) not in pairs(await viewer(CANDIDATES))


async def test_bad_arguments_are_errors_with_codes(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    viewer = as_role[Role.VIEWER]

    async def codes(variables: dict[str, Any]) -> list[tuple[str, str | None]]:
        result = await viewer(CANDIDATES, variables)
        assert result.status == 200, result.body
        return [(e["extensions"]["code"], e["extensions"].get("field")) for e in result.errors]

    assert await codes({"minScore": 1.5}) == [("VALIDATION", "minScore")]
    assert await codes({"first": 1000}) == [("VALIDATION", "first")]
    assert await codes({"after": "nope"}) == [("VALIDATION", "after")]
    assert await codes({"customerId": "nope"}) == [("NOT_FOUND", "customerId")]
