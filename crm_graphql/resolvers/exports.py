"""Exports: ``createExport`` (a signed download link) and what the download route and the
CLI share with it: the request in the client's terms turned into an export plan, through
the list's own filter parsing and a segment's membership."""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.resolvers.arguments import plain_value
from crm_graphql.resolvers.filters import filter_within_segment
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.services import audit, exports
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.exports import CreateExportInput

_exports = "crm_graphql.schema.exports"

FILTER_TYPES = {"customers": "CustomerFilter", "companies": "CompanyFilter", "deals": "DealFilter"}
DOWNLOAD_PATH = "/exports/"


async def export_filter(
    schema: Any, actor: Actor, session: AsyncSession, request: exports.ExportRequest
) -> dict[str, Any] | None:
    """The list filter of ``request``: its ``filter`` parsed as the list's filter argument,
    within the members of its segment (customers only; one the actor may see)."""
    kind = exports.kind_of(request.type)
    if request.segment_id is not None and kind.name != "customers":
        raise Invalid("Segments are of customers: export `customers` with it", "segmentId")
    return await filter_within_segment(
        schema,
        actor,
        session,
        request.filter,
        request.segment_id,
        filter_type=FILTER_TYPES[kind.name],
    )


async def plan_of(
    schema: Any, actor: Actor, session: AsyncSession, request: exports.ExportRequest
) -> exports.ExportPlan:
    """The export ``request`` asks for, as ``actor`` may see it now."""
    kind = exports.kind_of(request.type)
    exports.check_format(request.format)
    filter = await export_filter(schema, actor, session, request)
    return await exports.plan_export(
        actor, session, kind, format=request.format, filter=filter, fields=request.fields
    )


@dataclass
class ExportLinkValue:
    """What ``ExportLink`` reads."""

    url: str
    expires_at: datetime
    type: Any  # the input's ExportType
    format: Any  # the input's ExportFormat
    fields: list[str]


def _request_of(input: "CreateExportInput") -> exports.ExportRequest:
    fields = input.fields
    return exports.ExportRequest(
        type=plain_value(input.type),
        format=plain_value(input.format),
        filter=input.filter,
        segment_id=input.segment_id,
        fields=tuple(fields) if fields is not None else None,
    )


async def create_export(
    info: Info,
    input: Annotated["CreateExportInput", strawberry.lazy(_exports)],
) -> Payload:
    context = info.context
    request = _request_of(input)
    ttl = input.expires_in_seconds
    base = (context.base_url or "").rstrip("/")

    async def action(actor: Actor, session: AsyncSession) -> ExportLinkValue:
        plan = await plan_of(info.schema, actor, session, request)
        token, expires = exports.sign_link(
            context.app.tokens.secret_key, actor, request, ttl_seconds=ttl
        )
        audit.record(
            actor,
            session,
            action="createExport",
            entity_type="Workspace",
            entity_id=actor.workspace_id,
            changes={
                "type": request.type,
                "format": request.format,
                "filter": request.filter,
                "segmentId": request.segment_id,
                "fields": plan.header,
                "expiresAt": expires.isoformat(),
            },
        )
        return ExportLinkValue(
            url=f"{base}{DOWNLOAD_PATH}{token}",
            expires_at=expires,
            type=input.type,
            format=input.format,
            fields=plan.header,
        )

    return await mutate_payload(info, "export", action)
