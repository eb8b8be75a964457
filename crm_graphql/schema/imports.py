"""Imports in GraphQL: ``startImport`` queues a file of customers, companies, deals,
orders or activities as a job (docs/decisions/0033-jobs-and-import.md)."""

from __future__ import annotations

import enum

import strawberry
from strawberry.file_uploads import Upload

from crm_graphql.resolvers import imports as resolve
from crm_graphql.schema.jobs import JobPayload
from crm_graphql.schema.scalars import ImportMode, ImportType


@strawberry.enum(description="How an import file is written.")
class ImportFormat(enum.Enum):
    CSV = strawberry.enum_value(
        "csv", description="Comma-separated values, UTF-8, the first line naming the columns."
    )
    JSONL = strawberry.enum_value(
        "jsonl", description="JSON Lines: one JSON object per line, keys naming the fields."
    )


@strawberry.input(description="Which field a column of the file fills.")
class ImportColumnInput:
    column: str = strawberry.field(description="The column's header (or JSON key) in the file.")
    field: str = strawberry.field(
        description="The API's name of the field (`email`, `externalId`, `custom.tier`, "
        "`address.city`, `customerEmail` ...); empty: skip the column."
    )


@strawberry.input(
    description="An import: the file and how to read it. Send the file as `file` in a "
    "GraphQL multipart request (the Upload scalar), or small files as `content`."
)
class StartImportInput:
    type: ImportType = strawberry.field(description="What the rows are.")
    file: Upload | None = strawberry.field(
        default=None,
        description="The file, uploaded in a GraphQL multipart request "
        "(github.com/jaydenseric/graphql-multipart-request-spec).",
    )
    content: str | None = strawberry.field(
        default=None, description="The file's text, instead of `file` (for small files)."
    )
    file_name: str | None = strawberry.field(
        default=None, description="The file's name (default: the upload's); tells its format."
    )
    format: ImportFormat | None = strawberry.field(
        default=None, description="CSV or JSONL; left out: by the file name's extension, else CSV."
    )
    mapping: list[ImportColumnInput] | None = strawberry.field(
        default=None,
        description="Columns to map explicitly; the others match the API's field names "
        "by header (case, spaces, `_` and `-` ignored). A column matching no field fails "
        "the import unless mapped or skipped.",
    )
    key: str | None = strawberry.field(
        default=None,
        description="Customers: the upsert key, `email` (default), `externalId` or "
        "`custom:<field>`; a row whose key a customer has updates it, others create one. "
        "Companies match by `domain`; deals, orders and activities are created.",
    )
    mode: ImportMode = strawberry.field(
        default=ImportMode.GOOD_ROWS, description="What to do with bad rows."
    )
    dry_run: bool = strawberry.field(
        default=False, description="Check every row and report, writing nothing."
    )


@strawberry.type
class ImportMutation:
    start_import = strawberry.mutation(
        resolver=resolve.start_import,
        graphql_type=JobPayload,
        description="Queue an import of a CSV or JSON Lines file as a job: follow it with "
        "`job(id:)` or the `jobProgress` subscription; its `errors` name each bad row's "
        "line, field and reason, its `result` what was written. Needs the permission to "
        "write what it imports.",
    )
