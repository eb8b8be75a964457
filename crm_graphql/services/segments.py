"""Segments: saved customer filters (shared with the workspace or private to their owner)
and the built-in RFM segments, listed together; membership is evaluated at read time.

A saved segment stores its filter as the client wrote it (a ``CustomerFilter`` in JSON);
turning that JSON into a filter mapping is the API's job (it is the same coercion the
``customers(filter:)`` argument goes through), so functions here take the parsed mapping
(``membership``) beside the JSON and check it against the customers list before storing.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Customer, Segment
from crm_graphql.services import fields
from crm_graphql.services.actor import Actor
from crm_graphql.services.drilldown import DrillDown
from crm_graphql.services.errors import Forbidden, Invalid, NotFound
from crm_graphql.services.policy import Action, authorize, authorize_read
from crm_graphql.services.rfm import RfmSegment
from crm_graphql.storage import querying, records

FilterSpec = querying.FilterSpec


def visible_condition(actor: Actor) -> ColumnElement[bool]:
    """Shared segments, and the caller's own private ones (API keys: shared only)."""
    if actor.user_id is None:
        return Segment.shared.is_(True)
    return or_(Segment.shared.is_(True), Segment.owner_id == actor.user_id)


SEGMENTS = querying.ListSpec(
    model=Segment,
    filter_fields={
        "id": Segment.id,
        "name": Segment.name,
        "shared": Segment.shared,
        "owner_id": Segment.owner_id,
        "created_at": Segment.created_at,
        "updated_at": Segment.updated_at,
    },
    order_fields={
        "name": Segment.name,
        "created_at": Segment.created_at,
        "updated_at": Segment.updated_at,
    },
    default_order=[("name", False)],
    extra_condition=visible_condition,
)


# ---------------------------------------------------------------------- built-ins

# Built-in segments' ids: uuid5 of their key in this namespace, the same in every workspace.
BUILT_IN_NAMESPACE = uuid.UUID("0b7f1c52-6a43-5c0e-9d1e-5e6d2b0a13f0")


@dataclass(frozen=True)
class BuiltInSegment:
    """An RFM segment, listed and used like a saved one; not a row, never changed."""

    rfm_segment: RfmSegment
    name: str
    description: str
    id: uuid.UUID = field(init=False)
    built_in: bool = True
    shared: bool = True
    owner_id: None = None
    filter: None = None
    archived_at: None = None
    created_at: None = None
    updated_at: None = None
    version: None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "id", uuid.uuid5(BUILT_IN_NAMESPACE, f"rfm:{self.rfm_segment.value}")
        )

    def membership(self) -> dict[str, Any]:
        return {"rfm_segment": {"eq": self.rfm_segment}}


BUILT_INS: tuple[BuiltInSegment, ...] = tuple(
    BuiltInSegment(segment, name, description)
    for segment, name, description in (
        (RfmSegment.CHAMPIONS, "Champions", "Bought recently, buy often and spend the most."),
        (RfmSegment.LOYAL, "Loyal", "Buy regularly and spend well; bought not long ago."),
        (
            RfmSegment.POTENTIAL_LOYALISTS,
            "Potential loyalists",
            "Recent customers with average frequency and spend.",
        ),
        (RfmSegment.NEW_CUSTOMERS, "New customers", "Bought very recently, but not often."),
        (RfmSegment.PROMISING, "Promising", "Recent shoppers who have not spent much yet."),
        (
            RfmSegment.NEED_ATTENTION,
            "Need attention",
            "Average recency, frequency and spend: slipping without a nudge.",
        ),
        (
            RfmSegment.ABOUT_TO_SLEEP,
            "About to sleep",
            "Below average recency, frequency and spend.",
        ),
        (RfmSegment.AT_RISK, "At risk", "Bought often and spent well, but long ago."),
        (
            RfmSegment.CANNOT_LOSE,
            "Can't lose them",
            "Among the biggest and most frequent buyers, who have not come back for long.",
        ),
        (
            RfmSegment.HIBERNATING,
            "Hibernating",
            "Last bought long ago, rarely and little.",
        ),
        (RfmSegment.LOST, "Lost", "Lowest recency, frequency and spend."),
    )
)
BUILT_IN_BY_ID: dict[uuid.UUID, BuiltInSegment] = {b.id: b for b in BUILT_INS}

