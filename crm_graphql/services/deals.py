"""Sales: pipelines and their ordered stages, deals, and moving deals across the board."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Integer,
    Table,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from crm_graphql.models import (
    Activity,
    ActivityType,
    Company,
    Customer,
    CustomFieldEntity,
    Deal,
    DealStageChange,
    DealStatus,
    Pipeline,
    Stage,
    User,
)
from crm_graphql.models.base import uuid7
from crm_graphql.services import activities, audit, changes, custom_fields, events, fields
from crm_graphql.services.actor import Actor, scoped, workspace_condition
from crm_graphql.services.errors import Conflict, DomainError, Invalid
from crm_graphql.services.policy import Action, authorize, authorize_read
from crm_graphql.storage import bound, querying, records

PIPELINES = querying.ListSpec(
    model=Pipeline,
    filter_fields={
        "id": Pipeline.id,
        "name": Pipeline.name,
        "created_at": Pipeline.created_at,
        "updated_at": Pipeline.updated_at,
        "archived_at": Pipeline.archived_at,
    },
    order_fields={
        "position": Pipeline.position,
        "name": Pipeline.name,
        "created_at": Pipeline.created_at,
    },
    default_order=[("position", False)],
)

STAGES = querying.ListSpec(
    model=Stage,
    filter_fields={
        "id": Stage.id,
        "pipeline_id": Stage.pipeline_id,
        "name": Stage.name,
        "probability": Stage.probability,
        "archived_at": Stage.archived_at,
    },
    order_fields={
        "position": Stage.position,
        "name": Stage.name,
        "probability": Stage.probability,
        "created_at": Stage.created_at,
    },
    default_order=[("position", False)],
    parent_fields={"pipeline_id": Stage.pipeline_id},
)


def _furthest_stage_position() -> Any:
    """The highest position among the stages a deal has been in: its current stage and the
    stage each of its moves left (``deal_stage_changes``). "Reached stage N or a later one"
    is ``furthest_stage_position >= position of N``, whether the deal stopped at N or
    skipped it; the sales report's conversion counts exactly this, and the deals list filters
    by it, so a conversion cell and its drill-down are the same rows."""
    # The deal's columns by name, not as ``Deal`` columns: a subquery naming ``Deal``
    # compiled on its own (the compiled read path compiles each list's WHERE clause alone,
    # then puts it over its alias of ``deals``) would add ``deals`` to its own FROM list.
    # As plain ``deals.<column>`` it is correlated to whichever statement reads ``deals``.
    deal = {
        name: literal_column(f"{Deal.__tablename__}.{name}", type_=UUID(as_uuid=True))
        for name in ("id", "workspace_id", "stage_id")
    }
    left = select(DealStageChange.from_stage_id).where(
        DealStageChange.workspace_id == deal["workspace_id"],
        DealStageChange.deal_id == deal["id"],
    )
    return (
        select(func.max(Stage.position))
        .where(
            Stage.workspace_id == deal["workspace_id"],
            or_(Stage.id == deal["stage_id"], Stage.id.in_(left)),
        )
        .scalar_subquery()
    )


FURTHEST_STAGE_POSITION = _furthest_stage_position()

DEALS = querying.ListSpec(
    model=Deal,
    filter_fields={
        "id": Deal.id,
        "title": Deal.title,
        "pipeline_id": Deal.pipeline_id,
        "stage_id": Deal.stage_id,
        "customer_id": Deal.customer_id,
        "company_id": Deal.company_id,
        "owner_id": Deal.owner_id,
        "status": Deal.status,
        "amount": Deal.amount,
        "currency": Deal.currency,
        "expected_close_date": Deal.expected_close_date,
        "closed_at": Deal.closed_at,
        "created_at": Deal.created_at,
        "updated_at": Deal.updated_at,
        "furthest_stage_position": FURTHEST_STAGE_POSITION,
    },
    order_fields={
        "title": Deal.title,
        "amount": Deal.amount,
        "expected_close_date": Deal.expected_close_date,
        "created_at": Deal.created_at,
        "updated_at": Deal.updated_at,
        "closed_at": Deal.closed_at,
    },
    default_order=[("created_at", True)],
    parent_fields={
        "customer_id": Deal.customer_id,
        "company_id": Deal.company_id,
        "stage_id": Deal.stage_id,
        "pipeline_id": Deal.pipeline_id,
        "owner_id": Deal.owner_id,
    },
    custom_fields=custom_fields.terms_loader(CustomFieldEntity.DEAL),
)

PIPELINE_FIELDS = ("name", "position")
STAGE_FIELDS = ("name", "probability", "position")
DEAL_FIELDS = (
    "title",
    "customer_id",
    "company_id",
    "owner_id",
    "amount",
    "currency",
    "status",
    "expected_close_date",
    "lost_reason",
    "custom_fields",
)
MAX_POSITION = 1_000_000

M = TypeVar("M", Pipeline, Stage)


def pipeline_topic(pipeline_id: uuid.UUID) -> str:
    """The event stream of one deal board."""
    return f"pipeline:{pipeline_id}"


def _reject_unknown(data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = set(data) - set(allowed)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}")


def _bounded_int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"`{field}` must be a whole number", field)
    if not low <= value <= high:
        raise Invalid(f"`{field}` must be between {low} and {high}", field)
    return value


async def _get_live(
    actor: Actor, session: AsyncSession, model: type[M], id: uuid.UUID | None, field: str
) -> M:
    """A pipeline or stage a deal is about to reference: in the workspace, not archived,
    and held with FOR KEY SHARE, which waits for (and then sees) a concurrent archive, so
    no deal can slip into a pipeline or stage that is being archived."""
    row, _ = await _get_live_and(actor, session, model, id, field, None)
    return row


async def _get_live_and(
    actor: Actor,
    session: AsyncSession,
    model: type[M],
    id: uuid.UUID | None,
    field: str,
    other_id: uuid.UUID | None,
) -> tuple[M, M | None]:
    """``_get_live`` of ``id``, and in the same statement (one round trip) the row
    ``other_id`` of the workspace, held alike, whatever its state (None when absent)."""
    if id is None:
        raise records.not_found(model, field)
    authorize_read(actor, model)  # what ``scope_condition`` checks
    wanted = [id] if other_id is None or other_id == id else [id, other_id]
    rows = {
        row.id: row
        for row in await session.scalars(
            _live_statement(model), {"workspace": actor.workspace_id, "ids": wanted}
        )
    }
    row = rows.get(id)
    if row is None:
        raise records.not_found(model, field)
    if row.archived_at is not None:
        raise Invalid(f"That {model.__name__.lower()} is archived", field)
    return row, rows.get(other_id) if other_id is not None else None


async def _read_move(
    actor: Actor,
    session: AsyncSession,
    deal_id: uuid.UUID | None,
    stage_id: uuid.UUID | None,
    expected_version: int | None,
) -> tuple[Deal, Stage, Stage | None]:
    """What ``move_deal`` reads, in one statement (``_move_read_statement``): the deal as
    ``records.get_for_change`` has it (locked, its version checked), not archived; the
    stage ``stage_id`` as ``_get_live`` has it (held, live); and the deal's stage now,
    held alike (the target itself when the move names it). The errors and their order
    are those of reading them one after the other."""
    if deal_id is None:
        raise records.not_found(Deal)
    authorize_read(actor, Deal)  # what ``scope_condition`` checks
    rows = (
        await session.execute(
            _move_read_statement(),
            {"workspace": actor.workspace_id, "id": deal_id, "stage": stage_id},
        )
    ).all()
    if not rows:
        raise records.not_found(Deal)
    deal = rows[0][0]
    records.check_version(deal, expected_version)
    if deal.archived_at is not None:
        raise Invalid("An archived deal is not on the board", "id")
    if stage_id is None:
        raise records.not_found(Stage, "stageId")
    authorize_read(actor, Stage)
    stages = {stage.id: stage for _, stage in rows}
    if deal.stage_id not in stages:
        # Moved by another transaction while this one waited for the deal's lock: the
        # join's stages are of the statement's snapshot, the deal's of the commit it
        # waited for. The stages are read again (a new snapshot, the deal held).
        again, left = await _get_live_and(actor, session, Stage, stage_id, "stageId", deal.stage_id)
        return deal, again, left
    target: Stage | None = stages.get(stage_id)
    if target is None:
        raise records.not_found(Stage, "stageId")
    if target.archived_at is not None:
        raise Invalid("That stage is archived", "stageId")
    return deal, target, stages[deal.stage_id]


@cache
def _move_read_statement() -> Any:
    """``_read_move``'s statement (built once): the deal of ``:workspace`` with id ``:id``
    joined to its workspace's stages ``:stage`` and its own, the deal ``FOR UPDATE``
    (as ``records.get_for_change``) and the stages ``FOR KEY SHARE`` (as ``_get_live``):
    two locking clauses, which ``with_for_update`` cannot say together."""
    stage = bindparam("stage", type_=UUID(as_uuid=True))
    return (
        select(Deal, Stage)
        .join(
            Stage,
            and_(
                Stage.workspace_id == Deal.workspace_id,
                or_(Stage.id == stage, Stage.id == Deal.stage_id),
            ),
        )
        .where(workspace_condition(Deal), Deal.id == bindparam("id", type_=UUID(as_uuid=True)))
        .with_for_update(of=Deal)
        .suffix_with(f"FOR KEY SHARE OF {Stage.__tablename__}")
    )


_live_statements: dict[type[Any], Any] = {}


def _live_statement(model: type[M]) -> Any:
    """``_get_live_and``'s statement, the workspace and the ids parameters, built once per
    model (building and keying it per call cost more than running it)."""
    found = _live_statements.get(model)
    if found is None:
        found = _live_statements[model] = (
            select(model)
            .where(
                workspace_condition(model),
                model.id == any_(bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))),
            )
            .with_for_update(read=True, key_share=True)
        )
    return found


def _record(
    actor: Actor,
    session: AsyncSession,
    pipeline_id: uuid.UUID,
    event_type: str,
    row: Pipeline | Stage | Deal,
    payload: dict[str, Any],
) -> None:
    """Add an event to the board stream of ``pipeline_id``."""
    events.record_event(
        actor,
        session,
        topic=pipeline_topic(pipeline_id),
        type=event_type,
        entity_type=type(row).__name__,
        entity_id=row.id,
        payload=payload,
    )


# ------------------------------------------------------------------------- pipelines


async def _next_position(actor: Actor, session: AsyncSession, model: Any, *where: Any) -> int:
    """One past the last position (archived rows excluded), 0 for the first."""
    highest = await session.scalar(
        select(func.max(model.position)).where(
            model.workspace_id == actor.workspace_id, model.archived_at.is_(None), *where
        )
    )
    return 0 if highest is None else int(highest) + 1


def _clean_stage(data: Mapping[str, Any], *, creating: bool, prefix: str = "") -> dict[str, Any]:
    _reject_unknown(data, STAGE_FIELDS)
    cleaned: dict[str, Any] = {}
    if "name" in data or creating:
        cleaned["name"] = fields.required_text(data.get("name"), f"{prefix}name")
    if data.get("probability") is not None:
        cleaned["probability"] = _bounded_int(data["probability"], f"{prefix}probability", 0, 100)
    elif "probability" in data and not creating:
        raise Invalid("`probability` must not be empty", f"{prefix}probability")
    if data.get("position") is not None:
        cleaned["position"] = _bounded_int(data["position"], f"{prefix}position", 0, MAX_POSITION)
    elif "position" in data and not creating:
        raise Invalid("`position` must not be empty", f"{prefix}position")
    return cleaned


def _clean_pipeline(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if "name" in data or creating:
        cleaned["name"] = fields.required_text(data.get("name"), "name")
    if data.get("position") is not None:
        cleaned["position"] = _bounded_int(data["position"], "position", 0, MAX_POSITION)
    elif "position" in data and not creating:
        raise Invalid("`position` must not be empty", "position")
    return cleaned


def _pipeline_payload(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "pipeline_id": pipeline.id,
        "name": pipeline.name,
        "position": pipeline.position,
        "version": pipeline.version,
    }


def _stage_payload(stage: Stage) -> dict[str, Any]:
    return {
        "stage_id": stage.id,
        "pipeline_id": stage.pipeline_id,
        "name": stage.name,
        "position": stage.position,
        "probability": stage.probability,
        "version": stage.version,
    }


async def create_pipeline(actor: Actor, session: AsyncSession, data: Mapping[str, Any]) -> Pipeline:
    """Create a pipeline, optionally with its stages (``stages: [{name, probability,
    position?}]``, kept in the given order), in one transaction."""
    authorize(actor, Action.MANAGE_PIPELINES)
    _reject_unknown(data, (*PIPELINE_FIELDS, "stages"))
    cleaned = _clean_pipeline(data, creating=True)
    stage_inputs = data.get("stages") or []
    if not isinstance(stage_inputs, list | tuple):
        raise Invalid("`stages` must be a list", "stages")
    stages = []
    for index, stage_data in enumerate(stage_inputs):
        if not isinstance(stage_data, Mapping):
            raise Invalid("Each stage must be an object", f"stages.{index}")
        stage_cleaned = _clean_stage(stage_data, creating=True, prefix=f"stages.{index}.")
        stage_cleaned.setdefault("position", index)
        stages.append(stage_cleaned)
    if "position" not in cleaned:
        cleaned["position"] = await _next_position(actor, session, Pipeline)
    pipeline = await records.create(actor, session, Pipeline(**cleaned), action="createPipeline")
    _record(actor, session, pipeline.id, "pipeline.created", pipeline, _pipeline_payload(pipeline))
    for values in stages:
        stage = await records.create(
            actor, session, Stage(pipeline_id=pipeline.id, **values), action="createPipeline"
        )
        _record(actor, session, pipeline.id, "stage.created", stage, _stage_payload(stage))
    return pipeline


async def update_pipeline(
    actor: Actor,
    session: AsyncSession,
    pipeline_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> Pipeline:
    """Rename or reposition a pipeline."""
    authorize(actor, Action.MANAGE_PIPELINES)
    _reject_unknown(data, PIPELINE_FIELDS)
    pipeline = await records.get_for_change(actor, session, Pipeline, pipeline_id, expected_version)
    cleaned = _clean_pipeline(data, creating=False)
    await records.update(actor, session, pipeline, cleaned, action="updatePipeline")
    _record(actor, session, pipeline.id, "pipeline.updated", pipeline, _pipeline_payload(pipeline))
    return pipeline


async def _count_deals(actor: Actor, session: AsyncSession, *where: Any) -> int:
    return int(
        await session.scalar(
            select(func.count()).where(
                Deal.workspace_id == actor.workspace_id, Deal.archived_at.is_(None), *where
            )
        )
        or 0
    )


def _deals_phrase(count: int, kind: str) -> str:
    return f"{count} {kind}deal{'s' if count != 1 else ''}"


async def archive_pipeline(
    actor: Actor,
    session: AsyncSession,
    pipeline_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Pipeline:
    """Retire a pipeline. Refused while it has open deals: win, lose or archive them
    first, so no live deal disappears from every board."""
    authorize(actor, Action.MANAGE_PIPELINES)
    pipeline = await records.get_for_change(actor, session, Pipeline, pipeline_id, expected_version)
    if pipeline.archived_at is not None:
        return pipeline
    open_deals = await _count_deals(
        actor, session, Deal.pipeline_id == pipeline.id, Deal.status == DealStatus.OPEN
    )
    if open_deals:
        raise Invalid(
            f"The pipeline still has {_deals_phrase(open_deals, 'open ')}; "
            "win, lose or archive them first",
            "id",
        )
    await records.update(
        actor, session, pipeline, {"archived_at": datetime.now(UTC)}, action="archivePipeline"
    )
    _record(actor, session, pipeline.id, "pipeline.archived", pipeline, _pipeline_payload(pipeline))
    return pipeline


# ---------------------------------------------------------------------------- stages


async def create_stage(actor: Actor, session: AsyncSession, data: Mapping[str, Any]) -> Stage:
    """Add a stage to a pipeline (``pipeline_id``, ``name``, ``probability`` 0..100,
    ``position``; without a position it goes after the last stage)."""
    authorize(actor, Action.MANAGE_PIPELINES)
    _reject_unknown(data, (*STAGE_FIELDS, "pipeline_id"))
    cleaned = _clean_stage({k: v for k, v in data.items() if k != "pipeline_id"}, creating=True)
    pipeline = await _get_live(actor, session, Pipeline, data.get("pipeline_id"), "pipelineId")
    if "position" not in cleaned:
        cleaned["position"] = await _next_position(
            actor, session, Stage, Stage.pipeline_id == pipeline.id
        )
    stage = await records.create(
        actor, session, Stage(pipeline_id=pipeline.id, **cleaned), action="createStage"
    )
    _record(actor, session, pipeline.id, "stage.created", stage, _stage_payload(stage))
    return stage


async def update_stage(
    actor: Actor,
    session: AsyncSession,
    stage_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> Stage:
    """Rename a stage, change its probability or its position within its pipeline."""
    authorize(actor, Action.MANAGE_PIPELINES)
    stage = await records.get_for_change(actor, session, Stage, stage_id, expected_version)
    cleaned = _clean_stage(data, creating=False)
    await records.update(actor, session, stage, cleaned, action="updateStage")
    _record(actor, session, stage.pipeline_id, "stage.updated", stage, _stage_payload(stage))
    return stage


async def archive_stage(
    actor: Actor,
    session: AsyncSession,
    stage_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
) -> Stage:
    """Remove a stage from its board. Refused while deals (open or closed, not archived)
    sit in it: move or archive them first."""
    authorize(actor, Action.MANAGE_PIPELINES)
    stage = await records.get_for_change(actor, session, Stage, stage_id, expected_version)
    if stage.archived_at is not None:
        return stage
    in_stage = await _count_deals(actor, session, Deal.stage_id == stage.id)
    if in_stage:
        raise Invalid(
            f"{_deals_phrase(in_stage, '')} still sit in this stage; move or archive them first",
            "id",
        )
    await records.update(
        actor, session, stage, {"archived_at": datetime.now(UTC)}, action="archiveStage"
    )
    _record(actor, session, stage.pipeline_id, "stage.archived", stage, _stage_payload(stage))
    return stage


async def first_stage(actor: Actor, session: AsyncSession, pipeline_id: uuid.UUID) -> Stage | None:
    """The leftmost live stage of a pipeline, where new deals land by default."""
    return await session.scalar(
        scoped(Stage, actor)
        .where(Stage.pipeline_id == pipeline_id, Stage.archived_at.is_(None))
        .order_by(Stage.position, Stage.id)
        .limit(1)
        .with_for_update(read=True, key_share=True)
    )


# ----------------------------------------------------------------------------- deals


def _deal_payload(deal: Deal) -> dict[str, Any]:
    return {
        "deal_id": deal.id,
        "pipeline_id": deal.pipeline_id,
        "stage_id": deal.stage_id,
        "status": deal.status,
        "version": deal.version,
    }


def _close_date(value: Any) -> date | None:
    if value is None:
        return None
    return fields.calendar_date(value, "expectedCloseDate")


async def _clean_deal(
    actor: Actor, session: AsyncSession, data: Mapping[str, Any], *, current: Deal | None
) -> dict[str, Any]:
    """Validate and normalise the deal's own fields (not its pipeline or stage)."""
    creating = current is None
    cleaned: dict[str, Any] = {}
    if "title" in data or creating:
        cleaned["title"] = fields.required_text(data.get("title"), "title")
    if "amount" in data or creating:
        raw = data.get("amount")
        if raw is None and not creating:
            raise Invalid("`amount` must not be empty", "amount")
        cleaned["amount"] = fields.amount(0 if raw is None else raw)
    if "currency" in data or creating:
        cleaned["currency"] = fields.currency(data.get("currency"))
    if "expected_close_date" in data:
        cleaned["expected_close_date"] = _close_date(data["expected_close_date"])
    for key in ("customer_id", "company_id", "owner_id"):
        if key in data:
            cleaned[key] = data[key]
    typed = await custom_fields.clean_custom_fields(
        actor,
        session,
        CustomFieldEntity.DEAL,
        data,
        current=current.custom_fields if current is not None else None,
    )
    if typed is not None:
        cleaned["custom_fields"] = typed
    await records.ensure_in_workspace(
        actor,
        session,
        [
            (Customer, cleaned.get("customer_id"), "customerId"),
            (Company, cleaned.get("company_id"), "companyId"),
            (User, cleaned.get("owner_id"), "ownerId"),
        ],
    )
    previous = current.status if current is not None else DealStatus.OPEN
    status = previous
    if data.get("status") is not None:
        status = cleaned["status"] = fields.choice(DealStatus, data["status"], "status")
    elif "status" in data and not creating:
        raise Invalid("`status` must not be empty", "status")
    if status is not previous:
        # Closing stamps the time, reopening clears it; won <-> lost re-closes.
        cleaned["closed_at"] = None if status is DealStatus.OPEN else datetime.now(UTC)
    if status is DealStatus.LOST:
        if "lost_reason" in data:
            cleaned["lost_reason"] = fields.optional_text(
                data["lost_reason"], "lostReason", max_length=2000
            )
    else:
        if data.get("lost_reason"):
            raise Invalid("Only a lost deal has a lost reason", "lostReason")
        if "lost_reason" in data or (current is not None and current.lost_reason):
            cleaned["lost_reason"] = None
    return cleaned


