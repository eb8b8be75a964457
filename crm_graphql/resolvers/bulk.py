"""Bulk changes of customers: the preview, the job that runs a change, and what both
share: the input turned into the set's filter and the change. A job keeps the change in
the client's terms (its ``params``) and parses it again when it runs."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry import UNSET

from crm_graphql.enums import LifecycleStage
from crm_graphql.global_ids import decode_id, to_global_id
from crm_graphql.models import Job
from crm_graphql.resolvers.filters import filter_within_segment
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.services import bulk, jobs
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError, NotFound

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.job_runner import JobContext
    from crm_graphql.schema.bulk import BulkCustomerChangeInput

_bulk = "crm_graphql.schema.bulk"
START_ACTION = "startBulkCustomerChange"


def params_of(input: "BulkCustomerChangeInput") -> dict[str, Any]:
    """The input in the client's terms, as JSON (what a job keeps)."""
    params: dict[str, Any] = {
        "filter": input.filter,
        "segmentId": input.segment_id,
        "addTags": input.add_tags,
        "removeTags": input.remove_tags,
        "lifecycleStage": input.lifecycle_stage.name if input.lifecycle_stage else None,
        "customFields": input.custom_fields,
        "archive": bool(input.archive),
    }
    if input.owner_id is not UNSET:
        params["ownerId"] = input.owner_id
    return params


def change_of(params: dict[str, Any]) -> bulk.BulkChange:
    """The change ``params`` ask for (``Invalid`` when it changes nothing or contradicts
    itself, ``NotFound`` for an owner ID that is not a user's)."""
    owner: Any = bulk.KEEP
    if "ownerId" in params:
        owner = None
        if params["ownerId"] is not None:
            owner = decode_id(params["ownerId"], "User")
            if owner is None:
                raise NotFound("User not found", "ownerId")
    stage = params.get("lifecycleStage")
    return bulk.BulkChange.of(
        add_tags=params.get("addTags"),
        remove_tags=params.get("removeTags"),
        owner_id=owner,
        lifecycle_stage=LifecycleStage[stage] if stage else None,
        custom_fields=params.get("customFields"),
        archive=bool(params.get("archive")),
    )


async def _planned(
    schema: Any, actor: Actor, session: AsyncSession, params: dict[str, Any]
) -> tuple[dict[str, Any] | None, bulk.BulkChange]:
    change = change_of(params)
    filter = await filter_within_segment(
        schema, actor, session, params.get("filter"), params.get("segmentId")
    )
    return filter, change


@dataclass
class BulkPreviewValue:
    count: int
    customers: list[Any]


async def bulk_customer_change_preview(
    info: Info,
    input: Annotated["BulkCustomerChangeInput", strawberry.lazy(_bulk)],
    sample: Annotated[
        int, strawberry.argument(description="How many of the customers to show (0 to 100).")
    ] = 10,
) -> BulkPreviewValue:
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        filter, change = await _planned(info.schema, actor, session, params_of(input))
        found = await bulk.preview(actor, session, filter, change, sample=sample)
    return BulkPreviewValue(found.count, found.sample)


async def start_bulk_customer_change(
    info: Info,
    input: Annotated["BulkCustomerChangeInput", strawberry.lazy(_bulk)],
) -> Payload:
    params = params_of(input)

    async def action(actor: Actor, session: AsyncSession) -> Job:
        filter, change = await _planned(info.schema, actor, session, params)
        await bulk.preview(actor, session, filter, change, sample=0)  # the checks, now
        return await jobs.create_job(
            actor, session, kind=bulk.JOB_KIND, params=params, action=START_ACTION
        )

    payload = await mutate_payload(info, "job", action)
    runner = info.context.app.jobs
    if runner is not None and not payload.errors:
        runner.wake()
    return payload


async def run_bulk_change_job(context: "JobContext") -> dict[str, Any]:
    """The job kind ``bulk_change_customers``: the change over its set, batch by batch,
    each batch committed with its progress report. Applying a change twice changes
    nothing the second time, so a run that was interrupted starts the walk again (the
    customers it had changed count as unchanged)."""
    # The schema imports this module (its fields' resolvers): read it when a job runs,
    # by which time it is built.
    from crm_graphql.schema import schema

    actor = context.claimed.actor
    async with context.sessionmaker() as session:
        filter, change = await _planned(schema, actor, session, context.claimed.params)
        total = (await bulk.preview(actor, session, filter, change, sample=0)).count
    context.progress = jobs.Progress(total=total)
    after = None
    while True:
        context.check_cancelled()
        async with context.transaction() as session:
            batch = await bulk.apply_batch(actor, session, filter, change, after=after)
            progress = context.progress
            progress.done += batch.done
            progress.add("changed", batch.changed)
            progress.add("unchanged", batch.unchanged)
            progress.add("failed", len(batch.failures))
            for failure in batch.failures:
                customer = to_global_id("Customer", failure.customer_id)
                error = failure.error
                progress.fail(
                    None, DomainError(f"{customer}: {error.message}", error.field, error.code)
                )
            await context.report(session, committed=True)
        if batch.last_id is None:
            break
        after = batch.last_id
    return {
        "changed": context.progress.counts.get("changed", 0),
        "unchanged": context.progress.counts.get("unchanged", 0),
        "failed": context.progress.counts.get("failed", 0),
    }
