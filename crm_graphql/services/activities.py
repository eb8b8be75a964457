"""Activities: the timeline of notes, calls, emails, meetings, tasks and stage changes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Activity, ActivityType, Customer, Deal
from crm_graphql.services import audit, events, fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

ACTIVITIES = querying.ListSpec(
    model=Activity,
    filter_fields={
        "id": Activity.id,
        "type": Activity.type,
        "customer_id": Activity.customer_id,
        "deal_id": Activity.deal_id,
        "author_id": Activity.author_id,
        "occurred_at": Activity.occurred_at,
        "due_at": Activity.due_at,
        "completed_at": Activity.completed_at,
        "created_at": Activity.created_at,
    },
    order_fields={
        "occurred_at": Activity.occurred_at,
        "due_at": Activity.due_at,
        "created_at": Activity.created_at,
    },
    default_order=[("occurred_at", True)],
    parent_fields={
        "customer_id": Activity.customer_id,
        "deal_id": Activity.deal_id,
        "author_id": Activity.author_id,
    },
)

# The stream the activity feed subscription follows.
TOPIC = "activities"

# Stage changes and system entries are written by the server, never by clients.
CLIENT_TYPES = frozenset(
    {
        ActivityType.NOTE,
        ActivityType.CALL,
        ActivityType.EMAIL,
        ActivityType.MEETING,
        ActivityType.TASK,
    }
)

CREATABLE = (
    "type",
    "subject",
    "body",
    "customer_id",
    "deal_id",
    "occurred_at",
    "due_at",
    "completed",
)
EDITABLE = ("type", "subject", "body", "occurred_at", "due_at", "completed")
MAX_BODY = 100_000


def event_payload(activity: Activity) -> dict[str, Any]:
    """The payload of ``activity.*`` events (also written by erasure, services/privacy)."""
    return _payload(activity)


def _payload(activity: Activity) -> dict[str, Any]:
    return {
        "activity_id": activity.id,
        "type": activity.type,
        "customer_id": activity.customer_id,
        "deal_id": activity.deal_id,
        "author_id": activity.author_id,
        "occurred_at": activity.occurred_at,
        "version": activity.version,
    }


async def _touch_customer(
    actor: Actor, session: AsyncSession, customer_id: uuid.UUID, occurred_at: datetime
) -> None:
    """Move the customer's ``last_activity_at`` forward (never back) in one statement.
    A bulk UPDATE leaves ``version`` alone on purpose: a logged call is not an edit of the
    customer and must not make a colleague's open edit form conflict. ``updated_at`` is
    kept for the same reason."""
    await session.execute(
        update(Customer)
        .where(Customer.workspace_id == actor.workspace_id, Customer.id == customer_id)
        .values(
            last_activity_at=func.greatest(Customer.last_activity_at, occurred_at),
            updated_at=Customer.updated_at,
        )
    )


async def record_activity(
    actor: Actor, session: AsyncSession, activity: Activity, *, action: str
) -> Activity:
    """Insert a validated activity of any type with its audit row, move its customer's
    ``last_activity_at`` and add the ``activity.created`` event. Other services (a deal's
    stage change) write their timeline entries through here."""
    await records.create(actor, session, activity, action=action)
    if activity.customer_id is not None:
        await _touch_customer(actor, session, activity.customer_id, activity.occurred_at)
    events.record_event(
        actor,
        session,
        topic=TOPIC,
        type="activity.created",
        entity_type="Activity",
        entity_id=activity.id,
        payload=_payload(activity),
    )
    return activity


def _type(value: Any) -> ActivityType:
    if value is None:
        raise Invalid("`type` is required", "type")
    kind = fields.choice(ActivityType, value, "type")
    if kind not in CLIENT_TYPES:
        raise Invalid(f"Activities of type {kind.value} are written by the server only", "type")
    return kind


def _clean_common(
    data: Mapping[str, Any], *, current: Activity | None, now: datetime
) -> dict[str, Any]:
    """The fields creation and editing share: type, texts, times and task completion."""
    creating = current is None
    cleaned: dict[str, Any] = {}
    kind = current.type if current is not None else None
    if "type" in data or creating:
        kind = cleaned["type"] = _type(data.get("type"))
    if "subject" in data or creating:
        cleaned["subject"] = fields.required_text(data.get("subject"), "subject", max_length=300)
    if "body" in data:
        cleaned["body"] = fields.optional_text(data["body"], "body", max_length=MAX_BODY)
    if "occurred_at" in data or creating:
        occurred_at = data.get("occurred_at")
        if occurred_at is None and not creating:
            raise Invalid("`occurredAt` must not be empty", "occurredAt")
        cleaned["occurred_at"] = (
            now if occurred_at is None else fields.aware_datetime(occurred_at, "occurredAt")
        )
    is_task = kind is ActivityType.TASK
    if data.get("due_at") is not None:
        if not is_task:
            raise Invalid("Only tasks have a due date", "dueAt")
        cleaned["due_at"] = fields.aware_datetime(data["due_at"], "dueAt")
    elif "due_at" in data or not is_task:
        cleaned["due_at"] = None
    if data.get("completed") is not None:
        if not is_task:
            raise Invalid("Only tasks can be completed", "completed")
        if not isinstance(data["completed"], bool):
            raise Invalid("`completed` must be true or false", "completed")
        if not data["completed"]:
            cleaned["completed_at"] = None
        elif current is None or current.completed_at is None:
            cleaned["completed_at"] = now
    elif not is_task:
        cleaned["completed_at"] = None
    if current is not None:
        # Turning a task into a note drops what only tasks have; leave unchanged keys out.
        cleaned = {k: v for k, v in cleaned.items() if k in data or getattr(current, k) != v}
    return cleaned


async def create_activity(actor: Actor, session: AsyncSession, data: Mapping[str, Any]) -> Activity:
    """Log a note, call, email, meeting or task on a customer and/or a deal. A deal's
    activity is also on the deal's customer's timeline."""
    authorize(actor, Action.WRITE_ACTIVITIES)
    unknown = set(data) - set(CREATABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    cleaned = _clean_common(data, current=None, now=datetime.now(UTC))
    customer_id = data.get("customer_id")
    deal_id = data.get("deal_id")
    if customer_id is None and deal_id is None:
        raise Invalid("Link the activity to a customer or a deal", "customerId")
    await records.ensure_in_workspace(actor, session, [(Customer, customer_id, "customerId")])
    if deal_id is not None:
        deal = await records.referenced(actor, session, Deal, deal_id, field="dealId")
        if customer_id is None:
            customer_id = deal.customer_id
        elif deal.customer_id is not None and deal.customer_id != customer_id:
            raise Invalid("The deal belongs to another customer", "dealId")
    activity = Activity(
        **cleaned, customer_id=customer_id, deal_id=deal_id, author_id=actor.user_id, details={}
    )
    return await record_activity(actor, session, activity, action="createActivity")


def _ensure_client_written(activity: Activity) -> None:
    if activity.type not in CLIENT_TYPES:
        raise Invalid(
            f"Activities of type {activity.type.value} are history and cannot be changed", "id"
        )


async def update_activity(
    actor: Actor,
    session: AsyncSession,
    activity_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> Activity:
    """Edit, reschedule or complete an activity (its links to customer and deal stay)."""
    authorize(actor, Action.WRITE_ACTIVITIES)
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    activity = await records.get_for_change(actor, session, Activity, activity_id, expected_version)
    _ensure_client_written(activity)
    cleaned = _clean_common(data, current=activity, now=datetime.now(UTC))
    before = audit.snapshot(activity)
    await records.update(actor, session, activity, cleaned, action="updateActivity")
    changed = sorted(audit.diff(before, audit.snapshot(activity)))
    if "occurred_at" in changed and activity.customer_id is not None:
        await _touch_customer(actor, session, activity.customer_id, activity.occurred_at)
    if changed:
        events.record_event(
            actor,
            session,
            topic=TOPIC,
            type="activity.updated",
            entity_type="Activity",
            entity_id=activity.id,
            payload={**_payload(activity), "changed": changed},
        )
    return activity


async def archive_activity(
    actor: Actor,
    session: AsyncSession,
    activity_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Activity:
    """Remove an activity from the timeline (it stays readable by ID and in the audit)."""
    authorize(actor, Action.ARCHIVE_ACTIVITIES)
    activity = await records.get_for_change(actor, session, Activity, activity_id, expected_version)
    _ensure_client_written(activity)
    if activity.archived_at is None:
        await records.update(
            actor, session, activity, {"archived_at": datetime.now(UTC)}, action="archiveActivity"
        )
        events.record_event(
            actor,
            session,
            topic=TOPIC,
            type="activity.archived",
            entity_type="Activity",
            entity_id=activity.id,
            payload=_payload(activity),
        )
    return activity