async def create_deal(
    actor: Actor,
    session: AsyncSession,
    data: Mapping[str, Any],
    *,
    action: str = "createDeal",
) -> Deal:
    """Open a deal in a pipeline (audited as ``action``). Without ``stage_id`` it lands in
    the pipeline's first stage; with only ``stage_id`` the stage's pipeline is used."""
    authorize(actor, Action.WRITE_DEALS)
    _reject_unknown(data, (*DEAL_FIELDS, "pipeline_id", "stage_id"))
    pipeline_id, stage_id = data.get("pipeline_id"), data.get("stage_id")
    if pipeline_id is None and stage_id is None:
        raise Invalid("A deal needs a pipeline", "pipelineId")
    stage = None
    if stage_id is not None:
        stage = await _get_live(actor, session, Stage, stage_id, "stageId")
        if pipeline_id is None:
            pipeline_id = stage.pipeline_id
    pipeline = await _get_live(actor, session, Pipeline, pipeline_id, "pipelineId")
    if stage is None:
        stage = await first_stage(actor, session, pipeline.id)
        if stage is None:
            raise Invalid("The pipeline has no stages yet; add one first", "pipelineId")
    elif stage.pipeline_id != pipeline.id:
        raise Invalid("The stage belongs to another pipeline", "stageId")
    cleaned = await _clean_deal(
        actor, session, {k: v for k, v in data.items() if k in DEAL_FIELDS}, current=None
    )
    deal = await records.create(
        actor,
        session,
        Deal(pipeline_id=pipeline.id, stage_id=stage.id, **cleaned),
        action=action,
    )
    _record(actor, session, pipeline.id, "deal.created", deal, _deal_payload(deal))
    return deal