AnySegment = Segment | BuiltInSegment


def drill_down(segment: AnySegment) -> DrillDown | None:
    """The customers list filter of a built-in segment (a saved one's is its own filter,
    already in the client's form)."""
    if isinstance(segment, BuiltInSegment):
        return DrillDown("customers", segment.membership())
    return None


# ---------------------------------------------------------------------- reading


async def get_many_visible(
    actor: Actor, session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, AnySegment]:
    """Segments by id that the caller may see (archived ones included, as by ID)."""
    authorize_read(actor, Segment)
    found: dict[uuid.UUID, AnySegment] = {i: BUILT_IN_BY_ID[i] for i in ids if i in BUILT_IN_BY_ID}
    rest = [i for i in ids if i not in found]
    if rest:
        stmt = SEGMENTS.statement(actor, None, include_archived=True).where(Segment.id.in_(rest))
        found.update({row.id: row for row in await session.scalars(stmt)})
    return found


async def get_visible(
    actor: Actor, session: AsyncSession, id: uuid.UUID | None, *, field: str = "id"
) -> AnySegment:
    """One segment the caller may see, else ``NotFound`` (another user's private segment
    looks exactly like an unknown one)."""
    found = await get_many_visible(actor, session, [id]) if id is not None else {}
    if id is None or id not in found:
        raise NotFound("Segment not found", field)
    return found[id]


_BUILT_IN_CURSOR = "builtIn"


