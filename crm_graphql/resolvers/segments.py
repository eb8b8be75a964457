"""Segments and the customer report: arguments to service calls.

A saved segment's filter is JSON in the client's form; ``customer_filter`` turns it into
a filter mapping through exactly what the ``customers(filter:)`` argument goes through:
graphql-core's input coercion against the schema's ``CustomerFilter`` (unknown fields,
wrong operators or scalars are refused with the path at fault), Strawberry's conversion
to the input object, then ``arguments.filter_spec``.
"""

import uuid
from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import filter_spec, input_changes, order_spec, page_request
from crm_graphql.resolvers.filters import list_filter
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.insight import drill_down, input_json
from crm_graphql.resolvers.lists import ConnectionValue, by_id, root_list
from crm_graphql.resolvers.loaders import ListArgs
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.schema.insight import DrillDown
from crm_graphql.services import customers as customer_service
from crm_graphql.services import rfm
from crm_graphql.services import segments as segment_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.customers import ArchiveInput, CustomerFilter, CustomerOrder
    from crm_graphql.schema.segments import (
        CreateSegmentInput,
        SegmentFilter,
        SegmentOrder,
        UpdateSegmentInput,
    )

_customers = "crm_graphql.schema.customers"
_segments = "crm_graphql.schema.segments"


def is_segment(obj: Any) -> bool:
    """A value of the ``Segment`` type: a saved segment's row or a built-in one."""
    return isinstance(obj, models.Segment | segment_service.BuiltInSegment)


_FILTER_TYPE = "CustomerFilter"


def customer_filter(info: Info, value: Any, field: str = "filter") -> dict[str, Any] | None:
    """A ``CustomerFilter`` in JSON as the filter mapping of the customers list, or
    ``Invalid`` naming the part of ``field`` at fault (``filter.name.contans``)."""
    return list_filter(info.schema, _FILTER_TYPE, value, field)


def _parser(info: Info) -> segment_service.ParseFilter:
    return lambda value: customer_filter(info, value)


async def membership(info: Info, segment_id: str, field: str = "segmentId") -> dict[str, Any]:
    """The customers filter of a segment the caller may see (``NotFound`` otherwise)."""
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        segment = await segment_service.get_visible(
            actor, session, decode_id(segment_id, "Segment"), field=field
        )
    return segment_service.membership_of(segment, _parser(info))


async def segments(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    filter: Annotated["SegmentFilter", strawberry.lazy(_segments)] | None = None,
    order_by: list[Annotated["SegmentOrder", strawberry.lazy(_segments)]] | None = None,
    include_archived: bool = False,
) -> ConnectionValue:
    context = info.context
    actor = context.require_actor()
    request = page_request(info, first=first, after=after)
    async with context.read() as session:
        found = await segment_service.segment_page(
            actor,
            session,
            filter=filter_spec(filter),
            order=order_spec(order_by),
            page=request,
            include_archived=include_archived,
        )

    async def counter() -> int:
        async with context.read() as session:
            return await segment_service.count_segments(session, found)

    return ConnectionValue(found.page, counter)


async def owner(root: Any, info: Info) -> Any:
    return await by_id(info, models.User, root.owner_id)


