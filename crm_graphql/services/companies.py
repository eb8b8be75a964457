"""Companies: create, change, archive and list the organisations customers belong to."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Company, CustomFieldEntity, User
from crm_graphql.services import custom_fields, fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError, Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

COMPANIES = querying.ListSpec(
    model=Company,
    filter_fields={
        "id": Company.id,
        "name": Company.name,
        "domain": Company.domain,
        "industry": Company.industry,
        "owner_id": Company.owner_id,
        "tags": Company.tags,
        "employee_count": Company.employee_count,
        "created_at": Company.created_at,
        "updated_at": Company.updated_at,
        "archived_at": Company.archived_at,
    },
    order_fields={
        "name": Company.name,
        "created_at": Company.created_at,
        "updated_at": Company.updated_at,
        "employee_count": Company.employee_count,
    },
    default_order=[("name", False)],
    parent_fields={"owner_id": Company.owner_id},
    custom_fields=custom_fields.terms_loader(CustomFieldEntity.COMPANY),
)

EDITABLE = (
    "name",
    "domain",
    "industry",
    "employee_count",
    "phone",
    "website",
    "address",
    "owner_id",
    "tags",
    "custom_fields",
)

# Letters, digits and inner hyphens per label, at least two labels, an alphabetic (or
# punycode) top-level label: "acme.com", "eu.acme.co.uk", "xn--bcher-kva.example".
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$"
)
MAX_EMPLOYEES = 2_147_483_647  # the column is a 32-bit integer


def domain(value: Any, field: str = "domain") -> str | None:
    """A bare, lower-cased hostname (``acme.com``), or ``Invalid``."""
    if value is None:
        return None
    cleaned = str(value).strip().lower().rstrip(".")
    if not cleaned:
        return None
    if "/" in cleaned or ":" in cleaned:
        raise Invalid("Give the bare domain, such as acme.com (no scheme, port or path)", field)
    if not _HOSTNAME.match(cleaned):
        raise Invalid(f"`{value}` is not a valid domain name", field)
    return cleaned


def website(value: Any, field: str = "website") -> str | None:
    """An absolute http(s) URL; ``acme.com`` becomes ``https://acme.com``."""
    cleaned = fields.optional_text(value, field, max_length=500)
    if cleaned is None:
        return None
    if "://" not in cleaned:
        cleaned = f"https://{cleaned}"
    parts = urlsplit(cleaned)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or " " in cleaned:
        raise Invalid(f"`{value}` is not a valid http(s) address", field)
    return cleaned


def _employee_count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("`employeeCount` must be a whole number", "employeeCount")
    if not 0 <= value <= MAX_EMPLOYEES:
        raise Invalid("`employeeCount` must be zero or more", "employeeCount")
    return value


async def _clean(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], *, current: Company | None
) -> dict[str, Any]:
    """Validate and normalise the provided fields; unknown keys are a programming error."""
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    cleaned = dict(data)
    if "name" in data or current is None:
        cleaned["name"] = fields.required_text(data.get("name"), "name")
    if "domain" in data:
        cleaned["domain"] = domain(data["domain"])
    if "industry" in data:
        cleaned["industry"] = fields.optional_text(data["industry"], "industry", max_length=100)
    if "employee_count" in data:
        cleaned["employee_count"] = _employee_count(data["employee_count"])
    if "phone" in data:
        cleaned["phone"] = fields.phone(data["phone"])
    if "website" in data:
        cleaned["website"] = website(data["website"])
    if "address" in data and data["address"] is not None and not isinstance(data["address"], dict):
        raise Invalid("`address` must be an object", "address")
    if "tags" in data:
        cleaned["tags"] = fields.tags(data["tags"])
    typed = await custom_fields.clean_custom_fields(
        actor,
        session,
        CustomFieldEntity.COMPANY,
        data,
        current=current.custom_fields if current is not None else None,
    )
    if typed is not None:
        cleaned["custom_fields"] = typed
    await records.ensure_in_workspace(actor, session, [(User, cleaned.get("owner_id"), "ownerId")])
    return cleaned


async def create_company(
    actor: Actor,
    session: AsyncSession,
    data: Mapping[str, Any],
    *,
    action: str = "createCompany",
) -> Company:
    """Add a company to the workspace (audited as ``action``)."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    cleaned = await _clean(actor, session, data, current=None)
    return await records.create(actor, session, Company(**cleaned), action=action)


async def update_company(
    actor: Actor,
    session: AsyncSession,
    company_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
    action: str = "updateCompany",
) -> Company:
    """Change the given fields of a company (fields left out stay as they are; audited as
    ``action``)."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    company = await records.get_for_change(actor, session, Company, company_id, expected_version)
    cleaned = await _clean(actor, session, data, current=company)
    return await records.update(actor, session, company, cleaned, action=action)


UPSERT_ACTION = "upsertCompanies"


async def upsert_companies(
    actor: Actor, session: AsyncSession, batch: Sequence[Mapping[str, Any] | DomainError]
) -> list[records.Upserted[Company]]:
    """Create or update up to ``records.MAX_UPSERT_RECORDS`` companies, matched by domain
    (``example.com``, case ignored): a record whose domain a company of the workspace has
    updates that company (the oldest, if several have it), any other creates one; each on
    its own (``records.upsert_each``), audited as ``upsertCompanies``."""
    authorize(actor, Action.WRITE_CUSTOMERS)

    async def existing(data: Mapping[str, Any]) -> uuid.UUID | None:
        key = domain(data.get("domain"))
        if not key:
            return None
        return await session.scalar(
            select(Company.id)
            .where(Company.workspace_id == actor.workspace_id, func.lower(Company.domain) == key)
            .order_by(Company.created_at, Company.id)
            .limit(1)
        )

    return await records.upsert_each(
        session,
        batch,
        existing=existing,
        create=lambda data: create_company(actor, session, data, action=UPSERT_ACTION),
        update=lambda id, data: update_company(actor, session, id, data, action=UPSERT_ACTION),
    )


async def archive_company(
    actor: Actor,
    session: AsyncSession,
    company_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
    action: str = "archiveCompany",
) -> Company:
    """Hide a company from lists; its customers keep pointing at it (audited as
    ``action``)."""
    authorize(actor, Action.ARCHIVE_CUSTOMERS)
    return await records.archive(
        actor, session, Company, company_id, expected_version, action=action
    )
