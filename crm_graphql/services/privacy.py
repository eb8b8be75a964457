"""Data protection: sensitive custom fields encrypted at rest, key rotation, a customer's
data export and erasure (docs/decisions/0004-data-protection.md).

Sensitive custom fields: a workspace lists customer custom-field keys as sensitive. Their
values never sit in ``customers.custom_fields``; they live, as one encrypted JSON object,
in ``customers.custom_fields_encrypted`` and are merged back on read for roles that may
read them (admins, managers and agents); viewers and API keys see the keys with null
values, and cannot write them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.crypto import Keyring, keyring_of
from crm_graphql.enums import EmailDeliveryStatus
from crm_graphql.models import (
    Activity,
    AuditLog,
    Company,
    Conversation,
    Customer,
    CustomFieldEntity,
    Deal,
    EmailMessage,
    Event,
    Message,
    MessageAttachment,
    Order,
    Webhook,
    Workspace,
)
from crm_graphql.services import activities, audit, custom_fields, email, events, fields, policy
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Forbidden, Invalid
from crm_graphql.services.policy import Action
from crm_graphql.storage import records

ERASED_NAME = "Erased customer"
REDACTED = "[erased]"
SENSITIVE = "[sensitive]"
TOPIC = "customers"
MAX_SENSITIVE_KEYS = 50

# Columns holding ciphertexts under the keyring (rotation re-encrypts them all).
ENCRYPTED_COLUMNS: list[tuple[type[Any], str]] = [
    (Webhook, "secret_encrypted"),
    (Customer, "custom_fields_encrypted"),
]

# Per audited entity type, the keys of ``changes`` that carry personal values of a
# customer: erasure replaces their before/after values with ``REDACTED``.
PERSONAL_AUDIT_KEYS: dict[str, frozenset[str]] = {
    "Customer": frozenset(
        {
            "name",
            "email",
            "phone",
            "address",
            "tags",
            "needs",
            "preferences",
            "custom_fields",
            "custom_fields_encrypted",
        }
    ),
    "Activity": frozenset({"subject", "body", "details"}),
    "Conversation": frozenset({"subject"}),
    "Message": frozenset({"body"}),
}
# Keys of event payloads that may carry a customer's personal values.
PERSONAL_EVENT_KEYS = frozenset({"name", "email", "phone", "subject", "body", "details"})


# ------------------------------------------------------------------ who may do what


def can_read_sensitive(actor: Actor) -> bool:
    """Users who work with customers read sensitive custom fields; viewers and partner
    API keys do not (``policy``: ``customers.read_sensitive``)."""
    return policy.allows(actor, Action.READ_SENSITIVE_FIELDS)


# ------------------------------------------------------------ sensitive custom fields


async def sensitive_custom_fields(actor: Actor, session: AsyncSession) -> list[str]:
    """The customer custom-field keys the workspace keeps encrypted."""
    keys = await session.scalar(
        select(Workspace.sensitive_custom_fields).where(Workspace.id == actor.workspace_id)
    )
    return list(keys or [])


def _clean_keys(keys: Sequence[str]) -> list[str]:
    cleaned: list[str] = []
    for index, key in enumerate(keys):
        value = fields.required_text(key, f"keys.{index}", max_length=100)
        if value not in cleaned:
            cleaned.append(value)
    if len(cleaned) > MAX_SENSITIVE_KEYS:
        raise Invalid(f"At most {MAX_SENSITIVE_KEYS} sensitive custom fields", "keys")
    return sorted(cleaned)


def _open(keyring: Keyring | None, sealed: str | None) -> dict[str, Any]:
    if not sealed:
        return {}
    if keyring is None:
        raise RuntimeError("an encrypted value needs the keyring")
    value = keyring.decrypt_json(sealed)
    return dict(value) if isinstance(value, dict) else {}


def _seal(keyring: Keyring, values: Mapping[str, Any], current: str | None) -> str | None:
    """The encrypted object, keeping the current ciphertext when nothing changed (so an
    update that leaves them alone neither re-encrypts nor shows in the audit)."""
    if not values:
        return None
    if current and _open(keyring, current) == dict(values):
        return current
    return keyring.encrypt_json(dict(values))


async def protect_custom_fields(
    actor: Actor, session: AsyncSession, customer: Customer | None, cleaned: dict[str, Any]
) -> None:
    """Split ``cleaned["custom_fields"]`` (a create's or update's new value) into the plain
    part and the encrypted sensitive part, in place. An actor who cannot read sensitive
    fields cannot set them, and leaves the current ones as they are."""
    if "custom_fields" not in cleaned:
        return
    keys = await sensitive_custom_fields(actor, session)
    current = customer.custom_fields_encrypted if customer is not None else None
    if keys or current:
        protect_with(actor, keyring_of(session), keys, current, cleaned)


def protect_with(
    actor: Actor,
    keyring: Keyring,
    keys: Sequence[str],
    current: str | None,
    cleaned: dict[str, Any],
) -> None:
    """``protect_custom_fields`` with the workspace's sensitive keys already read and the
    customer's current encrypted fields (``current``): writers of many rows read the keys
    once."""
    if "custom_fields" not in cleaned or (not keys and not current):
        return
    given = dict(cleaned["custom_fields"] or {})
    secret = {k: v for k, v in given.items() if k in keys}
    cleaned["custom_fields"] = {k: v for k, v in given.items() if k not in keys}
    if not can_read_sensitive(actor):
        if any(v is not None for v in secret.values()):
            raise Forbidden(
                f"The fields {', '.join(sorted(secret))} are sensitive: this caller cannot set them"
            )
        return
    cleaned["custom_fields_encrypted"] = _seal(
        keyring, {k: v for k, v in secret.items() if v is not None}, current
    )


def custom_fields_view(actor: Actor, keyring: Keyring | None, customer: Customer) -> dict[str, Any]:
    """A customer's custom fields as the actor may read them: sensitive values decrypted,
    or null for actors who may not read them."""
    plain = dict(customer.custom_fields or {})
    secret = _open(keyring, customer.custom_fields_encrypted)
    if not can_read_sensitive(actor):
        secret = dict.fromkeys(secret)
    return {**plain, **secret}


async def merged_sensitive_fields(
    session: AsyncSession, survivor: Customer, merged: Sequence[Customer]
) -> str | None:
    """The survivor's encrypted fields after a merge: its own win, gaps filled from the
    merged customers (like the plain custom fields)."""
    sealed = [c.custom_fields_encrypted for c in [survivor, *merged] if c.custom_fields_encrypted]
    if not sealed or sealed == [survivor.custom_fields_encrypted]:
        return survivor.custom_fields_encrypted
    keyring = keyring_of(session)
    values: dict[str, Any] = {}
    for other in reversed(merged):
        values.update(_open(keyring, other.custom_fields_encrypted))
    values.update(_open(keyring, survivor.custom_fields_encrypted))
    return _seal(keyring, values, survivor.custom_fields_encrypted)


@dataclass(frozen=True)
class SensitiveFieldsChange:
    keys: list[str]
    customers_changed: int


async def set_sensitive_custom_fields(
    actor: Actor, session: AsyncSession, keys: Sequence[str]
) -> SensitiveFieldsChange:
    """Choose which customer custom-field keys are sensitive (admins only). Existing
    values move into, or out of, the encrypted part of every customer of the workspace
    in the same transaction."""
    policy.authorize(actor, Action.MANAGE_SENSITIVE_FIELDS)
    wanted = _clean_keys(keys)
    workspace = await session.scalar(
        select(Workspace).where(Workspace.id == actor.workspace_id).with_for_update()
    )
    assert workspace is not None
    before = sorted(workspace.sensitive_custom_fields)
    added, removed = set(wanted) - set(before), set(before) - set(wanted)
    if added:
        # A searchable field's values go into search documents in clear (decision 0012).
        entity = CustomFieldEntity.CUSTOMER
        defined = (await custom_fields.definitions_of(actor, session, entity)).active
        searchable = sorted(k for k in added if k in defined and defined[k].searchable)
        if searchable:
            raise Invalid(
                f"The custom fields {', '.join(searchable)} are searchable: make them "
                "unsearchable (updateCustomFieldDefinition) before marking them sensitive",
                "keys",
            )
    changed = 0
    if added or removed:
        keyring = keyring_of(session)
        conditions = []
        if added:
            conditions.append(Customer.custom_fields.has_any(array(sorted(added))))
        if removed:
            conditions.append(Customer.custom_fields_encrypted.is_not(None))
        rows = await session.scalars(
            select(Customer)
            .where(Customer.workspace_id == actor.workspace_id, or_(*conditions))
            .order_by(Customer.id)
            .with_for_update()
        )
        for customer in rows:
            plain = dict(customer.custom_fields)
            secret = _open(keyring, customer.custom_fields_encrypted)
            for key in removed & set(secret):
                plain[key] = secret.pop(key)
            for key in added & set(plain):
                secret[key] = plain.pop(key)
            # A storage move, not an edit: neither version nor updated_at change.
            await session.execute(
                update(Customer)
                .where(Customer.id == customer.id)
                .values(
                    custom_fields=plain,
                    custom_fields_encrypted=_seal(
                        keyring, secret, customer.custom_fields_encrypted
                    ),
                    updated_at=Customer.updated_at,
                )
                .execution_options(synchronize_session=False)
            )
            changed += 1
        workspace.sensitive_custom_fields = wanted
        await session.flush()
        if added:
            await _redact_audited_custom_fields(actor, session, added)
    audit.record(
        actor,
        session,
        action="setSensitiveCustomFields",
        entity_type="Workspace",
        entity_id=workspace.id,
        changes={
            "sensitive_custom_fields": {"before": before, "after": wanted},
            "customers_changed": {"before": None, "after": changed},
        },
    )
    return SensitiveFieldsChange(wanted, changed)


async def _redact_audited_custom_fields(
    actor: Actor, session: AsyncSession, keys: set[str]
) -> None:
    """Values of newly sensitive keys recorded in clear by earlier audit entries are
    replaced, so the database holds them encrypted only."""
    await session.execute(text("SET LOCAL crm.audit_redaction = 'on'"))
    entries = await session.execute(
        select(AuditLog.id, AuditLog.changes).where(
            AuditLog.workspace_id == actor.workspace_id,
            AuditLog.entity_type == "Customer",
            AuditLog.changes.has_key("custom_fields"),
        )
    )
    for entry_id, changes in entries.all():
        change = changes["custom_fields"]
        redacted = {
            side: (
                {k: (SENSITIVE if k in keys else v) for k, v in value.items()}
                if isinstance(value, dict)
                else value
            )
            for side, value in change.items()
        }
        if redacted != change:
            await session.execute(
                update(AuditLog)
                .where(AuditLog.id == entry_id)
                .values(changes={**changes, "custom_fields": redacted})
            )


# ----------------------------------------------------------------- key rotation


@dataclass(frozen=True)
class RotationReport:
    reencrypted: int
    current: int


async def rotate_encryption_key(
    sessionmaker: async_sessionmaker[AsyncSession], *, batch_size: int = 500
) -> RotationReport:
    """Re-encrypt every encrypted value under the keyring's current key, ``batch_size``
    rows per transaction. Idempotent: values already under the current key are skipped,
    so an interrupted run simply runs again."""
    reencrypted = 0
    async with sessionmaker() as session:
        keyring = keyring_of(session)
    prefix = f"v1:{keyring.current_kid}:"
    for model, name in ENCRYPTED_COLUMNS:
        column = getattr(model, name)
        while True:
            async with sessionmaker() as session, session.begin():
                rows = (
                    await session.execute(
                        select(model.id, column)
                        .where(column.is_not(None), ~column.startswith(prefix, autoescape=True))
                        .order_by(model.id)
                        .limit(batch_size)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for id, token in rows:
                    await session.execute(
                        update(model)
                        .where(model.id == id)
                        .values({name: keyring.reencrypt(token), "updated_at": model.updated_at})
                        .execution_options(synchronize_session=False)
                    )
                reencrypted += len(rows)
            if len(rows) < batch_size:
                break
    current = 0
    async with sessionmaker() as session:
        for model, name in ENCRYPTED_COLUMNS:
            current += (
                await session.scalar(
                    select(func.count()).select_from(model).where(getattr(model, name).is_not(None))
                )
                or 0
            )
    return RotationReport(reencrypted, current - reencrypted)


# ------------------------------------------------------------------ export


def _rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [audit.snapshot(row) for row in rows]


async def export_customer_data(
    actor: Actor, session: AsyncSession, customer_id: uuid.UUID | None
) -> tuple[Customer, dict[str, Any]]:
    """Everything held about a customer, as one JSON document (admins and managers; the
    export is audited): profile with decrypted custom fields, company, orders, deals,
    activities, conversations with their messages, and the audit entries about them."""
    policy.authorize(actor, Action.EXPORT_CUSTOMER_DATA)
    customer = await records.get(actor, session, Customer, customer_id, field="customerId")
    keyring = session.info.get("crm_keyring")
    profile = audit.snapshot(customer)
    profile.pop("custom_fields_encrypted", None)
    profile["custom_fields"] = custom_fields_view(actor, keyring, customer)
    profile["version"] = customer.version
    company = (
        await records.get(actor, session, Company, customer.company_id)
        if customer.company_id
        else None
    )

    async def children(model: Any, order: Any) -> list[Any]:
        return list(
            await session.scalars(
                select(model)
                .where(model.workspace_id == actor.workspace_id, model.customer_id == customer.id)
                .order_by(order, model.id)
            )
        )

    conversations = await children(Conversation, Conversation.created_at)
    messages = list(
        await session.scalars(
            select(Message)
            .where(
                Message.workspace_id == actor.workspace_id,
                Message.conversation_id.in_([c.id for c in conversations]),
            )
            .order_by(Message.conversation_id, Message.seq)
        )
    )
    orders = await children(Order, Order.placed_at)
    deals = await children(Deal, Deal.created_at)
    activities = await children(Activity, Activity.occurred_at)
    ids = [customer.id, *(r.id for r in [*conversations, *messages, *orders, *deals, *activities])]
    entries = await session.scalars(
        select(AuditLog)
        .where(AuditLog.workspace_id == actor.workspace_id, AuditLog.entity_id.in_(ids))
        .order_by(AuditLog.created_at, AuditLog.id)
    )
    definitions = await custom_fields.workspace_definitions(actor, session)
    by_conversation: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for message in messages:
        by_conversation.setdefault(message.conversation_id, []).append(audit.snapshot(message))
    document: dict[str, Any] = {
        "format": "crm-graphql-customer-export",
        "format_version": 1,
        "exported_at": datetime.now(UTC).isoformat(),
        "customer": profile,
        # What each custom field is (label, type, exportable or not): the export of a
        # person's data keeps every value; `exportable` governs list exports.
        "custom_field_definitions": {
            entity.value: custom_fields.export_description(
                d for d in definitions if d.entity is entity
            )
            for entity in CustomFieldEntity
        },
        "company": audit.snapshot(company) if company else None,
        "orders": _rows(orders),
        "deals": _rows(deals),
        "activities": _rows(activities),
        "conversations": [
            {**audit.snapshot(c), "messages": by_conversation.get(c.id, [])} for c in conversations
        ],
        "audit_log": [
            {
                "id": str(e.id),
                "action": e.action,
                "entity_type": e.entity_type,
                "entity_id": str(e.entity_id) if e.entity_id else None,
                "actor_user_id": str(e.actor_user_id) if e.actor_user_id else None,
                "actor_api_key_id": str(e.actor_api_key_id) if e.actor_api_key_id else None,
                "changes": e.changes,
                "created_at": e.created_at.isoformat(),
            }
            for e in entries
        ],
    }
    counts = {k: len(document[k]) for k in ("orders", "deals", "activities", "conversations")}
    audit.record(
        actor,
        session,
        action="exportCustomerData",
        entity_type="Customer",
        entity_id=customer.id,
        changes={"exported": {"before": None, "after": {**counts, "messages": len(messages)}}},
    )
    return customer, document


# ------------------------------------------------------------------ erasure


def _redact(value: Any, keys: frozenset[str]) -> Any:
    """A copy of a JSON value with the values under ``keys`` replaced, at any depth."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if k in keys and v is not None else _redact(v, keys))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v, keys) for v in value]
    return value


