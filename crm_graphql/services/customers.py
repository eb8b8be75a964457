"""Customers: create, change, archive, merge, list, and their purchase summary."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import (
    Activity,
    Company,
    Conversation,
    Customer,
    CustomFieldEntity,
    Deal,
    LifecycleStage,
    Order,
    OrderStatus,
    User,
)
from crm_graphql.services import audit, custom_fields, fields, privacy, rfm
from crm_graphql.services.actor import Actor, scope_condition
from crm_graphql.services.errors import DomainError, Duplicate, Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

CUSTOMERS = querying.ListSpec(
    model=Customer,
    filter_fields={
        "id": Customer.id,
        "name": Customer.name,
        "email": Customer.email,
        "phone": Customer.phone,
        "lifecycle_stage": Customer.lifecycle_stage,
        "owner_id": Customer.owner_id,
        "company_id": Customer.company_id,
        "tags": Customer.tags,
        "needs": Customer.needs,
        "created_at": Customer.created_at,
        "updated_at": Customer.updated_at,
        "last_activity_at": Customer.last_activity_at,
        "archived_at": Customer.archived_at,
    },
    order_fields={
        "name": Customer.name,
        "email": Customer.email,
        "lifecycle_stage": Customer.lifecycle_stage,
        "created_at": Customer.created_at,
        "updated_at": Customer.updated_at,
        "last_activity_at": Customer.last_activity_at,
    },
    default_order=[("created_at", True)],
    parent_fields={"company_id": Customer.company_id, "owner_id": Customer.owner_id},
    custom_fields=custom_fields.terms_loader(CustomFieldEntity.CUSTOMER),
    # Fields that read the actor's orders: first order, "ordered in", RFM segment.
    actor_filter_fields=rfm.customer_filter_fields,
    prepare_filters=rfm.prepare_customer_filters,
)

EDITABLE = (
    "name",
    "email",
    "phone",
    "external_id",
    "address",
    "lifecycle_stage",
    "owner_id",
    "company_id",
    "tags",
    "needs",
    "preferences",
    "custom_fields",
)


def external_id(value: Any) -> str | None:
    """An external id as stored: trimmed, at most 200 characters, None when blank."""
    return fields.optional_text(value, "externalId", max_length=200)


async def _clean(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], *, current: Customer | None
) -> dict[str, Any]:
    """Validate and normalise the provided fields; unknown keys are a programming error."""
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    cleaned = dict(data)
    if "name" in data or current is None:
        cleaned["name"] = fields.required_text(data.get("name"), "name")
    if "email" in data:
        cleaned["email"] = fields.email(data["email"])
        if cleaned["email"]:
            taken = await session.scalar(
                select(Customer.id).where(
                    Customer.workspace_id == actor.workspace_id,
                    func.lower(Customer.email) == cleaned["email"],
                    Customer.id != (current.id if current else None),
                )
            )
            if taken is not None:
                raise Duplicate("Another customer in this workspace has this email", "email")
    if "phone" in data:
        cleaned["phone"] = fields.phone(data["phone"])
    if "external_id" in data:
        cleaned["external_id"] = external_id(data["external_id"])
        if cleaned["external_id"]:
            taken = await session.scalar(
                select(Customer.id).where(
                    Customer.workspace_id == actor.workspace_id,
                    Customer.external_id == cleaned["external_id"],
                    Customer.id != (current.id if current else None),
                )
            )
            if taken is not None:
                raise Duplicate(
                    "Another customer in this workspace has this external id", "externalId"
                )
    if "tags" in data:
        cleaned["tags"] = fields.tags(data["tags"])
    if "needs" in data:
        cleaned["needs"] = fields.tags(data["needs"], "needs")
    if "preferences" in data:
        if data["preferences"] is None:
            cleaned["preferences"] = {}
        elif not isinstance(data["preferences"], dict):
            raise Invalid("`preferences` must be a JSON object", "preferences")
        else:
            fields.json_value(data["preferences"], "preferences")
    typed = await custom_fields.clean_custom_fields(
        actor,
        session,
        CustomFieldEntity.CUSTOMER,
        data,
        current=current.custom_fields if current is not None else None,
    )
    if typed is not None:
        cleaned["custom_fields"] = typed
    if "address" in data and data["address"] is not None and not isinstance(data["address"], dict):
        raise Invalid("`address` must be an object", "address")
    if "lifecycle_stage" in data and data["lifecycle_stage"] is None:
        cleaned["lifecycle_stage"] = LifecycleStage.LEAD
    await records.ensure_in_workspace(
        actor,
        session,
        [
            (User, cleaned.get("owner_id"), "ownerId"),
            (Company, cleaned.get("company_id"), "companyId"),
        ],
    )
    return cleaned


async def create_customer(
    actor: Actor,
    session: AsyncSession,
    data: Mapping[str, Any],
    *,
    action: str = "createCustomer",
) -> Customer:
    """Add a customer to the workspace (audited as ``action``)."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    cleaned = await _clean(actor, session, data, current=None)
    await privacy.protect_custom_fields(actor, session, None, cleaned)
    return await records.create(actor, session, Customer(**cleaned), action=action)


