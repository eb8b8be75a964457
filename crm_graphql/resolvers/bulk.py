"""Bulk changes of customers, companies and deals: the preview, the job that runs a change,
and what both share: the input turned into the set's filter and the change. A job keeps
the change in the client's terms (its ``params``) and parses it again when it runs.

One resolver per kind and field, a few lines each; everything else is the kind's ``Api``
(its service target, its list's filter type, its start action) and the code below."""

import dataclasses
import enum
from dataclasses import dataclass
from types import SimpleNamespace
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
    from crm_graphql.schema.bulk import (
        BulkCompanyChangeInput,
        BulkCustomerChangeInput,
        BulkDealChangeInput,
    )

_bulk = "crm_graphql.schema.bulk"


@dataclass(frozen=True)
class Api:
    """A kind of record's bulk change as the API shows it."""

    target: bulk.Target
    filter_type: str  # the list's filter input, which a change's `filter` JSON is
    start_action: str  # the audit action of starting the job (the mutation's name)
    sample_field: str  # the preview's field listing the first records


CUSTOMERS = Api(bulk.CUSTOMERS, "CustomerFilter", "startBulkCustomerChange", "customers")
COMPANIES = Api(bulk.COMPANIES, "CompanyFilter", "startBulkCompanyChange", "companies")
DEALS = Api(bulk.DEALS, "DealFilter", "startBulkDealChange", "deals")
BY_JOB_KIND = {api.target.job_kind: api for api in (CUSTOMERS, COMPANIES, DEALS)}


def _decode(type_name: str, param: str) -> Any:
    def decode(value: str) -> Any:
        id = decode_id(value, type_name)
        if id is None:
            raise NotFound(f"{type_name} not found", param)
        return id

    return decode


