"""``startImport``: the file and options to the import service, then the runner woken."""

from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.models import Job
from crm_graphql.resolvers.arguments import plain_value
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.services import imports
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Invalid

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.imports import StartImportInput

_imports = "crm_graphql.schema.imports"


async def _content(info: Info, input: "StartImportInput") -> tuple[str, bytes]:
    """The file's name and bytes: the upload's, or ``content``; at most the server's
    upload size."""
    limit = info.context.app.settings.max_upload_bytes
    if (input.file is None) == (input.content is None):
        raise Invalid("Give the file as `file` (an upload) or as `content`", "file")
    if input.content is not None:
        data = input.content.encode()
        name = input.file_name or ""
    else:
        upload = input.file
        assert upload is not None  # exactly one of `file` and `content`, checked above
        if not hasattr(upload, "read"):
            raise Invalid("`file` must be an upload (a GraphQL multipart request)", "file")
        data = await upload.read(limit + 1)
        name = input.file_name or getattr(upload, "filename", None) or ""
    if len(data) > limit:
        raise Invalid(f"The file is larger than {limit} bytes", "file")
    return name, data


async def start_import(
    info: Info, input: Annotated["StartImportInput", strawberry.lazy(_imports)]
) -> Payload:
    async def start(actor: Actor, session: AsyncSession) -> Job:
        name, content = await _content(info, input)
        given = plain_value(input.format) if input.format else None
        options = imports.ImportOptions(
            type=input.type,
            format=imports.file_format(name, given),
            mapping={m.column: m.field for m in input.mapping or []},
            key=input.key,
            mode=input.mode,
            dry_run=input.dry_run,
        )
        return await imports.start_import(
            actor, session, options, file_name=name or "import", content=content
        )

    payload = await mutate_payload(info, "job", start)
    runner = info.context.app.jobs
    if runner is not None:
        runner.wake()
    return payload