async def update_customer(
    actor: Actor,
    session: AsyncSession,
    customer_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
    action: str = "updateCustomer",
) -> Customer:
    """Change the given fields of a customer (fields left out stay as they are; audited
    as ``action``)."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    customer = await records.get_for_change(actor, session, Customer, customer_id, expected_version)
    cleaned = await _clean(actor, session, data, current=customer)
    await privacy.protect_custom_fields(actor, session, customer, cleaned)
    return await records.update(actor, session, customer, cleaned, action=action)


async def archive_customer(
    actor: Actor,
    session: AsyncSession,
    customer_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
    action: str = "archiveCustomer",
) -> Customer:
    """Hide a customer from lists; its history stays (audited as ``action``)."""
    authorize(actor, Action.ARCHIVE_CUSTOMERS)
    return await records.archive(
        actor, session, Customer, customer_id, expected_version, action=action
    )


UPSERT_ACTION = "upsertCustomers"


async def upsert_customers(
    actor: Actor, session: AsyncSession, batch: Sequence[Mapping[str, Any] | DomainError]
) -> list[records.Upserted[Customer]]:
    """Create or update up to ``records.MAX_UPSERT_RECORDS`` customers, matched by email
    (case ignored): a record whose email a customer of the workspace has updates that
    customer with the fields it gives, any other record creates one; each on its own
    (``records.upsert_each``), audited as ``upsertCustomers``."""
    authorize(actor, Action.WRITE_CUSTOMERS)

    async def existing(data: Mapping[str, Any]) -> uuid.UUID | None:
        email = fields.email(data.get("email"))
        if not email:
            return None
        return await session.scalar(
            select(Customer.id).where(
                Customer.workspace_id == actor.workspace_id, func.lower(Customer.email) == email
            )
        )

    return await records.upsert_each(
        session,
        batch,
        existing=existing,
        create=lambda data: create_customer(actor, session, data, action=UPSERT_ACTION),
        update=lambda id, data: update_customer(actor, session, id, data, action=UPSERT_ACTION),
    )


async def merge_customers(
    actor: Actor,
    session: AsyncSession,
    survivor_id: uuid.UUID | None,
    merged_ids: Sequence[uuid.UUID | None],
) -> Customer:
    """Fold duplicates into one customer: their deals, activities, orders and conversations
    move to the survivor, missing fields are filled from them, tags and needs are united,
    and the duplicates are archived with a pointer to the survivor."""
    authorize(actor, Action.MERGE_CUSTOMERS)
    if not merged_ids:
        raise Invalid("Name at least one customer to merge", "mergedIds")
    survivor = await records.get_for_change(actor, session, Customer, survivor_id, None)
    merged: list[Customer] = []
    for index, mid in enumerate(merged_ids):
        if mid == survivor.id:
            raise Invalid("A customer cannot be merged into itself", f"mergedIds.{index}")
        row = await records.get(
            actor, session, Customer, mid, field=f"mergedIds.{index}", for_update=True
        )
        if row.merged_into_id is not None:
            raise Invalid("That customer was already merged", f"mergedIds.{index}")
        if row not in merged:
            merged.append(row)
    ids = [m.id for m in merged]
    before = audit.snapshot(survivor)
    for table in (Deal, Activity, Order, Conversation):
        await session.execute(
            update(table)
            .where(table.workspace_id == actor.workspace_id, table.customer_id.in_(ids))
            .values(customer_id=survivor.id)
        )
    now = datetime.now(UTC)
    fill: dict[str, Any] = {}
    for other in merged:
        for key in ("phone", "address", "company_id", "owner_id"):
            if getattr(survivor, key) is None and fill.get(key) is None and getattr(other, key):
                fill[key] = getattr(other, key)
    fill["tags"] = list(dict.fromkeys([*survivor.tags, *(t for m in merged for t in m.tags)]))
    fill["needs"] = list(dict.fromkeys([*survivor.needs, *(n for m in merged for n in m.needs)]))
    fill["custom_fields"] = {
        **{k: v for m in reversed(merged) for k, v in m.custom_fields.items()},
        **survivor.custom_fields,
    }
    fill["custom_fields_encrypted"] = await privacy.merged_sensitive_fields(
        session, survivor, merged
    )
    latest = [m.last_activity_at for m in [survivor, *merged] if m.last_activity_at]
    fill["last_activity_at"] = max(latest) if latest else None
    email_from = None
    if survivor.email is None:
        email_from = next((m for m in merged if m.email), None)
    for other in merged:
        other_before = audit.snapshot(other)
        other.merged_into_id = survivor.id
        other.archived_at = now
        if other is email_from:
            fill["email"] = other.email
            other.email = None  # frees the unique email for the survivor
        await session.flush()
        audit.record(
            actor,
            session,
            action="mergeCustomers",
            entity_type="Customer",
            entity_id=other.id,
            before=other_before,
            after=audit.snapshot(other),
        )
    records.apply(survivor, fill)
    await session.flush()
    audit.record(
        actor,
        session,
        action="mergeCustomers",
        entity_type="Customer",
        entity_id=survivor.id,
        before=before,
        after={**audit.snapshot(survivor), "merged_ids": [str(i) for i in ids]},
    )
    return survivor


@dataclass(frozen=True)
class MoneyTotal:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class PurchaseSummary:
    """What a customer has bought: totals per currency of paid and fulfilled orders."""

    order_count: int
    totals: list[MoneyTotal]
    first_order_at: datetime | None
    last_order_at: datetime | None


COUNTED_ORDER_STATUSES = (OrderStatus.PAID, OrderStatus.FULFILLED)


def counted_orders_condition(actor: Actor) -> ColumnElement[bool]:
    """The orders a purchase summary adds up: the actor's workspace, live, paid or fulfilled."""
    return and_(
        scope_condition(Order, actor),
        Order.archived_at.is_(None),
        Order.status.in_(COUNTED_ORDER_STATUSES),
    )


async def purchase_summaries(
    actor: Actor, session: AsyncSession, customer_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, PurchaseSummary]:
    """Purchase summaries for many customers in one grouped statement."""
    authorize(actor, Action.READ_CUSTOMERS)
    rows = await session.execute(
        select(
            Order.customer_id,
            Order.currency,
            func.count(),
            func.sum(Order.amount),
            func.min(Order.placed_at),
            func.max(Order.placed_at),
        )
        .where(counted_orders_condition(actor), Order.customer_id.in_(list(customer_ids)))
        .group_by(Order.customer_id, Order.currency)
        .order_by(Order.customer_id, Order.currency)
    )
    acc: dict[uuid.UUID, list[Any]] = {}
    for customer_id, currency, n, total, first, last in rows.all():
        entry = acc.setdefault(customer_id, [0, [], None, None])
        entry[0] += n
        entry[1].append(MoneyTotal(total, currency.strip()))
        entry[2] = first if entry[2] is None else min(entry[2], first)
        entry[3] = last if entry[3] is None else max(entry[3], last)
    return {
        cid: PurchaseSummary(*acc[cid]) if cid in acc else PurchaseSummary(0, [], None, None)
        for cid in customer_ids
    }
