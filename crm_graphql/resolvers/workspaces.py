"""The workspace and its settings: arguments to ``services.workspaces``."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import to_global_id
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import mutate, user_errors
from crm_graphql.services import workspaces

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.workspaces import SetWorkspaceEmailFromInput

_workspaces = "crm_graphql.schema.workspaces"


@dataclass
class WorkspaceValue:
    """What ``Workspace`` reads."""

    id: str
    name: str
    row: models.Workspace


def _value(row: models.Workspace) -> WorkspaceValue:
    return WorkspaceValue(to_global_id("Workspace", row.id), row.name, row)


async def workspace(info: Info) -> WorkspaceValue:
    actor = info.context.require_actor()
    async with info.context.read() as session:
        return _value(await workspaces.get_workspace(actor, session))


def email_from(root: WorkspaceValue, info: Info) -> workspaces.EmailFrom | None:
    return workspaces.email_from_of(info.context.require_actor(), root.row)


@dataclass
class WorkspacePayloadValue:
    workspace: WorkspaceValue | None
    errors: list[Any]


async def set_workspace_email_from(
    info: Info,
    input: Annotated["SetWorkspaceEmailFromInput", strawberry.lazy(_workspaces)],
) -> WorkspacePayloadValue:
    outcome = await mutate(
        info,
        lambda actor, s: workspaces.set_email_from(
            actor, s, address=input.address, name=input.name
        ),
    )
    row = outcome.value
    return WorkspacePayloadValue(_value(row) if row else None, user_errors(outcome.errors))
