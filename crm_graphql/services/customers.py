"""Customers: create, change, archive, merge, list, and their purchase summary."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.crypto import KEYRING_INFO_KEY
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
from crm_graphql.models.base import uuid7
from crm_graphql.services import audit, custom_fields, fields, privacy, rfm
from crm_graphql.services.actor import Actor, in_workspace, scope_condition
from crm_graphql.services.errors import DomainError, Duplicate, Invalid, NotFound
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


def clean_values(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The given fields validated and in their stored form (no database needed: the
    custom fields, uniqueness and references are checked by the callers); unknown keys
    are a programming error."""
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    cleaned = dict(data)
    if "name" in data or creating:
        cleaned["name"] = fields.required_text(data.get("name"), "name")
    if "email" in data:
        cleaned["email"] = fields.email(data["email"])
    if "phone" in data:
        cleaned["phone"] = fields.phone(data["phone"])
    if "external_id" in data:
        cleaned["external_id"] = external_id(data["external_id"])
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
    if "address" in data and data["address"] is not None and not isinstance(data["address"], dict):
        raise Invalid("`address` must be an object", "address")
    if "lifecycle_stage" in data and data["lifecycle_stage"] is None:
        cleaned["lifecycle_stage"] = LifecycleStage.LEAD
    return cleaned


EMAIL_TAKEN = "Another customer in this workspace has this email"
EXTERNAL_ID_TAKEN = "Another customer in this workspace has this external id"


async def _clean(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], *, current: Customer | None
) -> dict[str, Any]:
    """Validate and normalise the provided fields (``clean_values``), then what needs the
    database: unique email and external id, custom fields, references."""
    cleaned = clean_values(data, creating=current is None)
    other = Customer.id != (current.id if current else None)
    if cleaned.get("email"):
        taken = await session.scalar(
            select(Customer.id).where(
                Customer.workspace_id == actor.workspace_id,
                func.lower(Customer.email) == cleaned["email"],
                other,
            )
        )
        if taken is not None:
            raise Duplicate(EMAIL_TAKEN, "email")
    if cleaned.get("external_id"):
        taken = await session.scalar(
            select(Customer.id).where(
                Customer.workspace_id == actor.workspace_id,
                Customer.external_id == cleaned["external_id"],
                other,
            )
        )
        if taken is not None:
            raise Duplicate(EXTERNAL_ID_TAKEN, "externalId")
    typed = await custom_fields.clean_custom_fields(
        actor,
        session,
        CustomFieldEntity.CUSTOMER,
        data,
        current=current.custom_fields if current is not None else None,
    )
    if typed is not None:
        cleaned["custom_fields"] = typed
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


# ------------------------------------------------------------------ imports


IMPORT_KEYS = ("email", "externalId")  # and "custom:<key>"
# The rows an import writes: the editable fields and what the import sets itself.
COLUMNS = (
    "id",
    "workspace_id",
    *EDITABLE,
    "custom_fields_encrypted",
    "erased_at",
    "last_activity_at",
    "merged_into_id",
    "archived_at",
    "version",
)
UPSERTED = tuple(c for c in COLUMNS if c not in ("id", "workspace_id"))


@dataclass
class ImportState:
    """What an import of many chunks reads once and remembers across them: the custom
    field definitions, the sensitive keys, and the keys, emails and external ids of the
    rows seen so far (a second row with one of them is an error, not a second write)."""

    definitions: custom_fields.Definitions
    sensitive: list[str]
    keyring: Any
    keys: dict[str, int]
    emails: dict[str, int]
    external_ids: dict[str, int]

    @staticmethod
    async def read(actor: Actor, session: AsyncSession) -> ImportState:
        definitions = await custom_fields.definitions_of(actor, session, CustomFieldEntity.CUSTOMER)
        sensitive = await privacy.sensitive_custom_fields(actor, session)
        # Sessions of the server and the CLI always have one; sensitive values need it.
        keyring = session.info.get(KEYRING_INFO_KEY)
        return ImportState(definitions, sensitive, keyring, {}, {}, {})


@dataclass
class ImportOutcome:
    """What became of one record of an import: ``created``, ``updated`` or
    ``unchanged`` with the customer's id, or the error that stopped it."""

    outcome: str | None = None
    id: uuid.UUID | None = None
    error: DomainError | None = None