# How a value set by a change is read from its params: its decoder, and whether null
# means something (an owner: unassign) or nothing (left out).
_VALUES: dict[str, tuple[Any, bool]] = {
    "ownerId": (_decode("User", "ownerId"), True),
    "stageId": (_decode("Stage", "stageId"), False),
    "lifecycleStage": (lambda name: LifecycleStage[name], False),
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def params_of(input: Any) -> dict[str, Any]:
    """A change input in the client's terms, as JSON (what a job keeps): every field
    given, enums by name; a field left out (an owner) stays out."""
    params: dict[str, Any] = {}
    for item in dataclasses.fields(input):
        value = getattr(input, item.name)
        if value is UNSET:
            continue
        if isinstance(value, enum.Enum):
            value = value.name
        params[_camel(item.name)] = value
    params["archive"] = bool(params.get("archive"))
    return params


def change_of(target: bulk.Target, params: dict[str, Any]) -> bulk.BulkChange:
    """The change ``params`` ask for (``Invalid`` when it changes nothing or contradicts
    itself, ``NotFound`` for an ID that is not of the expected type)."""
    values: dict[str, Any] = {}
    for name, param in target.settable.items():
        if param not in params:
            continue
        decode, null_counts = _VALUES[param]
        raw = params[param]
        if raw is not None:
            values[name] = decode(raw)
        elif null_counts:
            values[name] = None
    return bulk.BulkChange.of(
        add_tags=params.get("addTags"),
        remove_tags=params.get("removeTags"),
        custom_fields=params.get("customFields"),
        archive=bool(params.get("archive")),
        **values,
    )


async def _planned(
    api: Api, schema: Any, actor: Actor, session: AsyncSession, params: dict[str, Any]
) -> tuple[dict[str, Any] | None, bulk.BulkChange]:
    change = change_of(api.target, params)
    filter = await filter_within_segment(
        schema,
        actor,
        session,
        params.get("filter"),
        params.get("segmentId"),
        filter_type=api.filter_type,
    )
    return filter, change


async def _preview(api: Api, info: Info, input: Any, sample: int) -> Any:
    context = info.context
    actor = context.require_actor()
    async with context.read() as session:
        filter, change = await _planned(api, info.schema, actor, session, params_of(input))
        found = await bulk.preview(actor, session, filter, change, target=api.target, sample=sample)
    return SimpleNamespace(count=found.count, **{api.sample_field: found.sample})


async def _start(api: Api, info: Info, input: Any) -> Payload:
    params = params_of(input)

    async def action(actor: Actor, session: AsyncSession) -> Job:
        filter, change = await _planned(api, info.schema, actor, session, params)
        # The checks, now: a bad value or a missing right is refused before any job.
        await bulk.preview(actor, session, filter, change, target=api.target, sample=0)
        return await jobs.create_job(
            actor, session, kind=api.target.job_kind, params=params, action=api.start_action
        )

    payload = await mutate_payload(info, "job", action)
    runner = info.context.app.jobs
    if runner is not None and not payload.errors:
        runner.wake()
    return payload


async def bulk_customer_change_preview(
    info: Info,
    input: Annotated["BulkCustomerChangeInput", strawberry.lazy(_bulk)],
    sample: Annotated[
        int, strawberry.argument(description="How many of the customers to show (0 to 100).")
    ] = 10,
) -> Any:
    return await _preview(CUSTOMERS, info, input, sample)


async def start_bulk_customer_change(
    info: Info, input: Annotated["BulkCustomerChangeInput", strawberry.lazy(_bulk)]
) -> Payload:
    return await _start(CUSTOMERS, info, input)


async def bulk_company_change_preview(
    info: Info,
    input: Annotated["BulkCompanyChangeInput", strawberry.lazy(_bulk)],
    sample: Annotated[
        int, strawberry.argument(description="How many of the companies to show (0 to 100).")
    ] = 10,
) -> Any:
    return await _preview(COMPANIES, info, input, sample)


async def start_bulk_company_change(
    info: Info, input: Annotated["BulkCompanyChangeInput", strawberry.lazy(_bulk)]
) -> Payload:
    return await _start(COMPANIES, info, input)


async def bulk_deal_change_preview(
    info: Info,
    input: Annotated["BulkDealChangeInput", strawberry.lazy(_bulk)],
    sample: Annotated[
        int, strawberry.argument(description="How many of the deals to show (0 to 100).")
    ] = 10,
) -> Any:
    return await _preview(DEALS, info, input, sample)


async def start_bulk_deal_change(
    info: Info, input: Annotated["BulkDealChangeInput", strawberry.lazy(_bulk)]
) -> Payload:
    return await _start(DEALS, info, input)


async def run_bulk_change_job(context: "JobContext") -> dict[str, Any]:
    """The job kinds ``bulk_change_customers`` / ``_companies`` / ``_deals``: the change
    over its set, batch by batch, each batch committed with its progress report. Applying
    a change twice changes nothing the second time, so a run that was interrupted starts
    the walk again (the records it had changed count as unchanged)."""
    # The schema imports this module (its fields' resolvers): read it when a job runs,
    # by which time it is built.
    from crm_graphql.schema import schema

    api = BY_JOB_KIND[context.claimed.kind]
    target = api.target
    actor = context.claimed.actor
    async with context.sessionmaker() as session:
        filter, change = await _planned(api, schema, actor, session, context.claimed.params)
        total = (await bulk.preview(actor, session, filter, change, target=target, sample=0)).count
    context.progress = jobs.Progress(total=total)
    after = None
    while True:
        context.check_cancelled()
        async with context.transaction() as session:
            batch = await bulk.apply_batch(
                actor, session, filter, change, target=target, after=after
            )
            progress = context.progress
            progress.done += batch.done
            progress.add("changed", batch.changed)
            progress.add("unchanged", batch.unchanged)
            progress.add("failed", len(batch.failures))
            for failure in batch.failures:
                record = to_global_id(target.entity, failure.record_id)
                error = failure.error
                progress.fail(
                    None, DomainError(f"{record}: {error.message}", error.field, error.code)
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
