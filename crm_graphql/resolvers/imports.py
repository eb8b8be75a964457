"""``startImport``: the file and options to the import service, then the runner woken."""

from __future__ import annotations

from typing import Any

from crm_graphql.enums import ImportMode, ImportType
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import Payload, mutate_payload
from crm_graphql.services import imports
from crm_graphql.services.errors import Invalid


async def _content(info: Info, input: Any) -> tuple[str, bytes]:
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
        if not hasattr(upload, "read"):
            raise Invalid("`file` must be an upload (a GraphQL multipart request)", "file")
        data = await upload.read(limit + 1)
        name = input.file_name or getattr(upload, "filename", None) or ""
    if len(data) > limit:
        raise Invalid(f"The file is larger than {limit} bytes", "file")
    return name, data


async def start_import(info: Info, input: Any) -> Payload:
    async def start(actor: Any, session: Any) -> Any:
        name, content = await _content(info, input)
        options = imports.ImportOptions(
            type=ImportType(input.type.value),
            format=imports.file_format(name, input.format.value if input.format else None),
            mapping={m.column: m.field for m in input.mapping or []},
            key=input.key,
            mode=ImportMode(input.mode.value),
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