async def update_deal(
    actor: Actor,
    session: AsyncSession,
    deal_id: uuid.UUID | None,
    data: Mapping[str, Any],
    *,
    expected_version: int | None = None,
    action: str = "updateDeal",
) -> Deal:
    """Change a deal's fields (audited as ``action``). Winning or losing stamps
    ``closed_at``, reopening clears it. The stage changes only through ``move_deal`` (it
    writes the board's history)."""
    authorize(actor, Action.WRITE_DEALS)
    if "stage_id" in data:
        raise Invalid("Use moveDeal to change a deal's stage", "stageId")
    if "pipeline_id" in data:
        raise Invalid("A deal stays in its pipeline; use moveDeal between stages", "pipelineId")
    _reject_unknown(data, DEAL_FIELDS)
    deal = await records.get_for_change(actor, session, Deal, deal_id, expected_version)
    cleaned = await _clean_deal(actor, session, data, current=deal)
    before = audit.snapshot(deal)
    await records.update(actor, session, deal, cleaned, action=action)
    changed = sorted(audit.diff(before, audit.snapshot(deal)))
    if changed:
        _record(
            actor,
            session,
            deal.pipeline_id,
            "deal.updated",
            deal,
            {**_deal_payload(deal), "changed": changed},
        )
    return deal


