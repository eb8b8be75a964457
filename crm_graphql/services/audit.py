"""The audit trail: one row per mutation, written in the mutation's own transaction.

Append-only: the API has no way to change or delete an entry, and a database trigger
(migration 0003) refuses UPDATE and DELETE of ``audit_log`` rows, except the redaction of
personal values by a transaction that sets ``crm.audit_redaction`` (erasing a customer).
Admins read it through ``AUDIT_LOG``."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, inspect
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import AuditLog
from crm_graphql.models.base import uuid7
from crm_graphql.services.actor import Actor
from crm_graphql.storage import bound, querying

AUDIT_LOG = querying.ListSpec(
    model=AuditLog,
    filter_fields={
        "id": AuditLog.id,
        "action": AuditLog.action,
        "entity_type": AuditLog.entity_type,
        "entity_id": AuditLog.entity_id,
        "actor_id": AuditLog.actor_user_id,
        "api_key_id": AuditLog.actor_api_key_id,
        "request_id": AuditLog.request_id,
        "created_at": AuditLog.created_at,
    },
    order_fields={"created_at": AuditLog.created_at},
    default_order=[("created_at", True)],
    archivable=False,
)

IGNORED_FIELDS = frozenset(
    {"updated_at", "created_at", "version", "password_hash", "secret_hash", "secret_encrypted"}
)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a column value for the audit and event payloads."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def snapshot(obj: Any) -> dict[str, Any]:
    """Column values of an ORM object, to diff before and after a change."""
    mapper = inspect(obj).mapper
    return {
        attr.key: jsonable(getattr(obj, attr.key))
        for attr in mapper.column_attrs
        if attr.key not in IGNORED_FIELDS
    }


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """``{field: {"before": x, "after": y}}`` for every field that changed."""
    if not before:
        # A created record (an import writes many): every field it has is a change.
        return {
            k: {"before": None, "after": v}
            for k, v in sorted((after or {}).items())
            if v is not None
        }
    after = after or {}
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changes[key] = {"before": before.get(key), "after": after.get(key)}
    return changes


def values(
    actor: Actor,
    *,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The values of an audit row: what ``record`` adds, and what a service that writes its
    change and its audit rows in one statement inserts."""
    return {
        "id": uuid7(),
        "workspace_id": actor.workspace_id,
        "actor_user_id": actor.user_id,
        "actor_api_key_id": actor.api_key_id,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "changes": changes if changes is not None else diff(before, after),
        "request_id": actor.request_id,
        "client_ip": actor.client_ip,
    }


# The columns an audit row is written with (``values``; ``created_at`` is PostgreSQL's).
AUDIT_COLUMNS = (
    "id",
    "workspace_id",
    "actor_user_id",
    "actor_api_key_id",
    "action",
    "entity_type",
    "entity_id",
    "changes",
    "request_id",
    "client_ip",
)


def insert_statement(prefix: str, *, source: Any = None) -> Any:
    """``INSERT`` of one audit row whose values are parameters under ``prefix``
    (``bound.params(prefix, values(...))``), written only if ``source`` (a CTE of the same
    statement) has a row: for a statement that writes a change and its audit row together
    (built once)."""
    return bound.insert_row(cast(Table, AuditLog.__table__), prefix, AUDIT_COLUMNS, source=source)


def record(
    actor: Actor,
    session: AsyncSession,
    *,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
) -> AuditLog:
    """Add the audit row of a mutation to the current unit of work."""
    row = AuditLog(
        **values(
            actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before,
            after=after,
            changes=changes,
        )
    )
    session.add(row)
    return row