def _key_value(data: Mapping[str, Any], key: str) -> str | None:
    """The record's value of the upsert key in its stored form (None: it has none)."""
    if key == "email":
        return fields.email(data.get("email"))
    if key == "externalId":
        return external_id(data.get("external_id"))
    custom = key.removeprefix("custom:")
    value = (data.get("custom_fields") or {}).get(custom)
    return None if value is None or value == "" else str(value)


def _key_field(key: str) -> str:
    return f"customFields.{key.removeprefix('custom:')}" if key.startswith("custom:") else key


async def _matches(
    actor: Actor, session: AsyncSession, key: str, values: list[str]
) -> dict[str, list[Customer]]:
    """The workspace's customers holding each key value, locked for the update."""
    if not values:
        return {}
    if key == "email":
        column: Any = func.lower(Customer.email)
    elif key == "externalId":
        column = Customer.external_id
    else:
        column = Customer.custom_fields[key.removeprefix("custom:")].astext
    rows = await session.execute(
        select(column, Customer)
        .where(scope_condition(Customer, actor), column.in_(values))
        .order_by(Customer.created_at, Customer.id)
        .with_for_update(of=Customer)
        .execution_options(populate_existing=True)
    )
    found: dict[str, list[Customer]] = {}
    for value, customer in rows.all():
        found.setdefault(value, []).append(customer)
    return found


async def _holders(
    actor: Actor, session: AsyncSession, column: Any, values: set[str]
) -> dict[str, uuid.UUID]:
    if not values:
        return {}
    rows = await session.execute(
        select(column, Customer.id).where(
            Customer.workspace_id == actor.workspace_id, column.in_(list(values))
        )
    )
    return {value: id for value, id in rows.all()}