UPSERT_ACTION = "upsertDeals"


async def upsert_deals(
    actor: Actor,
    session: AsyncSession,
    batch: Sequence[Mapping[str, Any] | DomainError],
    *,
    match_on: str | None = None,
) -> list[records.Upserted[Deal]]:
    """Create or update up to ``records.MAX_UPSERT_RECORDS`` deals, matched by the deal
    custom field ``match_on`` (the other system's id, say): a record whose value of that
    field a deal of the workspace has updates that deal (the oldest, if several have it)
    with the fields it gives (a ``stage_id`` moves it, as ``moveDeal``; its pipeline stays),
    any other creates one. Without ``match_on`` every record creates a deal. Each on its own
    (``records.upsert_each``), audited as ``upsertDeals``."""
    authorize(actor, Action.WRITE_DEALS)
    if match_on is not None:
        definitions = await custom_fields.definitions_of(actor, session, CustomFieldEntity.DEAL)
        if match_on not in definitions.active:
            raise Invalid(f"`{match_on}` is not a custom field of deals", "matchOn")

    async def existing(data: Mapping[str, Any]) -> uuid.UUID | None:
        if match_on is None:
            return None
        value = (data.get("custom_fields") or {}).get(match_on)
        if value is None:
            raise Invalid(
                f"Give `customFields.{match_on}`: records are matched on it",
                f"customFields.{match_on}",
            )
        return await session.scalar(
            select(Deal.id)
            .where(
                Deal.workspace_id == actor.workspace_id,
                Deal.custom_fields.contains({match_on: value}),
            )
            .order_by(Deal.created_at, Deal.id)
            .limit(1)
        )

    async def create(data: Mapping[str, Any]) -> Deal:
        return await create_deal(actor, session, data, action=UPSERT_ACTION)

    async def change(deal_id: uuid.UUID, data: Mapping[str, Any]) -> Deal:
        return await change_deal(actor, session, deal_id, data, action=UPSERT_ACTION)

    return await records.upsert_each(
        session, batch, existing=existing, create=create, update=change
    )


