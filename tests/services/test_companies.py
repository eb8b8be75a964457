"""Company rules: validation, tenant isolation, versions, permissions, archive."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import AuditLog, Company, Role
from crm_graphql.services.actor import Actor
from crm_graphql.services.companies import (
    COMPANIES,
    archive_company,
    create_company,
    update_company,
)
from crm_graphql.services.errors import Conflict, Forbidden, Invalid, NotFound
from crm_graphql.storage import querying

Sessions = async_sessionmaker[AsyncSession]


async def make_company(sessionmaker: Sessions, actor: Actor, **data: Any) -> Company:
    async with sessionmaker() as s, s.begin():
        return await create_company(actor, s, {"name": "Acme", **data})


async def test_create_company_normalises_domain_website_and_tags(
    sessionmaker: Sessions, agent: Actor, users: dict[Role, Any]
) -> None:
    company = await make_company(
        sessionmaker,
        agent,
        name="  Acme Corp ",
        domain=" Acme.COM. ",
        website="acme.com/about",
        tags=[" b2b", "saas", "b2b"],
        employee_count=0,
        owner_id=users[Role.MANAGER].id,
        custom_fields={"tier": "gold"},
    )
    assert company.name == "Acme Corp"
    assert company.domain == "acme.com"
    assert company.website == "https://acme.com/about"
    assert company.tags == ["b2b", "saas"]
    assert company.employee_count == 0
    assert company.owner_id == users[Role.MANAGER].id
    assert company.custom_fields == {"tier": "gold"}
    assert company.version == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "  "}, "name"),
        ({"domain": "https://acme.com"}, "domain"),
        ({"domain": "acme"}, "domain"),
        ({"domain": "acme..com"}, "domain"),
        ({"domain": "-acme.com"}, "domain"),
        ({"domain": "ac me.com"}, "domain"),
        ({"website": "ftp://acme.com"}, "website"),
        ({"employee_count": -1}, "employeeCount"),
        ({"employee_count": "12"}, "employeeCount"),
        ({"tags": ["ok", " "]}, "tags"),
        ({"custom_fields": ["not", "an", "object"]}, "customFields"),
        ({"address": "Main Street 1"}, "address"),
    ],
)
async def test_create_company_rejects_invalid_input_naming_the_field(
    sessionmaker: Sessions, agent: Actor, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(Invalid) as error:
        await make_company(sessionmaker, agent, **data)
    assert error.value.field == field
    assert error.value.code == "VALIDATION"


async def test_create_company_requires_a_name(sessionmaker: Sessions, agent: Actor) -> None:
    with pytest.raises(Invalid) as error:
        async with sessionmaker() as s, s.begin():
            await create_company(agent, s, {"domain": "acme.com"})
    assert error.value.field == "name"


async def test_create_company_with_owner_of_another_workspace_is_not_found(
    sessionmaker: Sessions, agent: Actor, outsider: Actor
) -> None:
    with pytest.raises(NotFound) as error:
        await make_company(sessionmaker, agent, owner_id=outsider.user_id)
    assert error.value.field == "ownerId"


async def test_create_company_writes_one_audit_row(sessionmaker: Sessions, agent: Actor) -> None:
    company = await make_company(sessionmaker, agent, domain="acme.com")
    async with sessionmaker() as s:
        rows = (await s.scalars(select(AuditLog).where(AuditLog.entity_id == company.id))).all()
    assert [(r.action, r.entity_type, r.actor_user_id) for r in rows] == [
        ("createCompany", "Company", agent.user_id)
    ]
    assert rows[0].changes["domain"] == {"before": None, "after": "acme.com"}


async def test_update_company_changes_given_fields_and_bumps_version(
    sessionmaker: Sessions, agent: Actor
) -> None:
    company = await make_company(sessionmaker, agent, domain="acme.com", industry="Retail")
    async with sessionmaker() as s, s.begin():
        updated = await update_company(
            agent, s, company.id, {"employee_count": 250}, expected_version=1
        )
    assert updated.version == 2
    assert updated.employee_count == 250
    assert updated.industry == "Retail"
    async with sessionmaker() as s:
        audit_row = await s.scalar(
            select(AuditLog).where(
                AuditLog.entity_id == company.id, AuditLog.action == "updateCompany"
            )
        )
    assert audit_row is not None
    assert audit_row.changes == {"employee_count": {"before": None, "after": 250}}


async def test_update_company_with_stale_version_conflicts(
    sessionmaker: Sessions, agent: Actor
) -> None:
    company = await make_company(sessionmaker, agent)
    async with sessionmaker() as s, s.begin():
        await update_company(agent, s, company.id, {"industry": "Retail"}, expected_version=1)
    with pytest.raises(Conflict) as error:
        async with sessionmaker() as s, s.begin():
            await update_company(agent, s, company.id, {"industry": "Food"}, expected_version=1)
    assert error.value.code == "CONFLICT"
    assert error.value.field == "expectedVersion"


async def test_company_of_another_workspace_is_not_found(
    manager: Actor, sessionmaker: Sessions, agent: Actor, outsider: Actor
) -> None:
    foreign = await make_company(sessionmaker, outsider, name="Foreign")
    with pytest.raises(NotFound):
        async with sessionmaker() as s, s.begin():
            await update_company(agent, s, foreign.id, {"name": "Mine now"})
    with pytest.raises(NotFound):
        async with sessionmaker() as s, s.begin():
            await archive_company(manager, s, foreign.id)
    async with sessionmaker() as s:
        page = await querying.list_page(
            agent, s, COMPANIES, filter={"id": {"eq": foreign.id}}, page=querying.PageRequest()
        )
    assert page.items == []


async def test_viewer_cannot_write_companies(
    sessionmaker: Sessions, agent: Actor, viewer: Actor
) -> None:
    company = await make_company(sessionmaker, agent)
    attempts = [
        lambda s: create_company(viewer, s, {"name": "Nope"}),
        lambda s: update_company(viewer, s, company.id, {"name": "Nope"}),
        lambda s: archive_company(viewer, s, company.id),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden) as error:
            async with sessionmaker() as s, s.begin():
                await attempt(s)
        assert error.value.code == "FORBIDDEN"


async def test_archive_company_hides_it_from_list_page(
    manager: Actor, sessionmaker: Sessions, agent: Actor
) -> None:
    kept = await make_company(sessionmaker, agent, name="Kept")
    gone = await make_company(sessionmaker, agent, name="Gone")
    async with sessionmaker() as s, s.begin():
        archived = await archive_company(manager, s, gone.id, expected_version=1)
    assert archived.archived_at is not None
    async with sessionmaker() as s:
        page = await querying.list_page(agent, s, COMPANIES, page=querying.PageRequest())
        everything = await querying.list_page(
            agent, s, COMPANIES, page=querying.PageRequest(), include_archived=True
        )
    assert [c.id for c in page.items] == [kept.id]
    assert {c.id for c in everything.items} == {kept.id, gone.id}


async def test_list_companies_filters_by_tags_and_orders_by_employee_count(
    sessionmaker: Sessions, agent: Actor
) -> None:
    small = await make_company(sessionmaker, agent, name="Small", tags=["saas"], employee_count=5)
    big = await make_company(
        sessionmaker, agent, name="Big", tags=["saas", "b2b"], employee_count=500
    )
    await make_company(sessionmaker, agent, name="Other", tags=["retail"], employee_count=50)
    async with sessionmaker() as s:
        page = await querying.list_page(
            agent,
            s,
            COMPANIES,
            filter={"tags": {"contains": ["saas"]}},
            order=[("employee_count", True)],
            page=querying.PageRequest(first=1),
        )
        assert [c.id for c in page.items] == [big.id]
        assert page.has_next_page
        rest = await querying.list_page(
            agent,
            s,
            COMPANIES,
            filter={"tags": {"contains": ["saas"]}},
            order=[("employee_count", True)],
            page=querying.PageRequest(first=5, after=page.cursors[-1]),
        )
    assert [c.id for c in rest.items] == [small.id]
    assert not rest.has_next_page