def built_in_cursor(index: int) -> str:
    """The cursor of the built-in segment at ``index`` of ``BUILT_INS``."""
    raw = orjson.dumps({"s": _BUILT_IN_CURSOR, "v": [index]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _built_in_position(cursor: str) -> int | None:
    """The index of the built-in segment a cursor points at; None for any other cursor."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("s") != _BUILT_IN_CURSOR:
        return None
    value = data.get("v")
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and 0 <= value[0] < len(BUILT_INS)
    ):
        return value[0]
    raise Invalid("Invalid cursor: pass a cursor returned by this list", "after")


@dataclass
class SegmentPage:
    """A page of ``segments``: built-ins first, then saved segments in the asked order;
    ``total`` counts both (built-ins in Python, saved ones with ``count_statement``)."""

    page: querying.Page[Any]
    built_ins: int
    count_statement: Select[Any] | None


@dataclass
class SegmentPagePlan:
    """What a page of ``segments`` is made of, decided before anything is read (by
    ``segment_page`` and by the compiled read path): the page's built-in segments and
    their cursors, and the saved segments to read after them."""

    size: int
    cursor: str | None
    built_ins: list[BuiltInSegment]
    built_in_cursors: list[str]
    # The built-ins alone overflow the page: there is a next page, no saved one is read.
    more: bool
    # How many built-in segments the list counts (``totalCount``).
    listed_built_ins: int
    # The saved segments the caller may see that the filter keeps, and whether the list
    # shows them at all.
    statement: Select[Any]
    show_saved: bool
    keys: list[querying.SortKey]
    # The saved page to read after the built-ins (None: none): up to ``remaining`` of
    # them are shown, one more says there are more.
    saved: querying.PageRequest | None
    remaining: int


def plan_segment_page(
    actor: Actor,
    *,
    filter: FilterSpec | None,
    order: Sequence[tuple[str, bool]] | None,
    page: querying.PageRequest,
    include_archived: bool = False,
) -> SegmentPagePlan:
    """The plan of a page of ``segment_page``, or ``Invalid`` for its arguments."""
    authorize_read(actor, Segment)
    size, forward, cursor = page.validated()
    if not forward:
        raise Invalid("Segments page forward only: use `first` and `after`", "last")
    spec = dict(filter or {})
    built_in = spec.pop("built_in", None)
    show_built_ins = built_in is not False and not spec
    show_saved = built_in is not True
    keys = SEGMENTS.keys(order)  # checks orderBy even when only built-ins are listed
    start, saved_cursor = 0, None
    if cursor is not None:
        position = _built_in_position(cursor)
        if position is None:
            start, saved_cursor = len(BUILT_INS), cursor
        else:
            start = position + 1
    heads = list(BUILT_INS[start:]) if show_built_ins else []
    items = heads[:size]
    more = len(heads) > size
    saved = None
    if show_saved and not more:
        saved = querying.PageRequest(
            first=size - len(items) + 1, after=saved_cursor, max_size=size + 1
        )
    elif saved_cursor is not None:
        querying.decode_cursor(keys, saved_cursor, "after")
    return SegmentPagePlan(
        size=size,
        cursor=cursor,
        built_ins=items,
        built_in_cursors=[built_in_cursor(BUILT_INS.index(b)) for b in items],
        more=more,
        listed_built_ins=len(BUILT_INS) if show_built_ins else 0,
        statement=SEGMENTS.statement(actor, spec, include_archived=include_archived),
        show_saved=show_saved,
        keys=keys,
        saved=saved,
        remaining=size - len(items),
    )


async def segment_page(
    actor: Actor,
    session: AsyncSession,
    *,
    filter: FilterSpec | None,
    order: Sequence[tuple[str, bool]] | None,
    page: querying.PageRequest,
    include_archived: bool = False,
) -> SegmentPage:
    """The segments the caller may see. Built-in segments come first (in their fixed
    order) unless ``built_in`` is false or the filter names any other field; saved ones
    follow, filtered and ordered as asked. Pages forward only."""
    plan = plan_segment_page(
        actor, filter=filter, order=order, page=page, include_archived=include_archived
    )
    items: list[Any] = list(plan.built_ins)
    cursors = list(plan.built_in_cursors)
    more = plan.more
    if plan.saved is not None:
        saved = await querying.paginate(session, plan.statement, plan.keys, plan.saved)
        items.extend(saved.items[: plan.remaining])
        cursors.extend(saved.cursors[: plan.remaining])
        more = len(saved.items) > plan.remaining or saved.has_next_page
    count = (
        select(func.count()).select_from(plan.statement.order_by(None).subquery())
        if plan.show_saved
        else None
    )
    return SegmentPage(
        querying.Page(items, cursors, more, plan.cursor is not None),
        plan.listed_built_ins,
        count,
    )


async def count_segments(session: AsyncSession, found: SegmentPage) -> int:
    """``totalCount`` of a segments page's list."""
    saved = 0
    if found.count_statement is not None:
        saved = await querying.count(session, found.count_statement)
    return found.built_ins + saved


# ---------------------------------------------------------------------- writing

EDITABLE = ("name", "description", "filter", "shared")


async def _check_membership(
    actor: Actor, session: AsyncSession, membership: FilterSpec | None
) -> None:
    """The filter must make a customers list (operands in range, known fields, custom
    fields defined, of the right type): the same statement the list builds, so a saved
    segment never fails where the list would."""
    from crm_graphql.services.customers import CUSTOMERS

    try:
        await CUSTOMERS.filtered(actor, session, membership)
    except Invalid as error:
        raise Invalid(
            error.message, f"filter.{error.field}" if error.field else "filter"
        ) from error


ParseFilter = Callable[[Any], FilterSpec | None]


async def _clean(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], parse_filter: ParseFilter
) -> dict[str, Any]:
    unknown = set(data) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")
    cleaned = dict(data)
    if "name" in data:
        cleaned["name"] = fields.required_text(data["name"], "name", max_length=200)
    if "description" in data:
        cleaned["description"] = fields.optional_text(
            data["description"], "description", max_length=2000
        )
    if "shared" in data:
        if not isinstance(data["shared"], bool):
            raise Invalid("`shared` must be true or false", "shared")
    if "filter" in data:
        if not isinstance(data["filter"], dict):
            raise Invalid("`filter` must be a CustomerFilter object", "filter")
        fields.json_value(data["filter"], "filter")
        await _check_membership(actor, session, parse_filter(data["filter"]))
    return cleaned


def _require_user(actor: Actor) -> uuid.UUID:
    if actor.user_id is None:  # the policy keeps keys out; a segment needs an owner
        raise Forbidden("API keys cannot save segments; sign in as a user")
    return actor.user_id


async def create_segment(
    actor: Actor,
    session: AsyncSession,
    data: Mapping[str, Any],
    *,
    parse_filter: ParseFilter,
) -> Segment:
    """Save a customer filter as a segment owned by the caller (private unless shared).
    ``parse_filter`` turns the filter's JSON into a filter mapping (``Invalid`` naming the
    part of ``filter`` at fault)."""
    authorize(actor, Action.WRITE_SEGMENTS)
    owner = _require_user(actor)
    cleaned = await _clean(actor, session, {"shared": False, **data}, parse_filter)
    if "name" not in cleaned:
        raise Invalid("`name` is required", "name")
    if "filter" not in cleaned:
        raise Invalid("`filter` is required", "filter")
    return await records.create(
        actor, session, Segment(owner_id=owner, **cleaned), action="createSegment"
    )


async def _for_change(
    actor: Actor, session: AsyncSession, id: uuid.UUID | None, expected_version: int | None
) -> Segment:
    """A saved segment the caller may change: their own, or (managers) a shared one.
    Another user's private segment is ``NotFound``; a built-in one cannot change."""
    authorize(actor, Action.WRITE_SEGMENTS)
    owner = _require_user(actor)
    if id in BUILT_IN_BY_ID:
        raise Invalid("Built-in segments cannot be changed", "id")
    row = await records.get_for_change(actor, session, Segment, id, expected_version)
    if row.owner_id != owner:
        if not row.shared:
            raise NotFound("Segment not found", "id")
        authorize(actor, Action.MANAGE_SHARED_SEGMENTS)
    return row


async def update_segment(
    actor: Actor,
    session: AsyncSession,
    segment_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    parse_filter: ParseFilter,
    expected_version: int | None = None,
) -> Segment:
    """Change a segment's name, description, filter or sharing."""
    row = await _for_change(actor, session, segment_id, expected_version)
    cleaned = await _clean(actor, session, data, parse_filter)
    return await records.update(actor, session, row, cleaned, action="updateSegment")


async def archive_segment(
    actor: Actor,
    session: AsyncSession,
    segment_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Segment:
    """Hide a segment from ``segments`` (still readable by ID). Idempotent."""
    row = await _for_change(actor, session, segment_id, expected_version)
    if row.archived_at is None:
        changes = {"archived_at": datetime.now(UTC)}
        await records.update(actor, session, row, changes, action="archiveSegment")
    return row


def membership_of(segment: AnySegment, parse_filter: ParseFilter) -> dict[str, Any]:
    """The customers filter mapping of a segment: a built-in's RFM condition, or a saved
    one's filter through ``parse`` (the API's CustomerFilter parsing)."""
    if isinstance(segment, BuiltInSegment):
        return segment.membership()
    parsed = parse_filter(segment.filter)
    return dict(parsed) if parsed else {}


# ---------------------------------------------------------------------- members


async def _member_statements(
    actor: Actor,
    session: AsyncSession,
    memberships: Sequence[FilterSpec],
    order: Sequence[tuple[str, bool]] | None = None,
) -> tuple[list[Select[Any]], list[querying.SortKey]]:
    """The customers statements of several memberships (and the sort keys of ``order``),
    with the customers' custom-field definitions read once if any filter needs them."""
    from crm_graphql.services.customers import CUSTOMERS

    custom = await CUSTOMERS.custom_terms_many(actor, session, memberships, order)
    statements = [CUSTOMERS.statement(actor, f, custom=custom) for f in memberships]
    return statements, CUSTOMERS.keys(order, custom)


def within(membership: FilterSpec, client: FilterSpec | None) -> FilterSpec:
    """A segment's membership narrowed by the caller's own filter."""
    return {"and": [membership, client]} if client else membership


async def member_pages(
    actor: Actor,
    session: AsyncSession,
    memberships: Sequence[FilterSpec],
    order: Sequence[tuple[str, bool]] | None,
    page: querying.PageRequest,
) -> list[querying.Page[Any]]:
    """One page of customers per membership, ordered and paged alike, in one statement."""
    statements, keys = await _member_statements(actor, session, memberships, order)
    return await querying.paginate_many(session, Customer, statements, keys, page)


async def member_counts(
    actor: Actor, session: AsyncSession, memberships: Sequence[FilterSpec]
) -> list[int]:
    """``totalCount`` of each membership, in one statement."""
    statements, _ = await _member_statements(actor, session, memberships)
    return await querying.count_many(session, statements)