async def change_deal(
    actor: Actor,
    session: AsyncSession,
    deal_id: uuid.UUID,
    data: Mapping[str, Any],
    *,
    action: str,
    move_action: str = "moveDeal",
) -> Deal:
    """Change a deal's own fields (``update_deal``, audited as ``action``) and, given a
    ``stage_id``, move it there within its pipeline (``move_deal``, audited as
    ``move_action``): what a write that may carry a stage (an upsert, a bulk change) does.
    Other keys (an upsert's ``pipeline_id``) are left alone: the pipeline stays."""
    own = {k: v for k, v in data.items() if k in DEAL_FIELDS}
    stage_id = data.get("stage_id")
    if stage_id is None:
        return await update_deal(actor, session, deal_id, own, action=action)
    if own:
        await update_deal(actor, session, deal_id, own, action=action)
    return await move_deal(actor, session, deal_id, stage_id, action=move_action)


async def check_stage_for_deals(
    actor: Actor, session: AsyncSession, stage_id: uuid.UUID | None, deals: Any
) -> Stage:
    """The stage a set of deals (``deals``: a statement selecting them) is about to move
    to, checked before any of them moves: in the workspace, live, and of the pipeline of
    every deal of the set (a deal stays in its pipeline, as ``move_deal`` requires)."""
    stage = await records.get(actor, session, Stage, stage_id, field="stageId")
    if stage.archived_at is not None:
        raise Invalid("That stage is archived", "stageId")
    elsewhere = await session.scalar(
        select(func.count()).select_from(
            deals.with_only_columns(Deal.id).where(Deal.pipeline_id != stage.pipeline_id).subquery()
        )
    )
    if elsewhere:
        raise Invalid(
            f"{_deals_phrase(int(elsewhere), '')} of the set "
            f"{'is' if elsewhere == 1 else 'are'} in another pipeline than the stage's "
            "(a deal stays in its pipeline): narrow the filter to the stage's pipeline",
            "stageId",
        )
    return stage


