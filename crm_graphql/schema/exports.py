"""Exports in GraphQL: ``createExport`` returns a signed, expiring download link."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from crm_graphql.resolvers import exports as resolve
from crm_graphql.schema.relay import UserError
from crm_graphql.schema.scalars import JSON


@strawberry.enum(description="A list that can be exported.")
class ExportType(enum.Enum):
    CUSTOMERS = strawberry.enum_value("customers", description="Customers (`customers`).")
    COMPANIES = strawberry.enum_value("companies", description="Companies (`companies`).")
    DEALS = strawberry.enum_value("deals", description="Deals (`deals`).")


@strawberry.enum(description="How an export is written.")
class ExportFormat(enum.Enum):
    CSV = strawberry.enum_value(
        "csv",
        description="Comma-separated values (RFC 4180) with a header line; lists and objects "
        "as JSON text; custom fields as `custom.<key>` columns.",
    )
    JSONL = strawberry.enum_value(
        "jsonl",
        description="JSON Lines: one JSON object per record, custom fields under `customFields`.",
    )


@strawberry.input(description="What to export: a list, filtered as the list is, in a format.")
class CreateExportInput:
    type: ExportType = strawberry.field(description="The list to export.")
    format: ExportFormat = strawberry.field(description="CSV or JSON Lines.")
    filter: JSON | None = strawberry.field(
        default=None,
        description="The list's filter (`CustomerFilter`, `CompanyFilter` or `DealFilter`) "
        "as JSON, exactly as the list's `filter` argument takes it. All rows when left out.",
    )
    segment_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Customers only: the members of this segment (saved or built-in), "
        "within `filter`, as `customers(segmentId:)` lists them.",
    )
    fields: list[str] | None = strawberry.field(
        default=None,
        description="The fields to write, by their API names (`customFields` for the custom "
        "fields marked exportable); every field when left out.",
    )
    expires_in_seconds: int = strawberry.field(
        default=900,
        description="How long the link works: 1 to 86,400 seconds (15 minutes by default).",
    )


@strawberry.type(description="A download link of an export.")
class ExportLink:
    url: str = strawberry.field(
        description="GET it to download the file, streamed, without other credentials. The "
        "download checks the creator's permissions again and reads the rows as they are "
        "then; an expired link answers 410, an altered one 403."
    )
    expires_at: datetime = strawberry.field(description="When the link stops working.")
    type: ExportType = strawberry.field(description="The list exported.")
    format: ExportFormat = strawberry.field(description="How the file is written.")
    fields: list[str] = strawberry.field(
        description="The file's columns (CSV header) in order; `custom.<key>` for custom fields."
    )


@strawberry.type(description="Result of `createExport`.")
class ExportPayload:
    export: ExportLink | None = strawberry.field(
        description="The link (null when the export cannot be made)."
    )
    errors: list[UserError] = strawberry.field(
        description="Why no link was made (empty on success)."
    )


@strawberry.type
class ExportMutation:
    create_export = strawberry.mutation(
        resolver=resolve.create_export,
        graphql_type=ExportPayload,
        description="Export a list (customers, companies or deals), filtered and segmented as "
        "the list is, to CSV or JSON Lines: returns a signed link that expires. The file is "
        "streamed at download, with the fields and values the caller reads through the API "
        "(sensitive custom fields null for viewers and API keys). Audited when made and when "
        "downloaded (with the number of rows).",
    )
