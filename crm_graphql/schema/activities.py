"""Activities in GraphQL: the timeline entry type, its filter and order inputs, mutations."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry

from crm_graphql.resolvers import activities as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import DateTimeFilter, EnumFilter, IDFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError, read_model
from crm_graphql.schema.scalars import JSON, ActivityType

if TYPE_CHECKING:
    pass

_customers = "crm_graphql.schema.customers"
_deals = "crm_graphql.schema.deals"
_users = "crm_graphql.schema.users"


@strawberry.type(
    description="A timeline entry: note, call, email, meeting, task, stage change or system entry."
)
@read_model("Activity")
class Activity(Node):
    is_type_of = rows_of("Activity")

    type: ActivityType = strawberry.field(description="Kind of entry.")
    subject: str = strawberry.field(description="One-line summary.")
    body: str | None = strawberry.field(description="Full text.")
    occurred_at: datetime = strawberry.field(description="When it happened (or is planned).")
    due_at: datetime | None = strawberry.field(description="When a task is due.")
    completed_at: datetime | None = strawberry.field(description="When a task was completed.")
    details: JSON = strawberry.field(
        description="Structured extras written by the server (a stage change's from/to stages)."
    )
    created_at: datetime = strawberry.field(description="When the entry was logged.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(
        description="Set when removed from the timeline."
    )
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")


@strawberry.input(description="Conditions on activities; fields combine with AND.")
class ActivityFilter:
    and_: list[ActivityFilter] | None = strawberry.field(default=None, name="and")
    or_: list[ActivityFilter] | None = strawberry.field(default=None, name="or")
    not_: ActivityFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    type: EnumFilter[ActivityType] | None = None
    customer_id: IDFilter | None = None
    deal_id: IDFilter | None = None
    author_id: IDFilter | None = None
    occurred_at: DateTimeFilter | None = None
    due_at: DateTimeFilter | None = None
    completed_at: DateTimeFilter | None = None
    created_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields activities can be ordered by.")
class ActivityOrderField(enum.Enum):
    OCCURRED_AT = "occurred_at"
    DUE_AT = "due_at"
    CREATED_AT = "created_at"


@strawberry.input(description="One sort key for activities.")
class ActivityOrder:
    field: ActivityOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(
    description="A new note, call, email, meeting or task, on a customer and/or a deal."
)
class CreateActivityInput:
    type: ActivityType = strawberry.field(
        description="NOTE, CALL, EMAIL, MEETING or TASK (the others are written by the server)."
    )
    subject: str
    body: str | None = strawberry.UNSET
    customer_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: the deal's customer."
    )
    deal_id: strawberry.ID | None = strawberry.UNSET
    occurred_at: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: now."
    )
    due_at: datetime | None = strawberry.field(default=strawberry.UNSET, description="Tasks only.")
    completed: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Tasks only: true stamps `completedAt`."
    )


@strawberry.input(description="Changes to an activity; fields left out stay as they are.")
class UpdateActivityInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the activity's version differs."
    )
    type: ActivityType | None = strawberry.UNSET
    subject: str | None = strawberry.UNSET
    body: str | None = strawberry.UNSET
    occurred_at: datetime | None = strawberry.UNSET
    due_at: datetime | None = strawberry.field(default=strawberry.UNSET, description="Tasks only.")
    completed: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Tasks only: true stamps `completedAt` (once), false clears it.",
    )


@strawberry.type(description="Result of an activity mutation.")
class ActivityPayload:
    activity: Activity | None = strawberry.field(description="The activity after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type
class ActivityQuery:
    activities = strawberry.field(
        resolver=resolve.activities,
        graphql_type=Connection[Activity],
        description="Activities of the workspace, latest first unless ordered.",
    )


@strawberry.type
class ActivityMutation:
    create_activity = strawberry.mutation(
        resolver=resolve.create_activity,
        graphql_type=ActivityPayload,
        description="Log a note, call, email, meeting or task.",
    )

    update_activity = strawberry.mutation(
        resolver=resolve.update_activity,
        graphql_type=ActivityPayload,
        description="Edit, reschedule or complete an activity.",
    )

    archive_activity = strawberry.mutation(
        resolver=resolve.archive_activity,
        graphql_type=ActivityPayload,
        description="Remove an activity from the timeline (history is kept).",
    )