async def archive_deal(
    actor: Actor,
    session: AsyncSession,
    deal_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
    action: str = "archiveDeal",
) -> Deal:
    """Take a deal off the board and out of lists; its history stays (audited as
    ``action``)."""
    authorize(actor, Action.ARCHIVE_DEALS)
    deal = await records.get_for_change(actor, session, Deal, deal_id, expected_version)
    if deal.archived_at is None:
        await records.update(
            actor, session, deal, {"archived_at": datetime.now(UTC)}, action=action
        )
        _record(actor, session, deal.pipeline_id, "deal.archived", deal, _deal_payload(deal))
    return deal


async def move_deal(
    actor: Actor,
    session: AsyncSession,
    deal_id: uuid.UUID | None,
    stage_id: uuid.UUID | None,
    *,
    expected_version: int | None = None,
    action: str = "moveDeal",
) -> Deal:
    """Move a deal to another stage of its pipeline: the deal changes (audited as
    ``action``), a stage-change activity lands on the deal's and customer's timeline, and
    the board gets a ``deal.moved`` event. Moving to the stage it is in changes nothing."""
    authorize(actor, Action.WRITE_DEALS)
    # The deal, locked, with the stage it enters and the one it leaves: one statement.
    deal, target, left = await _read_move(actor, session, deal_id, stage_id, expected_version)
    if target.pipeline_id != deal.pipeline_id:
        raise Invalid("The stage belongs to another pipeline", "stageId")
    if target.id == deal.stage_id:
        return deal
    if left is None:  # a deal's stage is in its workspace (foreign key)
        raise records.not_found(Stage, "stageId")
    source = left
    now = datetime.now(UTC)
    activity = Activity(
        type=ActivityType.STAGE_CHANGE,
        subject=f"Moved from {source.name} to {target.name}"[:300],
        customer_id=deal.customer_id,
        deal_id=deal.id,
        author_id=actor.user_id,
        occurred_at=now,
        details={"from_stage_id": str(source.id), "to_stage_id": str(target.id)},
    )
    if events.coalescing_in(session):
        await _move_through_session(actor, session, deal, source, target, activity, now, action)
        return deal
    # Two statements: the deal with its event and audit row (``_move_statement``), then
    # its stage change and the stage-change activity with theirs (``_history_statement``).
    activities.prepare(activity)
    before = audit.snapshot(deal)
    after = {**before, "stage_id": audit.jsonable(target.id)}
    version = deal.version + 1
    moved = {
        **_deal_payload(deal),
        "stage_id": target.id,
        "version": version,
        "from_stage_id": source.id,
        "to_stage_id": target.id,
        "activity_id": activity.id,
    }
    parameters = {
        **activities.record_params(actor, activity, action=action),
        **bound.params(
            "d",
            {"id": deal.id, "workspace_id": actor.workspace_id, "stage_id": target.id},
        ),
        "d_expected_version": deal.version,
        "d_new_version": version,
        **bound.params(
            "c",
            {
                "id": uuid7(),
                "workspace_id": actor.workspace_id,
                "deal_id": deal.id,
                "from_stage_id": source.id,
                "to_stage_id": target.id,
                "changed_at": now,
            },
        ),
        **bound.params(
            "de",
            events.event_values(
                actor,
                topic=pipeline_topic(deal.pipeline_id),
                type="deal.moved",
                entity_type="Deal",
                entity_id=deal.id,
                payload=moved,
            ),
        ),
        **bound.params(
            "da",
            audit.values(
                actor,
                action=action,
                entity_type="Deal",
                entity_id=deal.id,
                before=before,
                after=after,
            ),
        ),
    }
    # Both statements are built once: on the session's connection (``bound.run``).
    row = await bound.first(session, _move_statement(), parameters)
    if row is None:  # the row is locked: only a writer outside this rule gets here
        raise Conflict("The deal was changed concurrently; reload and retry")
    (history,) = await bound.run(
        session, _history_statement(deal.customer_id is not None), parameters
    )
    set_committed_value(deal, "stage_id", target.id)
    set_committed_value(deal, "version", row.version)
    set_committed_value(deal, "updated_at", row.updated_at)
    set_committed_value(activity, "created_at", history.created_at)
    set_committed_value(activity, "updated_at", history.updated_at)
    events.announce(actor, session, activities.TOPIC)
    events.announce(actor, session, pipeline_topic(deal.pipeline_id))
    return deal