async def _existing(
    actor: Actor, session: AsyncSession, model: Any, ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    if not ids:
        return set()
    rows = await session.scalars(
        in_workspace(model, actor).with_only_columns(model.id).where(model.id.in_(list(ids)))
    )
    return set(rows.all())


async def _lock_imports(actor: Actor, session: AsyncSession) -> None:
    """Let one import write the workspace's customers at a time, until this transaction
    (a chunk's) ends. Two imports creating the same new key (or email, or external id)
    in chunks at once each found no match, both inserted, and one failed its chunk on
    the unique index (or they deadlocked, inserting in different orders); with the lock
    their chunks alternate, and each chunk's lookups see the other's committed rows. One
    lock, not one per key: a chunk's 1,000 keys would take thousands of entries of the
    server's shared lock table (decision 0033)."""
    key = func.hashtextextended(f"customers.import:{actor.workspace_id}", 0)
    await session.execute(select(func.pg_advisory_xact_lock(key)))


async def import_customers(
    actor: Actor,
    session: AsyncSession,
    batch: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    key: str,
    state: ImportState,
    write: bool,
    action: str = "importCustomers",
) -> list[ImportOutcome]:
    """Create or update many customers (an import's chunk of ``(line, fields)``) in a few
    statements: matched by ``key`` (``email``, ``externalId`` or ``custom:<key>``; a
    record without a value creates a customer), validated like ``create_customer`` and
    ``update_customer`` (a record's missing fields stay as they are, its custom fields
    are merged into the customer's), each written with its audit row. A bad record gets
    its error and changes nothing; with ``write`` False nothing is written at all (a dry
    run, or the rest of an import that will be rolled back)."""
    authorize(actor, Action.WRITE_CUSTOMERS)
    outcomes = [ImportOutcome() for _ in batch]
    keys: list[str | None] = []
    for outcome, (line, data) in zip(outcomes, batch, strict=True):
        value = None
        try:
            value = _key_value(data, key)
            if value is not None and value in state.keys:
                raise Duplicate(
                    f"Line {state.keys[value]} has the same {_key_field(key)}", _key_field(key)
                )
        except DomainError as error:
            outcome.error, value = error, None
        if value is not None:
            state.keys[value] = line
        keys.append(value)
    if write:
        await _lock_imports(actor, session)
    matched = await _matches(actor, session, key, sorted({k for k in keys if k is not None}))

    cleaned_rows: list[tuple[int, dict[str, Any], Customer | None]] = []
    for index, (outcome, (_, data), value) in enumerate(zip(outcomes, batch, keys, strict=True)):
        if outcome.error is not None:
            continue
        found = matched.get(value, []) if value is not None else []
        try:
            if len(found) > 1:
                raise Duplicate(
                    f"{len(found)} customers have this {_key_field(key)}: it matches none of "
                    "them for sure",
                    _key_field(key),
                )
            current = found[0] if found else None
            given = dict(data)
            if current is not None and "custom_fields" in given:
                view = privacy.custom_fields_view(actor, state.keyring, current)
                given["custom_fields"] = {**view, **(given["custom_fields"] or {})}
            cleaned = clean_values(given, creating=current is None)
            typed = custom_fields.clean_with(
                state.definitions,
                actor,
                given,
                current=current.custom_fields if current is not None else None,
            )
            if typed is not None:
                cleaned["custom_fields"] = typed
            if state.sensitive or (current is not None and current.custom_fields_encrypted):
                privacy.protect_with(
                    actor,
                    state.keyring,
                    state.sensitive,
                    current.custom_fields_encrypted if current is not None else None,
                    cleaned,
                )
        except DomainError as error:
            outcome.error = error
            continue
        cleaned_rows.append((index, cleaned, current))

    # Unique emails and external ids: against the workspace and the rows seen before.
    for field, column, seen, message in (
        ("email", func.lower(Customer.email), state.emails, EMAIL_TAKEN),
        ("external_id", Customer.external_id, state.external_ids, EXTERNAL_ID_TAKEN),
    ):
        wanted = {c[field] for _, c, _ in cleaned_rows if c.get(field)}
        holders = await _holders(actor, session, column, wanted)
        api_field = "email" if field == "email" else "externalId"
        for index, cleaned, current in cleaned_rows:
            value = cleaned.get(field)
            if not value or outcomes[index].error is not None:
                continue
            line = batch[index][0]
            holder = holders.get(value)
            if holder is not None and (current is None or holder != current.id):
                outcomes[index].error = Duplicate(message, api_field)
            elif seen.get(value, line) != line:
                outcomes[index].error = Duplicate(
                    f"Line {seen[value]} has the same {api_field}", api_field
                )
            else:
                seen[value] = line

    # References: owners and companies of the workspace.
    for field, model, api_field in (
        ("owner_id", User, "ownerId"),
        ("company_id", Company, "companyId"),
    ):
        ids = {c[field] for _, c, _ in cleaned_rows if c.get(field)}
        present = await _existing(actor, session, model, ids)
        for index, cleaned, _ in cleaned_rows:
            if (
                cleaned.get(field)
                and cleaned[field] not in present
                and outcomes[index].error is None
            ):
                outcomes[index].error = NotFound(f"{model.__name__} not found", api_field)

    values: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for index, cleaned, current in cleaned_rows:
        outcome = outcomes[index]
        if outcome.error is not None:
            continue
        if current is None:
            row = {
                "id": uuid7(),
                "workspace_id": actor.workspace_id,
                "lifecycle_stage": LifecycleStage.LEAD,
                "tags": [],
                "needs": [],
                "preferences": {},
                "custom_fields": {},
                "version": 1,
                **{c: None for c in UPSERTED if c not in _CREATE_DEFAULTS},
                **cleaned,
            }
            outcome.outcome, outcome.id = "created", row["id"]
            before: dict[str, Any] | None = None
            after = {c: audit.jsonable(v) for c, v in row.items() if c not in audit.IGNORED_FIELDS}
        else:
            # The row's columns are read once: ``before`` is ``audit.snapshot`` of them,
            # ``after`` is ``before`` with the changed values (an update pass of an
            # import spent a fifth of its time re-reading and re-converting them).
            row = {c: getattr(current, c) for c in COLUMNS}
            before = {c: audit.jsonable(v) for c, v in row.items() if c not in audit.IGNORED_FIELDS}
            changed: dict[str, tuple[Any, Any]] = {}
            for name, value in cleaned.items():
                stored = audit.jsonable(value)
                if stored != before.get(name):
                    changed[name] = (value, stored)
            outcome.id = current.id
            if not changed:
                outcome.outcome = "unchanged"
                continue
            row.update((c, value) for c, (value, _) in changed.items())
            row["version"] = current.version + 1
            after = {**before, **{c: stored for c, (_, stored) in changed.items()}}
            outcome.outcome = "updated"
        values.append(row)
        audits.append(
            audit.values(
                actor,
                action=action,
                entity_type="Customer",
                entity_id=row["id"],
                before=before,
                after=after,
            )
        )
    if write and values:
        await _upsert_rows(session, values, audits)
    return outcomes


_CREATE_DEFAULTS = frozenset(
    {"lifecycle_stage", "tags", "needs", "preferences", "custom_fields", "version"}
)


# The import's staging tables: rows arrive by binary COPY (no statement to compile per
# chunk), then move into their tables in one statement each. JSON travels as text and is
# cast there. Temporary: per connection, emptied at commit and before each chunk.
_STAGING = """
    CREATE TEMP TABLE IF NOT EXISTS crm_import_customers (
        id uuid, workspace_id uuid, name text, email text, phone text, external_id text,
        address text, lifecycle_stage text, owner_id uuid, company_id uuid, tags text[],
        needs text[], preferences text, custom_fields text, custom_fields_encrypted text,
        erased_at timestamptz, last_activity_at timestamptz, merged_into_id uuid,
        archived_at timestamptz, version integer
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS crm_import_audit (
        id uuid, workspace_id uuid, actor_user_id uuid, actor_api_key_id uuid, action text,
        entity_type text, entity_id uuid, changes text, request_id text, client_ip text
    ) ON COMMIT DELETE ROWS;
    TRUNCATE crm_import_customers, crm_import_audit;
"""
_JSON_COLUMNS = frozenset({"address", "preferences", "custom_fields"})
_AUDIT_COLUMNS = audit.AUDIT_COLUMNS
_SELECTED = ", ".join(f"{c}::jsonb" if c in _JSON_COLUMNS else c for c in COLUMNS)
_MOVE_CUSTOMERS = text(
    f"INSERT INTO customers ({', '.join(COLUMNS)}) SELECT {_SELECTED} FROM crm_import_customers "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in UPSERTED)
    + ", updated_at = now()"
)
_MOVE_AUDIT = text(
    f"INSERT INTO audit_log ({', '.join(_AUDIT_COLUMNS)}) SELECT "
    + ", ".join(
        "changes::jsonb" if c == "changes" else "client_ip::inet" if c == "client_ip" else c
        for c in _AUDIT_COLUMNS
    )
    + " FROM crm_import_audit"
)


