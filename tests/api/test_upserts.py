"""``upsertCustomers`` (issue 17, point 2, first part): up to 1,000 customers in one call,
matched by email, each record succeeding or failing on its own with its errors, audited
per record, and counted against the rate limit by records."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.global_ids import to_global_id
from crm_graphql.models import AuditLog, Customer, Role, User, Workspace
from crm_graphql.settings import Settings
from tests import support
from tests.factories import create_customer

UPSERT = """mutation($i: UpsertCustomersInput!) {
  upsertCustomers(input: $i) {
    created updated failed
    results { index created customer { id name email phone } errors { code field message } }
    errors { code field message }
  }
}"""


async def test_records_create_or_update_by_email_and_fail_alone(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    agent = as_role[Role.AGENT]
    ada = await create_customer(agent, "Ada", email="ada@example.com", phone="+44 20 7946 0000")
    records: list[dict[str, Any]] = [
        {"name": "Ada Lovelace", "email": "ADA@example.com"},  # updates Ada
        {"name": "Grace", "email": "grace@example.com", "phone": "+1 202 555 0100"},
        {"name": "Broken", "email": "not-an-email"},
        {"name": "Lost", "companyId": to_global_id("Company", uuid.uuid4())},
        {"name": "Grace Hopper", "email": "grace@example.com"},  # the one just created
        {"name": " "},
    ]
    result = (await agent(UPSERT, {"i": {"records": records}})).ok()["upsertCustomers"]
    assert result["errors"] == []
    assert (result["created"], result["updated"], result["failed"]) == (1, 2, 3)
    outcomes = {r["index"]: r for r in result["results"]}
    assert [r["index"] for r in result["results"]] == list(range(6))
    assert outcomes[0]["customer"] == {
        "id": ada, "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+442079460000"
    }  # fmt: skip
    assert outcomes[0]["created"] is False
    assert outcomes[1]["created"] is True and outcomes[1]["customer"]["phone"] == "+12025550100"
    grace = outcomes[1]["customer"]["id"]
    assert outcomes[4]["customer"]["id"] == grace and outcomes[4]["created"] is False
    assert outcomes[4]["customer"]["name"] == "Grace Hopper"
    failures = {i: [(e["code"], e["field"]) for e in outcomes[i]["errors"]] for i in (2, 3, 5)}
    assert failures == {
        2: [("VALIDATION", "email")],
        3: [("NOT_FOUND", "companyId")],
        5: [("VALIDATION", "name")],
    }
    assert all(outcomes[i]["customer"] is None for i in (2, 3, 5))
    async with sessionmaker() as session:
        names = set(
            await session.scalars(select(Customer.name).where(Customer.workspace_id == workspace.id))
        )
        audited = await session.scalar(
            select(func.count()).where(
                AuditLog.workspace_id == workspace.id, AuditLog.action == "upsertCustomers"
            )
        )
    assert names == {"Ada Lovelace", "Grace Hopper"}  # the failed records wrote nothing
    assert audited == 3


async def test_too_many_records_or_none_do_nothing_and_viewers_may_not(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin, viewer = as_role[Role.ADMIN], as_role[Role.VIEWER]
    many = [{"name": f"C{i}"} for i in range(1001)]
    for records, code in ((many, "VALIDATION"), ([], "VALIDATION")):
        payload = (await admin(UPSERT, {"i": {"records": records}})).ok()["upsertCustomers"]
        assert [e["code"] for e in payload["errors"]] == [code]
        assert payload["results"] == []
    payload = (await viewer(UPSERT, {"i": {"records": [{"name": "X"}]}})).ok()["upsertCustomers"]
    assert [e["code"] for e in payload["errors"]] == ["FORBIDDEN"]


async def test_records_count_against_the_rate_limit(
    settings: Settings, users: dict[Role, User]
) -> None:
    async with support.app_client(
        settings, client_ip=support.random_ip(), rate_limits=True, rate_limit_user_per_minute=10
    ) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        records = [{"name": f"Limited {i}"} for i in range(6)]
        first = await client(UPSERT, {"i": {"records": records}})
        assert first.ok()["upsertCustomers"]["created"] == 6
        refused = await client(UPSERT, {"i": {"records": records}})  # 6 more than the 4 left
        assert refused.status == 429, refused.body
        error = refused.errors[0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] >= 1
        assert "records" in error["message"]
        # The refused call counted one (its request) and wrote nothing: three hits are left.
        small = await client(UPSERT, {"i": {"records": records[:3]}})
        assert small.ok()["upsertCustomers"]["created"] == 3
        # More records than the whole budget could ever hold: said as such, not "retry".
        over = await client(UPSERT, {"i": {"records": [{"name": "X"}] * 11}})
        assert over.status == 429  # this request itself found the bucket empty
    async with support.app_client(
        settings, client_ip=support.random_ip(), rate_limits=True, rate_limit_user_per_minute=10
    ) as anonymous:
        client = await anonymous.logged_in(users[Role.MANAGER].email, support.PASSWORD)
        over = (await client(UPSERT, {"i": {"records": [{"name": "X"}] * 11}})).ok()
        assert [(e["code"], e["field"]) for e in over["upsertCustomers"]["errors"]] == [
            ("VALIDATION", "records")
        ]


UPSERT_COMPANIES = """mutation($i: UpsertCompaniesInput!) {
  upsertCompanies(input: $i) {
    created updated failed
    results { index created company { id name domain phone } errors { code field } }
    errors { code field }
  }
}"""


async def test_companies_are_matched_by_domain(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    agent = as_role[Role.AGENT]
    made = await agent(
        "mutation($i: CreateCompanyInput!) { createCompany(input: $i) { company { id } } }",
        {"i": {"name": "Acme", "domain": "acme.example"}},
    )
    acme = made.ok()["createCompany"]["company"]["id"]
    records = [
        {"name": "Acme Ltd", "domain": "ACME.example", "phone": "+44 20 7946 0100"},
        {"name": "Globex", "domain": "globex.example"},
        {"name": "Broken", "domain": "https://not a domain/"},
        {"name": "No domain"},
    ]
    result = (await agent(UPSERT_COMPANIES, {"i": {"records": records}})).ok()["upsertCompanies"]
    assert (result["created"], result["updated"], result["failed"]) == (2, 1, 1)
    first, second, third, fourth = result["results"]
    assert first["company"] == {
        "id": acme, "name": "Acme Ltd", "domain": "acme.example", "phone": "+442079460100"
    }  # fmt: skip
    assert first["created"] is False and second["created"] is True and fourth["created"] is True
    assert third["company"] is None and third["errors"] == [{"code": "VALIDATION", "field": "domain"}]


UPSERT_DEALS = """mutation($i: UpsertDealsInput!) {
  upsertDeals(input: $i) {
    created updated failed
    results { index created deal { id title amount stage { id } customFields } errors { code field } }
    errors { code field }
  }
}"""


async def test_deals_are_matched_by_a_custom_field_and_fail_alone(
    as_role: dict[Role, support.GraphQLClient],
    sessionmaker: async_sessionmaker[AsyncSession],
    workspace: Workspace,
) -> None:
    manager = as_role[Role.MANAGER]
    defined = await manager(
        """mutation($i: CreateCustomFieldDefinitionInput!) {
             createCustomFieldDefinition(input: $i) { errors { code } } }""",
        {"i": {"entity": "DEAL", "key": "externalId", "label": "External id", "type": "TEXT"}},
    )
    assert defined.ok()["createCustomFieldDefinition"]["errors"] == []
    pipeline = (
        await manager(
            """mutation($i: CreatePipelineInput!) {
                 createPipeline(input: $i) { pipeline { id stages { id } } } }""",
            {"i": {"name": "Sales", "stages": [{"name": "Lead"}, {"name": "Won"}]}},
        )
    ).ok()["createPipeline"]["pipeline"]
    lead, won = (s["id"] for s in pipeline["stages"])
    made = await manager(
        """mutation($i: CreateDealInput!) { createDeal(input: $i) { deal { id } } }""",
        {"i": {"title": "Old", "stageId": lead, "currency": "EUR",
               "customFields": {"externalId": "ERP-1"}}},
    )  # fmt: skip
    old = made.ok()["createDeal"]["deal"]["id"]
    records: list[dict[str, Any]] = [
        {"title": "Renamed", "currency": "EUR", "amount": "120.50", "stageId": won,
         "customFields": {"externalId": "ERP-1"}},  # updates and moves Old
        {"title": "Fresh", "currency": "EUR", "stageId": lead,
         "customFields": {"externalId": "ERP-2"}},
        {"title": "Keyless", "currency": "EUR", "stageId": lead},  # no key to match on
        {"title": "Bad money", "currency": "EURO", "stageId": lead,
         "customFields": {"externalId": "ERP-3"}},
        {"title": "Fresh again", "currency": "EUR", "customFields": {"externalId": "ERP-2"}},
    ]  # fmt: skip
    result = (
        await manager(UPSERT_DEALS, {"i": {"records": records, "matchOn": "externalId"}})
    ).ok()["upsertDeals"]
    assert result["errors"] == []
    assert (result["created"], result["updated"], result["failed"]) == (1, 2, 2)
    first, second, third, fourth, fifth = result["results"]
    assert first["deal"]["id"] == old and first["created"] is False
    assert first["deal"]["title"] == "Renamed" and first["deal"]["stage"]["id"] == won
    assert first["deal"]["amount"] == "120.50"
    assert second["created"] is True and second["deal"]["stage"]["id"] == lead
    assert fifth["deal"]["id"] == second["deal"]["id"] and fifth["deal"]["title"] == "Fresh again"
    assert third["errors"] == [{"code": "VALIDATION", "field": "customFields.externalId"}]
    assert fourth["errors"] == [{"code": "VALIDATION", "field": "currency"}]
    async with sessionmaker() as session:
        actions = list(
            await session.scalars(
                select(AuditLog.action).where(
                    AuditLog.workspace_id == workspace.id,
                    AuditLog.action.in_(["upsertDeals", "moveDeal"]),
                )
            )
        )
    # Two updates and a creation; the move is audited as moveDeal (the deal, its activity).
    assert actions.count("upsertDeals") == 3 and "moveDeal" in actions

    unknown = (
        await manager(UPSERT_DEALS, {"i": {"records": records[:1], "matchOn": "nope"}})
    ).ok()["upsertDeals"]
    assert unknown["errors"] == [{"code": "VALIDATION", "field": "matchOn"}]
    viewer = (await as_role[Role.VIEWER](UPSERT_DEALS, {"i": {"records": records[:1]}})).ok()
    assert [e["code"] for e in viewer["upsertDeals"]["errors"]] == ["FORBIDDEN"]


async def test_deal_records_count_against_the_rate_limit(
    settings: Settings, users: dict[Role, User], as_role: dict[Role, support.GraphQLClient]
) -> None:
    stage = (
        await as_role[Role.MANAGER](
            """mutation($i: CreatePipelineInput!) {
                 createPipeline(input: $i) { pipeline { stages { id } } } }""",
            {"i": {"name": "Limited", "stages": [{"name": "Lead"}]}},
        )
    ).ok()["createPipeline"]["pipeline"]["stages"][0]["id"]
    async with support.app_client(
        settings, client_ip=support.random_ip(), rate_limits=True, rate_limit_user_per_minute=10
    ) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        records = [{"title": f"D{i}", "currency": "EUR", "stageId": stage} for i in range(6)]
        first = await client(UPSERT_DEALS, {"i": {"records": records}})
        assert first.ok()["upsertDeals"]["created"] == 6
        refused = await client(UPSERT_DEALS, {"i": {"records": records}})
        assert refused.status == 429, refused.body
        assert refused.errors[0]["extensions"]["code"] == "RATE_LIMITED"
