"""Activities: the timeline of notes, calls, emails, meetings, tasks and stage changes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from crm_graphql.models import Activity, ActivityType, Customer, Deal
from crm_graphql.models.base import uuid7
from crm_graphql.services import audit, changes, events, fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid, NotFound
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import bound, querying, records

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


# The columns an activity is inserted with: all but the timestamps PostgreSQL sets.
_INSERTED = tuple(c.key for c in Activity.__table__.c if c.key not in ("created_at", "updated_at"))
_record_statements: dict[bool, Any] = {}


def record_ctes(touches_customer: bool) -> tuple[Any, list[Any]]:
    """What ``record_activity`` writes, as parts of one statement: the CTE inserting the
    activity (returning its timestamps; no row when the customer is not of the
    workspace), and the data-modifying CTEs to add to the statement (moving the
    customer's ``last_activity_at`` forward by ``_touch_customer``'s rule, the
    ``activity.created`` event, the audit row). Parameters: the activity's columns
    (``a_``), the event's (``e_``) and the audit row's (``au_``), as ``bound`` names
    them (``record_params``)."""
    table = cast(Table, Activity.__table__)
    values = [bound.selected("a", table.c[name]) for name in _INSERTED]
    source = None
    if touches_customer:
        customers = cast(Table, Customer.__table__)
        source = (
            update(customers)
            .where(
                customers.c.workspace_id == bound.param("a", table.c.workspace_id),
                customers.c.id == bound.param("a", table.c.customer_id),
            )
            .values(
                last_activity_at=func.greatest(
                    customers.c.last_activity_at, bound.param("a", table.c.occurred_at)
                ),
                updated_at=customers.c.updated_at,
            )
            .returning(customers.c.id)
            .cte("customer")
        )
    rows = select(*values)
    if source is not None:
        rows = rows.select_from(source)
    inserted = (
        insert(table)
        .from_select(list(_INSERTED), rows)
        .returning(table.c.created_at, table.c.updated_at)
        .cte("activity")
    )
    event = events.insert_statement("e", source=inserted).cte("activity_event")
    audit_row = audit.insert_statement("au", source=inserted).cte("activity_audit")
    return inserted, [event, audit_row]


def record_statement(touches_customer: bool) -> Any:
    """The statement of ``record_activity`` (built once per shape): ``record_ctes``,
    returning the activity's timestamps."""
    found = _record_statements.get(touches_customer)
    if found is not None:
        return found
    inserted, ctes = record_ctes(touches_customer)
    statement = _record_statements[touches_customer] = changes.writing(
        select(inserted.c.created_at, inserted.c.updated_at).add_cte(*ctes)
    )
    return statement


def record_params(actor: Actor, activity: Activity, *, action: str) -> dict[str, Any]:
    """The parameters of ``record_statement`` for ``activity`` (every column of
    ``_INSERTED`` set on it): its values, its event's (``events.event_values``) and its
    audit row's (``audit.values``, the same ``after`` snapshot ``records.create`` takes)."""
    activity.workspace_id = actor.workspace_id
    values = {name: getattr(activity, name) for name in _INSERTED}
    event = events.event_values(actor, **_created_event(activity))
    audit_row = audit.values(
        actor,
        action=action,
        entity_type="Activity",
        entity_id=activity.id,
        after=audit.snapshot(activity),
    )
    return {
        **bound.params("a", values),
        **bound.params("e", event),
        **bound.params("au", audit_row),
    }


def prepare(activity: Activity) -> Activity:
    """Give a new activity the values PostgreSQL or the ORM would otherwise default, so
    that it can be written by ``record_statement`` (and audited as ``records.create``
    does: every column it is inserted with)."""
    if activity.id is None:
        activity.id = uuid7()
    if activity.version is None:
        activity.version = 1
    if activity.details is None:
        activity.details = {}
    return activity


async def record_activity(
    actor: Actor, session: AsyncSession, activity: Activity, *, action: str
) -> Activity:
    """Insert a validated activity of any type with its audit row, move its customer's
    ``last_activity_at`` and add the ``activity.created`` event. Other services (a deal's
    stage change) write their timeline entries through here.

    One statement (``record_statement``), unless a bulk writer collects the events
    (``events.coalescing``): then the rows go through the session as before. A customer
    not of the workspace is ``NotFound`` (``customerId``), as ``records.ensure_in_workspace``
    says it; nothing is written then."""
    if not events.coalescing_in(session):
        prepare(activity)
        touches = activity.customer_id is not None
        written = await bound.first(
            session, record_statement(touches), record_params(actor, activity, action=action)
        )
        if written is None:
            raise NotFound("Customer not found", "customerId")
        set_committed_value(activity, "created_at", written.created_at)
        set_committed_value(activity, "updated_at", written.updated_at)
        events.announce(actor, session, TOPIC)
        return activity
    await records.create(actor, session, activity, action=action)
    if activity.customer_id is not None:
        await _touch_customer(actor, session, activity.customer_id, activity.occurred_at)
    events.record_event(actor, session, **_created_event(activity))
    return activity


def _created_event(activity: Activity) -> dict[str, Any]:
    """The ``activity.created`` event of ``activity``, however it is written."""
    return {
        "topic": TOPIC,
        "type": "activity.created",
        "entity_type": "Activity",
        "entity_id": activity.id,
        "payload": _payload(activity),
    }


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


async def create_activity(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], *, alone: bool = False
) -> Activity:
    """Log a note, call, email, meeting or task on a customer and/or a deal. A deal's
    activity is also on the deal's customer's timeline. ``alone``: the caller's
    transaction holds nothing else (the ``createActivity`` mutation), so a customer's
    activity, one statement, commits by itself (``bound.alone``)."""
    authorize(actor, Action.WRITE_ACTIVITIES)
    unknown = set(data) - set(CREATABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    cleaned = _clean_common(data, current=None, now=datetime.now(UTC))
    customer_id = data.get("customer_id")
    deal_id = data.get("deal_id")
    if customer_id is None and deal_id is None:
        raise Invalid("Link the activity to a customer or a deal", "customerId")
    if events.coalescing_in(session):  # else ``record_activity`` checks it as it writes
        await records.ensure_in_workspace(actor, session, [(Customer, customer_id, "customerId")])
    elif deal_id is None and alone:
        await bound.alone(session)  # ``record_activity``'s one statement is the transaction
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
