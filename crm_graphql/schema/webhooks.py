"""Webhooks in GraphQL: subscriptions to the workspace's events and their deliveries."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry

from crm_graphql import enums
from crm_graphql.resolvers import webhooks as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import DateTimeFilter, IDFilter, StringFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError
from crm_graphql.schema.scalars import exposed

if TYPE_CHECKING:
    # exposed() registers and returns the domain's own enum class; say so to mypy.
    from crm_graphql.enums import DeliveryStatus as WebhookDeliveryStatus
else:
    WebhookDeliveryStatus = exposed(
        enums.DeliveryStatus,
        "Where a webhook delivery stands.",
        name="WebhookDeliveryStatus",
        PENDING="Not delivered yet: waiting for its first attempt or a retry.",
        DELIVERED="The receiver answered 2xx.",
        FAILED="Given up after the last attempt (see `attempts` and `lastError`).",
    )


@strawberry.type(description="One HTTP attempt of a webhook delivery.")
class WebhookDeliveryAttempt:
    attempt: int = strawberry.field(description="1 for the first attempt, then 2, 3 ...")
    status_code: int | None = strawberry.field(
        description="The receiver's HTTP status (null: no answer, see `error`)."
    )
    error: str | None = strawberry.field(
        description="Why the attempt failed (a non-2xx status, a timeout, a refused "
        "connection); null when it succeeded."
    )
    duration_ms: int | None = strawberry.field(
        description="How long the receiver took to answer, in milliseconds (null for "
        "attempts made before attempts were recorded: only their outcome was kept)."
    )
    attempted_at: datetime = strawberry.field(description="When the attempt started.")


@strawberry.type(
    description="One event sent (or to be sent) to a webhook. Retries and redeliveries "
    "keep the same delivery, whose `id` is sent as `X-CRM-Delivery`: receivers "
    "deduplicate by it."
)
class WebhookDelivery(Node):
    is_type_of = rows_of("WebhookDelivery")

    event_id: int = strawberry.field(description="The event's position in the event log.")
    attempts: int = strawberry.field(description="HTTP attempts made so far.")
    last_status_code: int | None = strawberry.field(description="HTTP status of the last try.")
    last_error: str | None = strawberry.field(description="Why the last attempt failed.")
    delivered_at: datetime | None = strawberry.field(description="When the receiver took it.")
    created_at: datetime = strawberry.field(description="When the event was queued for it.")

    delivery_id = strawberry.field(
        resolver=resolve.delivery_id,
        graphql_type=strawberry.ID,
        description="The delivery's raw UUID: `X-CRM-Delivery` and `id` of the bodies of "
        "webhooks on payload version 1 (version 2 sends the global `id`).",
    )

    status = strawberry.field(
        resolver=resolve.delivery_status,
        graphql_type=WebhookDeliveryStatus,
        description="Pending, delivered or failed.",
    )

    next_attempt_at = strawberry.field(
        resolver=resolve.next_attempt_at,
        graphql_type=datetime | None,
        description="When it is tried next (pending deliveries only).",
    )

    attempt_history = strawberry.field(
        resolver=resolve.delivery_attempts,
        graphql_type=list[WebhookDeliveryAttempt],
        description="Every attempt, oldest first: status code, error, duration and time.",
    )


@strawberry.type(
    description="A URL that receives the workspace's events as signed HTTP POSTs "
    '(`X-CRM-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).'
)
class Webhook(Node):
    is_type_of = rows_of("Webhook")

    url: str = strawberry.field(description="Where events are POSTed.")
    event_types: list[str] = strawberry.field(
        description="Event types delivered, e.g. `message.created`; empty: all."
    )
    is_active: bool = strawberry.field(description="Inactive webhooks receive nothing.")
    created_at: datetime = strawberry.field(description="When the webhook was created.")
    updated_at: datetime = strawberry.field(description="Last change.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")

    payload_version: int = strawberry.field(
        description="The form of the bodies it receives: 2, the API's names (global IDs, "
        "camelCase, the event catalogue in docs/events.md); 1, the stored form, kept for "
        "webhooks created before version 2."
    )

    deliveries = strawberry.field(
        resolver=resolve.deliveries,
        graphql_type=list[WebhookDelivery],
        description="The newest deliveries, newest first, each with its attempts "
        "(`attemptHistory`).",
    )


@strawberry.input(description="A new webhook.")
class CreateWebhookInput:
    url: str = strawberry.field(description="Absolute http(s) URL receiving the POSTs.")
    event_types: list[str] = strawberry.field(
        default_factory=list, description="Event types to deliver; empty: all."
    )
    is_active: bool = strawberry.field(default=True, description="Receives events at once.")
    payload_version: int = strawberry.field(
        default=2, description="The form of the bodies (see `Webhook.payloadVersion`)."
    )


@strawberry.input(description="Changes to a webhook; fields left out stay as they are.")
class UpdateWebhookInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the webhook's version differs."
    )
    url: str | None = strawberry.UNSET
    event_types: list[str] | None = strawberry.UNSET
    is_active: bool | None = strawberry.UNSET
    payload_version: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="Move the webhook to another payload version (1 or 2).",
    )


@strawberry.input(description="A webhook, by ID.")
class WebhookInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the webhook's version differs."
    )


@strawberry.type(description="Result of a webhook mutation.")
class WebhookPayload:
    webhook: Webhook | None = strawberry.field(description="The webhook after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type(description="A webhook with its signing secret, shown only this once.")
class WebhookSecretPayload:
    webhook: Webhook | None = strawberry.field(description="The webhook after the change.")
    secret: str | None = strawberry.field(
        description="The signing secret: store it now, it is never shown again."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.input(description="A webhook delivery to send again.")
class RedeliverWebhookDeliveryInput:
    id: strawberry.ID = strawberry.field(description="The delivery (`WebhookDelivery.id`).")


@strawberry.type(description="Result of redeliverWebhookDelivery.")
class WebhookDeliveryPayload:
    delivery: WebhookDelivery | None = strawberry.field(
        description="The delivery, pending again (its attempts follow in `attemptHistory`)."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.input(description="Conditions on webhooks; fields combine with AND.")
class WebhookFilter:
    and_: list[WebhookFilter] | None = strawberry.field(default=None, name="and")
    or_: list[WebhookFilter] | None = strawberry.field(default=None, name="or")
    not_: WebhookFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    url: StringFilter | None = None
    created_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields webhooks can be ordered by.")
class WebhookOrderField(enum.Enum):
    URL = "url"
    CREATED_AT = "created_at"


@strawberry.input(description="One sort key for webhooks.")
class WebhookOrder:
    field: WebhookOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.type
class WebhookQuery:
    webhooks = strawberry.field(
        resolver=resolve.webhooks,
        graphql_type=Connection[Webhook],
        description="Webhooks of the workspace, oldest first (admins and API keys with "
        "webhooks:manage).",
    )


@strawberry.type
class WebhookMutation:
    create_webhook = strawberry.mutation(
        resolver=resolve.create_webhook,
        graphql_type=WebhookSecretPayload,
        description="Subscribe a URL to the workspace's events.",
    )

    update_webhook = strawberry.mutation(
        resolver=resolve.update_webhook,
        graphql_type=WebhookPayload,
        description="Change a webhook's URL, event types or activity.",
    )

    delete_webhook = strawberry.mutation(
        resolver=resolve.delete_webhook,
        graphql_type=WebhookPayload,
        description="Delete a webhook and its delivery history.",
    )

    rotate_webhook_secret = strawberry.mutation(
        resolver=resolve.rotate_webhook_secret,
        graphql_type=WebhookSecretPayload,
        description="Give a webhook a new signing secret (shown once); the old one stops.",
    )

    redeliver_webhook_delivery = strawberry.mutation(
        resolver=resolve.redeliver,
        graphql_type=WebhookDeliveryPayload,
        description="Send a delivered or failed webhook delivery again, now (the same "
        "delivery id: receivers that kept it can tell); then retried like any delivery. "
        "`CONFLICT` while it is still pending.",
    )
