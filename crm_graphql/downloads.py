"""``GET /exports/{token}``: the download of a link made by ``createExport``.

The token is the only credential: it is checked (signature, then expiry), its creator's
actor rebuilt as it stands now (a disabled user, a revoked key get 403), the request
planned again under that actor's permissions, and only then does the file start:
streamed from a server-side cursor in chunks, audited with its row count when it ends."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from crm_graphql.observability.requests import current_request_id
from crm_graphql.resolvers.context import AppState
from crm_graphql.resolvers.exports import DOWNLOAD_PATH, plan_of
from crm_graphql.schema import schema
from crm_graphql.services import exports
from crm_graphql.services.errors import DomainError

log = logging.getLogger(__name__)

_STATUS = {"LINK_INVALID": 403, "LINK_EXPIRED": 410, "FORBIDDEN": 403, "NOT_FOUND": 404}


def _refused(error: DomainError) -> Response:
    body = {"error": {"code": error.code, "message": error.message}}
    if error.field:
        body["error"]["field"] = error.field
    return JSONResponse(body, _STATUS.get(error.code, 400), headers={"Cache-Control": "no-store"})


async def export_download(request: Request) -> Response:
    app: AppState = request.app.state.crm
    request_id = current_request_id()
    try:
        claims = exports.open_link(app.tokens.secret_key, request.path_params["token"])
        async with app.sessionmaker() as session, session.begin():
            actor = await exports.creator_actor(session, claims, request_id=request_id)
            actor = dataclasses.replace(
                actor, client_ip=request.client.host if request.client else None
            )
            plan = await plan_of(schema, actor, session, claims.request)
    except DomainError as error:
        return _refused(error)

    async def body() -> AsyncIterator[bytes]:
        completed = False
        try:
            async with app.sessionmaker() as session, session.begin():
                async for chunk in exports.encoded(plan, session):
                    yield chunk
            completed = True
        finally:
            # Audited also when the client went away midway (with the rows sent so far).
            await asyncio.shield(_audit(app, plan, completed))

    name = f"{plan.kind.name}.{plan.format}"
    return StreamingResponse(
        body(),
        media_type=exports.MEDIA_TYPES[plan.format],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _audit(app: AppState, plan: exports.ExportPlan, completed: bool) -> None:
    try:
        async with app.sessionmaker() as session, session.begin():
            exports.record_export(plan, session, via="link", completed=completed)
    except Exception:  # the file went out; a failed audit write is logged, not raised
        log.exception("could not audit an export download")


def download_routes() -> list[Route]:
    return [Route(DOWNLOAD_PATH + "{token}", export_download, methods=["GET"])]
