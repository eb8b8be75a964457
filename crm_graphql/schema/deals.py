"""Sales in GraphQL: pipelines, their stages and deals, with filters, orders, mutations."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import strawberry

from crm_graphql.resolvers import deals as resolve
from crm_graphql.resolvers.mutations import UpsertPayload, UpsertResultValue
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import (
    CustomFieldFilter,
    DateFilter,
    DateTimeFilter,
    DecimalFilter,
    EnumFilter,
    IDFilter,
    IntFilter,
    StringFilter,
)
from crm_graphql.schema.relay import (
    Connection,
    Node,
    OrderDirection,
    UpsertRecordResult,
    UpsertSummary,
    UserError,
    read_model,
    upserts_of,
)
from crm_graphql.schema.scalars import JSON, DealStatus

if TYPE_CHECKING:
    pass

_activities = "crm_graphql.schema.activities"
_companies = "crm_graphql.schema.companies"
_customers = "crm_graphql.schema.customers"
_users = "crm_graphql.schema.users"


@strawberry.type(description="A sales process: an ordered board of stages deals move through.")
@read_model("Pipeline")
class Pipeline(Node):
    is_type_of = rows_of("Pipeline")

    name: str = strawberry.field(description="Pipeline name.")
    position: int = strawberry.field(description="Place among the workspace's pipelines (0 first).")
    created_at: datetime = strawberry.field(description="When the pipeline was created.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(description="Set when archived.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")


@strawberry.type(description="A column of a pipeline's board.")
@read_model("Stage")
class Stage(Node):
    is_type_of = rows_of("Stage")

    name: str = strawberry.field(description="Stage name.")
    position: int = strawberry.field(description="Place in the pipeline (0 leftmost).")
    probability: int = strawberry.field(description="Chance, in percent, that a deal here is won.")
    created_at: datetime = strawberry.field(description="When the stage was created.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(description="Set when archived.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")


@strawberry.type(description="A potential sale moving through a pipeline.")
@read_model("Deal")
class Deal(Node):
    is_type_of = rows_of("Deal")

    title: str = strawberry.field(description="What is being sold.")
    amount: Decimal = strawberry.field(description="Expected value, as a decimal string.")
    currency: str = strawberry.field(description="ISO 4217 currency code of the amount.")
    status: DealStatus = strawberry.field(description="Open, won or lost.")
    expected_close_date: date | None = strawberry.field(description="When the deal should close.")
    closed_at: datetime | None = strawberry.field(description="When the deal was won or lost.")
    lost_reason: str | None = strawberry.field(description="Why a lost deal was lost.")
    custom_fields: JSON = strawberry.field(
        description="Workspace-defined fields (see `customFieldDefinitions(entity: DEAL)`)."
    )
    created_at: datetime = strawberry.field(description="When the deal was opened.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(description="Set when archived.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")


@strawberry.input(description="Conditions on pipelines; fields combine with AND.")
class PipelineFilter:
    and_: list[PipelineFilter] | None = strawberry.field(default=None, name="and")
    or_: list[PipelineFilter] | None = strawberry.field(default=None, name="or")
    not_: PipelineFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    name: StringFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields pipelines can be ordered by.")
class PipelineOrderField(enum.Enum):
    POSITION = "position"
    NAME = "name"
    CREATED_AT = "created_at"


@strawberry.input(description="One sort key for pipelines.")
class PipelineOrder:
    field: PipelineOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Conditions on deals; fields combine with AND.")
class DealFilter:
    and_: list[DealFilter] | None = strawberry.field(default=None, name="and")
    or_: list[DealFilter] | None = strawberry.field(default=None, name="or")
    not_: DealFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    title: StringFilter | None = None
    pipeline_id: IDFilter | None = None
    stage_id: IDFilter | None = None
    customer_id: IDFilter | None = None
    company_id: IDFilter | None = None
    owner_id: IDFilter | None = None
    status: EnumFilter[DealStatus] | None = None
    amount: DecimalFilter | None = None
    currency: StringFilter | None = None
    expected_close_date: DateFilter | None = None
    closed_at: DateTimeFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None
    custom_fields: list[CustomFieldFilter] | None = strawberry.field(
        default=None,
        description="Conditions on typed custom fields (`customFieldDefinitions`), all "
        "of which hold.",
    )
    furthest_stage_position: IntFilter | None = strawberry.field(
        default=None,
        description="The highest position among the stages the deal has been in (its "
        "current one and every one it was moved out of): `gte: N` are the deals that reached "
        "the stage at position N or a later one.",
    )


@strawberry.enum(description="Fields deals can be ordered by.")
class DealOrderField(enum.Enum):
    TITLE = "title"
    AMOUNT = "amount"
    EXPECTED_CLOSE_DATE = "expected_close_date"
    CLOSED_AT = "closed_at"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


@strawberry.input(description="One sort key for deals.")
class DealOrder:
    field: DealOrderField | None = strawberry.field(
        default=None, description="A built-in field (or give `customField`)."
    )
    custom_field: str | None = strawberry.field(
        default=None,
        description="The key of a custom field of deals (not a multi select), instead of `field`.",
    )
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="A stage created together with its pipeline.")
class PipelineStageInput:
    name: str = strawberry.field(description="The stage's name, such as `Proposal`.")
    probability: int | None = strawberry.field(
        default=None, description="Percent 0..100; left out: 0."
    )
    position: int | None = strawberry.field(
        default=None, description="Left out: the stage's place in the list."
    )


@strawberry.input(description="A new pipeline, optionally with its stages.")
class CreatePipelineInput:
    name: str
    position: int | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: after the last pipeline."
    )
    stages: list[PipelineStageInput] | None = strawberry.field(
        default=strawberry.UNSET, description="Stages, left to right."
    )


@strawberry.input(description="Changes to a pipeline; fields left out stay as they are.")
class UpdatePipelineInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the pipeline's version differs."
    )
    name: str | None = strawberry.UNSET
    position: int | None = strawberry.UNSET


@strawberry.input(description="A new stage of an existing pipeline.")
class CreateStageInput:
    pipeline_id: strawberry.ID
    name: str
    probability: int | None = strawberry.field(
        default=strawberry.UNSET, description="Percent 0..100; left out: 0."
    )
    position: int | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: after the last stage."
    )


@strawberry.input(description="Changes to a stage; fields left out stay as they are.")
class UpdateStageInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the stage's version differs."
    )
    name: str | None = strawberry.UNSET
    probability: int | None = strawberry.UNSET
    position: int | None = strawberry.UNSET


@strawberry.input(description="A new deal.")
class CreateDealInput:
    title: str
    currency: str = strawberry.field(description="ISO 4217 currency code, such as EUR.")
    pipeline_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: the pipeline of `stageId`."
    )
    stage_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: the pipeline's first stage."
    )
    amount: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="Expected value; left out: 0."
    )
    customer_id: strawberry.ID | None = strawberry.UNSET
    company_id: strawberry.ID | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    status: DealStatus | None = strawberry.UNSET
    expected_close_date: date | None = strawberry.UNSET
    lost_reason: str | None = strawberry.UNSET
    custom_fields: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Values of the workspace's deal custom fields."
    )


@strawberry.input(
    description="Changes to a deal; fields left out stay as they are. "
    "Use `moveDeal` to change its stage."
)
class UpdateDealInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the deal's version differs."
    )
    title: str | None = strawberry.UNSET
    amount: Decimal | None = strawberry.UNSET
    currency: str | None = strawberry.UNSET
    customer_id: strawberry.ID | None = strawberry.UNSET
    company_id: strawberry.ID | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    status: DealStatus | None = strawberry.field(
        default=strawberry.UNSET, description="WON or LOST stamps `closedAt`; OPEN clears it."
    )
    expected_close_date: date | None = strawberry.UNSET
    lost_reason: str | None = strawberry.field(
        default=strawberry.UNSET, description="Only for lost deals."
    )
    custom_fields: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="All custom field values (replaces them); null removes every value.",
    )


@strawberry.input(description="Which deal to move, and to which stage of its pipeline.")
class MoveDealInput:
    id: strawberry.ID = strawberry.field(description="The deal to move.")
    stage_id: strawberry.ID = strawberry.field(
        description="The stage to move it to, of the deal's own pipeline."
    )
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the deal's version differs."
    )


@strawberry.type(description="Result of a pipeline mutation.")
class PipelinePayload:
    pipeline: Pipeline | None = strawberry.field(description="The pipeline after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type(description="Result of a stage mutation.")
class StagePayload:
    stage: Stage | None = strawberry.field(description="The stage after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type(description="Result of a deal mutation.")
class DealPayload:
    deal: Deal | None = strawberry.field(description="The deal after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.input(description="Deals to create or update, matched by a deal custom field.")
class UpsertDealsInput:
    records: list[CreateDealInput] = strawberry.field(
        description="1 to 1,000 deals. With `matchOn`, a record whose `customFields` value of "
        "that key a deal already has updates that deal with the fields it gives (`stageId` "
        "moves it within its pipeline, `pipelineId` is then ignored); any other creates one."
    )
    match_on: str | None = strawberry.field(
        default=None,
        description="The key of a deal custom field holding your own identifier of a deal "
        "(e.g. `externalId`); every record must give it. Left out: every record creates a deal.",
    )


@strawberry.type(description="What became of one record of `upsertDeals`.")
class UpsertDealResult(UpsertRecordResult):
    is_type_of = upserts_of(UpsertResultValue)

    deal: Deal | None = strawberry.field(description="Null when the record failed.")


@strawberry.type(description="Result of `upsertDeals`: one result per record, in order.")
class UpsertDealsPayload(UpsertSummary):
    is_type_of = upserts_of(UpsertPayload)

    results: list[UpsertDealResult] = strawberry.field(description="In the records' order.")


@strawberry.type
class DealQuery:
    deals = strawberry.field(
        resolver=resolve.deals,
        graphql_type=Connection[Deal],
        description="Deals of the workspace, newest first unless ordered.",
    )

    pipelines = strawberry.field(
        resolver=resolve.pipelines,
        graphql_type=Connection[Pipeline],
        description="Pipelines of the workspace, by position unless ordered.",
    )


@strawberry.type
class DealMutation:
    create_pipeline = strawberry.mutation(
        resolver=resolve.create_pipeline,
        graphql_type=PipelinePayload,
        description="Create a pipeline, optionally with its stages.",
    )

    update_pipeline = strawberry.mutation(
        resolver=resolve.update_pipeline,
        graphql_type=PipelinePayload,
        description="Rename or reposition a pipeline.",
    )

    archive_pipeline = strawberry.mutation(
        resolver=resolve.archive_pipeline,
        graphql_type=PipelinePayload,
        description="Retire a pipeline (refused while it has open deals).",
    )

    create_stage = strawberry.mutation(
        resolver=resolve.create_stage,
        graphql_type=StagePayload,
        description="Add a stage to a pipeline.",
    )

    update_stage = strawberry.mutation(
        resolver=resolve.update_stage,
        graphql_type=StagePayload,
        description="Rename a stage, or change its probability or position.",
    )

    archive_stage = strawberry.mutation(
        resolver=resolve.archive_stage,
        graphql_type=StagePayload,
        description="Remove a stage from its board (refused while deals sit in it).",
    )

    create_deal = strawberry.mutation(
        resolver=resolve.create_deal,
        graphql_type=DealPayload,
        description="Open a deal in a pipeline.",
    )

    update_deal = strawberry.mutation(
        resolver=resolve.update_deal,
        graphql_type=DealPayload,
        description="Change a deal's fields (win, lose or reopen it included).",
    )

    upsert_deals = strawberry.mutation(
        resolver=resolve.upsert_deals,
        graphql_type=UpsertDealsPayload,
        description="Create or update up to 1,000 deals in one call, matched by a deal custom "
        "field (`matchOn`). Each record succeeds or fails on its own (a failed one changes "
        "nothing) and is audited like `createDeal` / `updateDeal` (a stage change as "
        "`moveDeal`). Counted against the caller's rate limit by records, not requests: a call "
        "of 500 records spends 500.",
    )

    archive_deal = strawberry.mutation(
        resolver=resolve.archive_deal,
        graphql_type=DealPayload,
        description="Take a deal off the board and out of lists (history is kept).",
    )

    move_deal = strawberry.mutation(
        resolver=resolve.move_deal,
        graphql_type=DealPayload,
        description="Move a deal to another stage of its pipeline; a stage-change activity "
        "is added to its timeline.",
    )
