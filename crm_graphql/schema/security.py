"""Partner API keys and the audit log in GraphQL (admins only; see docs/permissions.md)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry

from crm_graphql import enums
from crm_graphql.resolvers import security as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import DateTimeFilter, IDFilter, StringFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError, read_model
from crm_graphql.schema.scalars import JSON, exposed
from crm_graphql.schema.users import User

if TYPE_CHECKING:
    # exposed() registers and returns the domain's own enum class; say so to mypy.
    from crm_graphql.enums import ApiKeyScope
else:
    ApiKeyScope = exposed(
        enums.ApiKeyScope,
        "What a partner API key may do.",
        CUSTOMERS_READ="Read customers, companies, orders, products and activities.",
        CUSTOMERS_WRITE="Read, create, change and archive customers, companies, orders and "
        "products.",
        DEALS_READ="Read deals, pipelines, stages and activities.",
        DEALS_WRITE="Read, create, change, move and archive deals; log activities.",
        CONVERSATIONS_READ="Read conversations that are not private, and their messages.",
        CONVERSATIONS_WRITE="Start, assign and close conversations; post customers' messages "
        "and ratings.",
        WEBHOOKS_MANAGE="Create, change, rotate and delete webhook subscriptions.",
    )


@strawberry.type(description="A partner API key. Its secret is shown once, at creation.")
@read_model("ApiKey")
class ApiKey(Node):
    is_type_of = rows_of("ApiKey")

    name: str = strawberry.field(description="What the key is for.")
    prefix: str = strawberry.field(description="The public part of the token (`crm_<prefix>_…`).")
    created_at: datetime = strawberry.field(description="When the key was created.")
    last_used_at: datetime | None = strawberry.field(
        description="Last request made with the key (to the minute)."
    )
    expires_at: datetime | None = strawberry.field(description="When the key stops working.")
    revoked_at: datetime | None = strawberry.field(description="When the key was revoked.")
    rate_limit_per_minute: int | None = strawberry.field(
        description="The key's own rate budget, operations a minute (`setApiKeyBudget`); "
        "null: the server's default for API keys (`CRM_RATE_LIMIT_API_KEY_PER_MINUTE`)."
    )
    max_query_cost: int | None = strawberry.field(
        description="The key's own largest cost of one operation (`setApiKeyBudget`); "
        "null: the server's (`CRM_MAX_QUERY_COST`)."
    )

    scopes = strawberry.field(
        resolver=resolve.api_key_scopes,
        graphql_type=list[ApiKeyScope],
        description="What the key may do.",
    )


@strawberry.type(description="One audited change: who did what to which entity, and how.")
class AuditLogEntry(Node):
    is_type_of = rows_of("AuditLog")

    action: str = strawberry.field(description="The mutation, e.g. `updateCustomer`.")
    entity_type: str = strawberry.field(description="Type of the changed entity.")

    changes = strawberry.field(
        resolver=resolve.entry_changes,
        graphql_type=JSON,
        description="Changed fields: `{field: {before, after}}` (after only on creation), "
        "in the API's names: camelCase fields (`ownerId`), other objects by global ID, "
        "enum values as the schema spells them (`OPEN`).",
    )

    request_id: str | None = strawberry.field(description="The request's `X-Request-Id`.")
    created_at: datetime = strawberry.field(description="When the change was committed.")

    entity_id = strawberry.field(
        resolver=resolve.entity_global_id,
        graphql_type=strawberry.ID | None,
        description="Global ID of the changed entity.",
    )

    entity = strawberry.field(
        resolver=resolve.entity,
        graphql_type=Node | None,
        description="The changed entity, when it still exists and is readable.",
    )

    actor = strawberry.field(
        resolver=resolve.entry_actor,
        graphql_type=User | None,
        description="The user who made the change (null for API keys).",
    )

    api_key = strawberry.field(
        resolver=resolve.entry_api_key,
        graphql_type=ApiKey | None,
        description="The API key that made the change (null for users).",
    )

    client_ip = strawberry.field(
        resolver=resolve.entry_client_ip,
        graphql_type=str | None,
        description="The client's IP address.",
    )


@strawberry.input(description="Conditions on API keys; fields combine with AND.")
class ApiKeyFilter:
    and_: list[ApiKeyFilter] | None = strawberry.field(default=None, name="and")
    or_: list[ApiKeyFilter] | None = strawberry.field(default=None, name="or")
    not_: ApiKeyFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    name: StringFilter | None = None
    prefix: StringFilter | None = None
    created_at: DateTimeFilter | None = None
    last_used_at: DateTimeFilter | None = None
    revoked_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields API keys can be ordered by.")
class ApiKeyOrderField(enum.Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    LAST_USED_AT = "last_used_at"


@strawberry.input(description="One sort key for API keys.")
class ApiKeyOrder:
    field: ApiKeyOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Conditions on audit entries; fields combine with AND.")
class AuditLogFilter:
    and_: list[AuditLogFilter] | None = strawberry.field(default=None, name="and")
    or_: list[AuditLogFilter] | None = strawberry.field(default=None, name="or")
    not_: AuditLogFilter | None = strawberry.field(default=None, name="not")
    action: StringFilter | None = strawberry.field(
        default=None, description="The mutation that made the change, such as `updateCustomer`."
    )
    entity_type: StringFilter | None = strawberry.field(
        default=None, description="The type of the changed entity, such as `Customer`."
    )
    entity_id: IDFilter | None = strawberry.field(default=None, description="The changed entity.")
    actor_id: IDFilter | None = strawberry.field(default=None, description="The acting user.")
    api_key_id: IDFilter | None = strawberry.field(default=None, description="The acting key.")
    request_id: StringFilter | None = strawberry.field(
        default=None, description="The `X-Request-Id` of the request that made the change."
    )
    created_at: DateTimeFilter | None = strawberry.field(
        default=None, description="When the change was committed."
    )


@strawberry.enum(description="Fields audit entries can be ordered by.")
class AuditLogOrderField(enum.Enum):
    CREATED_AT = strawberry.enum_value("created_at", description="When the change was committed.")


@strawberry.input(description="One sort key for audit entries.")
class AuditLogOrder:
    field: AuditLogOrderField
    direction: OrderDirection = OrderDirection.DESC


@strawberry.input(description="A new partner API key.")
class CreateApiKeyInput:
    name: str = strawberry.field(description="What the key is for (shown in lists).")
    scopes: list[ApiKeyScope] = strawberry.field(description="What it may do; at least one.")
    expires_at: datetime | None = strawberry.field(
        default=None, description="When it stops working (never, when null)."
    )


@strawberry.input(description="The key to revoke.")
class RevokeApiKeyInput:
    id: strawberry.ID = strawberry.field(description="The API key to revoke.")


@strawberry.input(
    description="A key's budgets. Each is at most the server's own limit; null gives the "
    "key the server's default again."
)
class SetApiKeyBudgetInput:
    id: strawberry.ID = strawberry.field(description="The key.")
    rate_limit_per_minute: int | None = strawberry.field(
        default=None,
        description="Operations a minute (each operation of a batch, each WebSocket "
        "operation counts one); over it the key gets `RATE_LIMITED` (429, `Retry-After`).",
    )
    max_query_cost: int | None = strawberry.field(
        default=None,
        description="The largest cost of one operation (`extensions.cost."
        "requestedQueryCost`); over it the key gets `QUERY_TOO_COSTLY`.",
    )


@strawberry.type(description="Result of createApiKey.")
class CreateApiKeyPayload:
    api_key: ApiKey | None = strawberry.field(description="The new key.")
    token: str | None = strawberry.field(
        description="The secret token (`crm_<prefix>_<secret>`), shown this once: only its "
        "hash is kept. Send it as `Authorization: Bearer <token>`."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type(description="Result of a change to an API key.")
class ApiKeyPayload:
    api_key: ApiKey | None = strawberry.field(description="The key after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type
class SecurityQuery:
    api_keys = strawberry.field(
        resolver=resolve.api_keys_list,
        graphql_type=Connection[ApiKey],
        description="The workspace's partner API keys (admins).",
    )

    audit_log = strawberry.field(
        resolver=resolve.audit_log,
        graphql_type=Connection[AuditLogEntry],
        description="Every audited change of the workspace, newest first (admins).",
    )


@strawberry.type
class SecurityMutation:
    create_api_key = strawberry.mutation(
        resolver=resolve.create_api_key,
        graphql_type=CreateApiKeyPayload,
        description="Create a partner API key (admins). The token is shown once.",
    )

    revoke_api_key = strawberry.mutation(
        resolver=resolve.revoke_api_key,
        graphql_type=ApiKeyPayload,
        description="Revoke an API key for good (admins): its next request is refused and "
        "its WebSocket connections close. Idempotent.",
    )

    set_api_key_budget = strawberry.mutation(
        resolver=resolve.set_api_key_budget,
        graphql_type=ApiKeyPayload,
        description="Set a partner API key's rate and cost budgets (admins; audited). Its "
        "next request is held to them; open WebSocket connections keep the budgets they "
        "connected with.",
    )
