"""Report arguments to service calls; every cell's drill-down within the caller's filter."""

import dataclasses
import uuid
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import filter_spec, typed_ids
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.insight import drill_down, selected_names
from crm_graphql.resolvers.lists import by_id
from crm_graphql.services import drilldown, reports

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.conversations import ConversationFilter
    from crm_graphql.schema.deals import DealFilter
    from crm_graphql.schema.scalars import Channel

_conversations = "crm_graphql.schema.conversations"
_deals = "crm_graphql.schema.deals"
_scalars = "crm_graphql.schema.scalars"

# The period of a report: whole days in a time zone.
FirstDay = Annotated[
    date, strawberry.argument(name="from", description="The period's first day (included).")
]
LastDay = Annotated[date, strawberry.argument(description="The period's last day (included).")]
DaysTimeZone = Annotated[
    str | None,
    strawberry.argument(
        description="IANA time zone the days begin and end in, such as Europe/Berlin (UTC "
        "when left out)."
    ),
]


class DrillDownValue:
    """What the GraphQL ``DrillDown`` of a report cell reads: the service's drill-down
    within the caller's filter, written out only when a client selects it (a report has
    hundreds of cells, a dashboard selects few drill-downs)."""

    __slots__ = ("_caller", "_value")

    def __init__(self, value: drilldown.DrillDown, caller_filter: Any) -> None:
        self._value = value
        self._caller = caller_filter

    @property
    def list(self) -> str:
        return self._value.list

    @property
    def filter(self) -> Any:
        return drill_down(self._value, self._caller).filter


def with_caller_filter(value: Any, caller_filter: Any) -> Any:
    """A service report with each cell's ``DrillDown`` as the API writes it, ANDed with the
    filter the caller applied to the whole report."""
    if isinstance(value, drilldown.DrillDown):
        return DrillDownValue(value, caller_filter)
    if isinstance(value, list):
        return [with_caller_filter(item, caller_filter) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value,
            **{
                f.name: with_caller_filter(getattr(value, f.name), caller_filter)
                for f in dataclasses.fields(value)
                if f.init
            },
        )
    return value


async def sales_report(
    info: Info,
    pipeline_id: Annotated[
        strawberry.ID, strawberry.argument(description="The pipeline to report on.")
    ],
    from_: FirstDay,
    to: LastDay,
    time_zone: DaysTimeZone = None,
    owner_ids: Annotated[
        list[strawberry.ID] | None,
        strawberry.argument(description="Only deals owned by these users."),
    ] = None,
    filter: Annotated["DealFilter", strawberry.lazy(_deals)] | None = None,
) -> reports.SalesReport:
    context = info.context
    actor = context.require_actor()
    owners = typed_ids(owner_ids, "User", "ownerIds")
    async with context.read() as session:
        report = await reports.sales_report(
            actor,
            session,
            pipeline_id=decode_id(pipeline_id, "Pipeline"),
            start=from_,
            end=to,
            time_zone=time_zone,
            owner_ids=owners,
            filter=filter_spec(filter),
        )
    value: reports.SalesReport = with_caller_filter(report, filter)
    if "owner" in selected_names(info.selected_fields):
        # The forecast's owners in one batch (a report has hundreds of cells): each cell then
        # resolves its owner synchronously, not with an awaitable of its own.
        cells = value.forecast
        ids = [i for i in {c.owner_id for c in cells} if i is not None]
        users = await context.loaders.by_id(models.User).load_many(ids)
        found: dict[uuid.UUID | None, Any] = dict(zip(ids, users, strict=True))
        for cell in cells:
            setattr(cell, _OWNER, found.get(cell.owner_id))
    return value


_OWNER = "owner_user"


def forecast_owner(cell: Any) -> Any:
    """A forecast cell's owner, as ``sales_report`` loaded it (None: no owner)."""
    return getattr(cell, _OWNER, None)


async def service_report(
    info: Info,
    from_: FirstDay,
    to: LastDay,
    time_zone: DaysTimeZone = None,
    channels: Annotated[
        list[Annotated["Channel", strawberry.lazy(_scalars)]] | None,
        strawberry.argument(description="Only conversations of these channels."),
    ] = None,
    assignee_ids: Annotated[
        list[strawberry.ID] | None,
        strawberry.argument(description="Only conversations assigned to these users."),
    ] = None,
    filter: Annotated["ConversationFilter", strawberry.lazy(_conversations)] | None = None,
) -> reports.ServiceReport:
    context = info.context
    actor = context.require_actor()
    assignees = typed_ids(assignee_ids, "User", "assigneeIds")
    async with context.read() as session:
        report = await reports.service_report(
            actor,
            session,
            start=from_,
            end=to,
            time_zone=time_zone,
            channels=channels,
            assignee_ids=assignees,
            filter=filter_spec(filter),
        )
    answer: reports.ServiceReport = with_caller_filter(report, filter)
    return answer


async def agent(root: reports.TimeStats | reports.CsatStats, info: Info) -> Any:
    """The assignee a service time or CSAT row is about (None: unassigned, or overall)."""
    return await by_id(info, models.User, root.agent_id)


def first_day(root: reports.SalesReport | reports.ServiceReport) -> date:
    return root.period.start_date


def last_day(root: reports.SalesReport | reports.ServiceReport) -> date:
    return root.period.end_date


def time_zone(root: reports.SalesReport | reports.ServiceReport) -> str:
    return root.period.time_zone