class SegmentMembers:
    """Per request: the customers pages (and counts) of every segment a response lists,
    one ``UNION ALL`` statement per distinct set of list arguments, so a page of segments
    with their customers costs the same statements for 2 segments as for 20."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.within: dict[uuid.UUID, dict[str, Any]] = {}
        self.filters: dict[str, dict[str, Any] | None] = {}
        self.pages: DataLoader[tuple[uuid.UUID, ListArgs], Any] = DataLoader(self._pages)
        self.counts: DataLoader[tuple[uuid.UUID, str], int] = DataLoader(self._counts)

    def _filter(self, segment_id: uuid.UUID, filter_key: str) -> Any:
        return segment_service.within(self.within[segment_id], self.filters[filter_key])

    async def _pages(self, keys: list[tuple[uuid.UUID, ListArgs]]) -> list[Any]:
        actor = self.context.require_actor()
        groups: dict[ListArgs, list[uuid.UUID]] = defaultdict(list)
        for segment_id, args in keys:
            groups[args].append(segment_id)
        found: dict[tuple[uuid.UUID, ListArgs], Any] = {}
        async with self.context.read() as session:
            for args, ids in groups.items():
                pages = await segment_service.member_pages(
                    actor,
                    session,
                    [self._filter(i, args.filter_key) for i in ids],
                    list(args.order) or None,
                    args.page,
                )
                found.update({(i, args): page for i, page in zip(ids, pages, strict=True)})
        return [found[k] for k in keys]

    async def _counts(self, keys: list[tuple[uuid.UUID, str]]) -> list[int]:
        actor = self.context.require_actor()
        async with self.context.read() as session:
            return await segment_service.member_counts(
                actor, session, [self._filter(i, f) for i, f in keys]
            )


async def segment_customers(
    root: Any,
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["CustomerFilter", strawberry.lazy(_customers)] | None = None,
    order_by: list[Annotated["CustomerOrder", strawberry.lazy(_customers)]] | None = None,
) -> ConnectionValue:
    """``segment.customers``: batched over every segment of the response."""
    members = info.context.loaders.shared(SegmentMembers, lambda: SegmentMembers(info.context))
    members.within[root.id] = segment_service.membership_of(root, _parser(info))
    spec_filter = filter_spec(filter)
    request = page_request(info, first=first, after=after, last=last, before=before)
    args = ListArgs.of(spec_filter, order_spec(order_by), request)
    members.filters[args.filter_key] = spec_filter
    page = await members.pages.load((root.id, args))

    async def counter() -> int:
        return int(await members.counts.load((root.id, args.filter_key)))

    return ConnectionValue(page, counter)


async def customers_in_segment(info: Info, segment_id: str | None, *args: Any) -> ConnectionValue:
    """``customers(segmentId:, ...)``: the segment's members, within the client's filter."""
    within = await membership(info, segment_id) if segment_id is not None else None
    return await root_list(info, customer_service.CUSTOMERS, *args, within=within)


def segment_drill_down(root: Any, caller_filter: Any) -> DrillDown:
    """A built-in segment's RFM filter, or a saved segment's own filter (already in the
    client's form), within the caller's filter."""
    value = segment_service.drill_down(root)
    if value is not None:
        return drill_down(value, caller_filter)
    own = root.filter or {}
    caller = input_json(caller_filter) if caller_filter is not None else None
    combined = {"and": [caller, own]} if caller and own else (caller or own)
    return DrillDown(list="customers", filter=JSON(combined))


def drill_down_value(root: Any, caller_filter: Any) -> DrillDown:
    """The drill-down a report value carries (``root.drill_down``) in the client's form."""
    return drill_down(root.drill_down, caller_filter)


async def rfm_of(info: Info, root: models.Customer) -> rfm.CustomerRfm | None:
    loader = info.context.loaders.per_key("customer_rfm", rfm.customer_rfm)
    return await loader.load(root.id)


async def cohorts(
    info: Info,
    from_: Annotated[
        date,
        strawberry.argument(
            name="from", description="A day of the first cohort's month (included)."
        ),
    ],
    to: Annotated[
        date,
        strawberry.argument(
            description="A day of the last month (included), for cohorts and repeat orders."
        ),
    ],
    time_zone: Annotated[
        str, strawberry.argument(description="IANA time zone the months are cut in.")
    ] = "UTC",
) -> list[rfm.Cohort]:
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        return await rfm.cohorts(actor, session, first=from_, last=to, zone_name=time_zone)


def _segment_changes(input: Any) -> dict[str, Any]:
    return input_changes(input)


async def create_segment(
    info: Info,
    input: Annotated["CreateSegmentInput", strawberry.lazy(_segments)],
) -> Payload:
    return await mutate_payload(
        info,
        "segment",
        lambda actor, s: segment_service.create_segment(
            actor, s, _segment_changes(input), parse_filter=_parser(info)
        ),
    )


async def update_segment(
    info: Info,
    input: Annotated["UpdateSegmentInput", strawberry.lazy(_segments)],
) -> Payload:
    id = _segment_id(input.id)
    return await mutate_payload(
        info,
        "segment",
        lambda actor, s: segment_service.update_segment(
            actor,
            s,
            id,
            _segment_changes(input),
            parse_filter=_parser(info),
            expected_version=input.expected_version,
        ),
    )


async def archive_segment(
    info: Info,
    input: Annotated["ArchiveInput", strawberry.lazy(_customers)],
) -> Payload:
    id = _segment_id(input.id)
    return await mutate_payload(
        info,
        "segment",
        lambda actor, s: segment_service.archive_segment(
            actor, s, id, expected_version=input.expected_version
        ),
    )


def _segment_id(value: str) -> uuid.UUID | None:
    return decode_id(value, "Segment")