async def refresh_statistics(session: AsyncSession) -> None:
    """``ANALYZE`` the customers table (what autovacuum does when it catches up), in the
    caller's transaction: its own new rows count. A role that does not own the table gets
    a warning from PostgreSQL and nothing changes."""
    await session.execute(text(f"ANALYZE {Customer.__tablename__}"))


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(audit.jsonable(value)).decode()


async def _upsert_rows(
    session: AsyncSession, values: list[dict[str, Any]], audits: list[dict[str, Any]]
) -> None:
    """Two statements: new rows inserted, existing ones (by id, locked by ``_matches``)
    given their new values and version; then their audit rows. The change feed's and
    search's statement triggers see one write of the chunk."""
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    await raw.execute(_STAGING)
    await raw.copy_records_to_table(
        "crm_import_customers",
        records=[
            tuple(
                _json(row[c])
                if c in _JSON_COLUMNS
                else row[c].value
                if c == "lifecycle_stage"
                else row[c]
                for c in COLUMNS
            )
            for row in values
        ],
        columns=list(COLUMNS),
    )
    await raw.copy_records_to_table(
        "crm_import_audit",
        records=[
            # ``changes`` holds JSON values already (``audit.jsonable``).
            tuple(orjson.dumps(a[c]).decode() if c == "changes" else a[c] for c in _AUDIT_COLUMNS)
            for a in audits
        ],
        columns=list(_AUDIT_COLUMNS),
    )
    await session.execute(_MOVE_CUSTOMERS)
    await session.execute(_MOVE_AUDIT)
