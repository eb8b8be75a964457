"""Webhook fields and mutations: arguments to service calls."""

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.enums import DeliveryStatus
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import Payload, mutate, mutate_payload, user_errors
from crm_graphql.services import webhooks as webhook_service

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.webhooks import (
        CreateWebhookInput,
        RedeliverWebhookDeliveryInput,
        UpdateWebhookInput,
        WebhookFilter,
        WebhookInput,
        WebhookOrder,
    )

_webhooks = "crm_graphql.schema.webhooks"

MAX_DELIVERIES = 100


async def webhooks(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: Annotated["WebhookFilter", strawberry.lazy(_webhooks)] | None = None,
    order_by: list[Annotated["WebhookOrder", strawberry.lazy(_webhooks)]] | None = None,
) -> ConnectionValue:
    return await root_list(
        info, webhook_service.WEBHOOKS, first, after, last, before, filter, order_by
    )


def deliveries_limit(first: int) -> int:
    """How many deliveries ``Webhook.deliveries(first)`` lists: ``first``, taken as 1 to
    ``MAX_DELIVERIES``."""
    return max(1, min(first, MAX_DELIVERIES))


async def deliveries(
    root: models.Webhook,
    info: Info,
    first: Annotated[
        int,
        strawberry.argument(
            description=f"How many of the newest deliveries (taken as 1 to {MAX_DELIVERIES})."
        ),
    ] = 20,
) -> list[models.WebhookDelivery]:
    """One statement for the deliveries of every webhook of the page."""
    limit = deliveries_limit(first)

    async def batch(actor: Any, session: Any, ids: Any) -> dict[Any, Any]:
        return await webhook_service.recent_deliveries(actor, session, ids, limit)

    loader = info.context.loaders.per_key(f"webhook_deliveries:{limit}", batch)
    found: list[models.WebhookDelivery] = await loader.load(root.id)
    return found


def delivery_id(root: models.WebhookDelivery) -> strawberry.ID:
    return strawberry.ID(str(root.id))


def delivery_status(root: models.WebhookDelivery) -> DeliveryStatus:
    return root.status


def next_attempt_at(root: models.WebhookDelivery) -> datetime | None:
    return root.next_attempt_at if root.status == DeliveryStatus.PENDING else None


async def delivery_attempts(
    root: models.WebhookDelivery, info: Info
) -> list[models.WebhookDeliveryAttempt]:
    """One statement for the attempts of every delivery listed."""
    loader = info.context.loaders.per_key("webhook_delivery_attempts", webhook_service.attempts_of)
    found: list[models.WebhookDeliveryAttempt] = await loader.load(root.id)
    return found


async def redeliver(
    info: Info, input: Annotated["RedeliverWebhookDeliveryInput", strawberry.lazy(_webhooks)]
) -> Payload:
    id = decode_id(input.id, "WebhookDelivery")
    return await mutate_payload(
        info, "delivery", lambda actor, s: webhook_service.redeliver(actor, s, id)
    )


@dataclass
class SecretPayload:
    """What ``WebhookSecretPayload`` reads: the webhook, its new secret, errors."""

    webhook: models.Webhook | None
    secret: str | None
    errors: list[Any]


async def create_webhook(
    info: Info, input: Annotated["CreateWebhookInput", strawberry.lazy(_webhooks)]
) -> SecretPayload:
    data = input_changes(input)
    outcome = await mutate(info, lambda actor, s: webhook_service.create_webhook(actor, s, **data))
    webhook, secret = outcome.value or (None, None)
    return SecretPayload(webhook, secret, user_errors(outcome.errors))


async def rotate_webhook_secret(
    info: Info, input: Annotated["WebhookInput", strawberry.lazy(_webhooks)]
) -> SecretPayload:
    id = decode_id(input.id, "Webhook")
    outcome = await mutate(
        info,
        lambda actor, s: webhook_service.rotate_webhook_secret(
            actor, s, id, expected_version=input.expected_version
        ),
    )
    webhook, secret = outcome.value or (None, None)
    return SecretPayload(webhook, secret, user_errors(outcome.errors))


async def update_webhook(
    info: Info, input: Annotated["UpdateWebhookInput", strawberry.lazy(_webhooks)]
) -> Payload:
    id = decode_id(input.id, "Webhook")
    data = input_changes(input)
    return await mutate_payload(
        info,
        "webhook",
        lambda actor, s: webhook_service.update_webhook(
            actor, s, id, data, expected_version=input.expected_version
        ),
    )


async def delete_webhook(
    info: Info, input: Annotated["WebhookInput", strawberry.lazy(_webhooks)]
) -> Payload:
    id = decode_id(input.id, "Webhook")
    return await mutate_payload(
        info,
        "webhook",
        lambda actor, s: webhook_service.delete_webhook(
            actor, s, id, expected_version=input.expected_version
        ),
    )
