"""The workspace in GraphQL: ``workspace`` (its id, name and, for admins, its settings)
and ``setWorkspaceEmailFrom`` (docs/decisions/0035-email-channel.md)."""

from __future__ import annotations

import strawberry

from crm_graphql.resolvers import workspaces as resolve
from crm_graphql.schema.relay import UserError


@strawberry.type(description="Who a workspace's mail is from.")
class EmailSender:
    address: str = strawberry.field(description="The mailbox, e.g. `support@acme.example`.")
    name: str | None = strawberry.field(
        description="The name shown with it; null: the workspace's name."
    )


@strawberry.type(description="The caller's workspace.")
class Workspace:
    id: strawberry.ID = strawberry.field(description="The workspace's global ID.")
    name: str = strawberry.field(description="The workspace's name.")
    email_from = strawberry.field(
        resolver=resolve.email_from,
        graphql_type=EmailSender | None,
        description="The From of the workspace's outgoing mail (admins; FORBIDDEN for "
        "others); null: the server's CRM_MAIL_FROM. Set with `setWorkspaceEmailFrom`.",
    )


@strawberry.input(description="The From of the workspace's outgoing mail.")
class SetWorkspaceEmailFromInput:
    address: str | None = strawberry.field(
        description="The mailbox mail is sent from (`support@acme.example`); the domain is "
        "stored in lower case and ASCII (IDNA). Null or blank: back to the server's "
        "CRM_MAIL_FROM. The domain must let the server's relay send for it (SPF, DKIM: "
        "README, Email channel)."
    )
    name: str | None = strawberry.field(
        default=None,
        description="The name shown with it (one line, at most 200 characters); null: the "
        "workspace's name. Agents' mail shows `Agent (name)`.",
    )


@strawberry.type(description="Result of setWorkspaceEmailFrom.")
class WorkspacePayload:
    workspace: Workspace | None = strawberry.field(description="The workspace, as changed.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type
class WorkspaceQuery:
    workspace = strawberry.field(
        resolver=resolve.workspace,
        graphql_type=Workspace,
        description="The caller's workspace: its id and name; its settings for admins.",
    )


@strawberry.type
class WorkspaceMutation:
    set_workspace_email_from = strawberry.mutation(
        resolver=resolve.set_workspace_email_from,
        graphql_type=WorkspacePayload,
        description="Set the From address (and name) of the workspace's outgoing mail "
        "(admins; audited). Mail queued afterwards uses it; Reply-To and threading are "
        "unchanged.",
    )