def _redact_changes(changes: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    redacted: dict[str, Any] = {}
    for key, change in changes.items():
        if key in keys and isinstance(change, dict):
            redacted[key] = {
                side: (REDACTED if value is not None else None) for side, value in change.items()
            }
        else:
            redacted[key] = change
    return redacted


async def erase_customer(
    actor: Actor, session: AsyncSession, customer_id: uuid.UUID | None
) -> Customer:
    """Remove a customer's personal data for good (admins only); idempotent.

    The profile becomes "Erased customer" without contact details, tags, preferences or
    custom fields; the bodies and subjects of their activities, conversations and messages
    are replaced; customers merged into this one are erased too. Orders, deals, counts and
    the audit trail stay (aggregates remain right), but personal values inside audit
    entries and event payloads about them are redacted."""
    policy.authorize(actor, Action.ERASE_CUSTOMER)
    customer = await records.get(
        actor, session, Customer, customer_id, field="customerId", for_update=True
    )
    now = datetime.now(UTC)
    people = [customer]
    frontier = [customer.id]
    while frontier:  # duplicates merged into this customer are the same person
        merged = list(
            await session.scalars(
                select(Customer)
                .where(
                    Customer.workspace_id == actor.workspace_id,
                    Customer.merged_into_id.in_(frontier),
                )
                .with_for_update()
            )
        )
        people.extend(merged)
        frontier = [m.id for m in merged]
    ids = [p.id for p in people]
    counts: dict[str, int] = {}
    for person in people:
        person.name = ERASED_NAME
        person.email = None
        person.phone = None
        person.address = None
        person.tags = []
        person.needs = []
        person.preferences = {}
        person.custom_fields = {}
        person.custom_fields_encrypted = None
        person.erased_at = person.erased_at or now
        person.archived_at = person.archived_at or now
    await session.flush()

    async def scrub(model: Any, values: dict[str, Any], *where: Any) -> list[uuid.UUID]:
        changed = await session.execute(
            update(model)
            .where(model.workspace_id == actor.workspace_id, *where)
            .values(values)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
        return list(changed.scalars())

    activity_ids = await scrub(
        Activity,
        {"subject": REDACTED, "body": None, "details": {}, "version": Activity.version + 1},
        Activity.customer_id.in_(ids),
        Activity.subject != REDACTED,  # erasing again changes nothing
    )
    conversation_ids = await scrub(
        Conversation, {"subject": None}, Conversation.customer_id.in_(ids)
    )
    message_ids = await scrub(
        Message, {"body": REDACTED}, Message.conversation_id.in_(conversation_ids)
    )
    # Their mails: addresses and subjects go, attachments go, and what was not sent yet
    # is not sent (to an address erased).
    in_conversations = EmailMessage.conversation_id.in_(conversation_ids)
    await scrub(
        EmailMessage,
        {
            "status": EmailDeliveryStatus.FAILED,
            "next_attempt_at": None,
            "last_error": "Not sent: the customer's data was erased",
        },
        in_conversations,
        EmailMessage.status.in_(email.OPEN_STATUSES),
    )
    await scrub(
        EmailMessage, {"sender": REDACTED, "recipients": [], "subject": None}, in_conversations
    )
    await session.execute(
        delete(MessageAttachment).where(
            MessageAttachment.workspace_id == actor.workspace_id,
            MessageAttachment.message_id.in_(message_ids),
        )
    )
    # Live activity feeds replace what they show (erasure changed these activities).
    changed = select(Activity).where(Activity.id.in_(activity_ids))
    for activity in await session.scalars(changed.execution_options(populate_existing=True)):
        events.record_event(
            actor,
            session,
            topic=activities.TOPIC,
            type="activity.updated",
            entity_type="Activity",
            entity_id=activity.id,
            payload={**activities.event_payload(activity), "changed": ["body", "subject"]},
        )
    counts = {
        "customers": len(ids),
        "activities": len(activity_ids),
        "conversations": len(conversation_ids),
        "messages": len(message_ids),
    }
    related = [*ids, *activity_ids, *conversation_ids, *message_ids]
    # Event payloads (message bodies, activity subjects) about them.
    rows = await session.execute(
        select(Event.id, Event.payload).where(
            Event.workspace_id == actor.workspace_id,
            or_(
                Event.entity_id.in_(related),
                Event.payload["customer_id"].astext.in_([str(i) for i in ids]),
            ),
        )
    )
    for event_id, payload in rows.all():
        redacted = _redact(payload, PERSONAL_EVENT_KEYS)
        if redacted != payload:
            await session.execute(
                update(Event).where(Event.id == event_id).values(payload=redacted)
            )
    # The audit trail stays, without the personal values it recorded. The audit log is
    # immutable except for this redaction, which the transaction announces.
    await session.execute(text("SET LOCAL crm.audit_redaction = 'on'"))
    entries = await session.execute(
        select(AuditLog.id, AuditLog.entity_type, AuditLog.changes).where(
            AuditLog.workspace_id == actor.workspace_id, AuditLog.entity_id.in_(related)
        )
    )
    for entry_id, entity_type, changes in entries.all():
        keys = PERSONAL_AUDIT_KEYS.get(entity_type, frozenset())
        redacted_changes = _redact_changes(changes, keys)
        if redacted_changes != changes:
            await session.execute(
                update(AuditLog).where(AuditLog.id == entry_id).values(changes=redacted_changes)
            )
    audit.record(
        actor,
        session,
        action="eraseCustomer",
        entity_type="Customer",
        entity_id=customer.id,
        changes={"erased": {"before": None, "after": counts}},
    )
    events.record_event(
        actor,
        session,
        topic=TOPIC,
        type="customer.erased",
        entity_type="Customer",
        entity_id=customer.id,
        payload={"customer_id": customer.id, "erased_ids": ids, "counts": counts},
    )
    return customer