# The columns a deal's stage change is inserted with (the timestamps are PostgreSQL's).
_STAGE_CHANGE_COLUMNS = (
    "id",
    "workspace_id",
    "deal_id",
    "from_stage_id",
    "to_stage_id",
    "changed_at",
)
_built: dict[Any, Any] = {}


def _move_statement() -> Any:
    """The deal's move, built once: its stage and version (``d_``; the row is locked and
    its version checked), the ``deal.moved`` event (``de_``) and the deal's audit row
    (``da_``); returns the new version and ``updated_at``. Its own statement, before the
    stage change's: the report summaries' statement triggers (migration 0019) take a
    deal's moves before the statement from the table, so a deal's UPDATE and its new
    move in one statement would count the move twice."""
    found = _built.get("move")
    if found is not None:
        return found
    deals = cast(Table, Deal.__table__)
    moved = (
        update(deals)
        .where(
            deals.c.id == bound.param("d", deals.c.id),
            deals.c.workspace_id == bound.param("d", deals.c.workspace_id),
            deals.c.version == bindparam("d_expected_version", type_=Integer),
        )
        .values(
            stage_id=bound.param("d", deals.c.stage_id),
            version=bindparam("d_new_version", type_=Integer),
            updated_at=func.now(),
        )
        .returning(deals.c.version, deals.c.updated_at)
        .cte("deal")
    )
    event = events.insert_statement("de", source=moved).cte("deal_event")
    audit_row = audit.insert_statement("da", source=moved).cte("deal_audit")
    found = _built["move"] = changes.writing(
        select(moved.c.version, moved.c.updated_at).add_cte(event, audit_row)
    )
    return found


def _history_statement(touches_customer: bool) -> Any:
    """What a move adds to the deal's history, built once per shape: the stage change
    (``c_``) and the stage-change activity with its event and audit row
    (``activities.record_ctes``); returns the activity's timestamps."""
    found = _built.get(("history", touches_customer))
    if found is not None:
        return found
    change = bound.insert_row(
        cast(Table, DealStageChange.__table__), "c", _STAGE_CHANGE_COLUMNS
    ).cte("stage_change")
    inserted, activity_ctes = activities.record_ctes(touches_customer)
    found = _built[("history", touches_customer)] = changes.writing(
        select(inserted.c.created_at, inserted.c.updated_at).add_cte(change, *activity_ctes)
    )
    return found


async def _move_through_session(
    actor: Actor,
    session: AsyncSession,
    deal: Deal,
    source: Stage,
    target: Stage,
    activity: Activity,
    now: datetime,
    action: str,
) -> None:
    """``move_deal``'s writes as rows of the session: under ``events.coalescing`` (a bulk
    writer collects the events instead of writing them)."""
    await records.update(actor, session, deal, {"stage_id": target.id}, action=action)
    session.add(
        DealStageChange(
            workspace_id=actor.workspace_id,
            deal_id=deal.id,
            from_stage_id=source.id,
            to_stage_id=target.id,
            changed_at=now,
        )
    )
    await activities.record_activity(actor, session, activity, action=action)
    _record(
        actor,
        session,
        deal.pipeline_id,
        "deal.moved",
        deal,
        {
            **_deal_payload(deal),
            "from_stage_id": source.id,
            "to_stage_id": target.id,
            "activity_id": activity.id,
        },
    )
