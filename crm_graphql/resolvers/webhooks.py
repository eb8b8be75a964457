"""Webhook fields and mutations: arguments to service calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.arguments import input_changes
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.lists import ConnectionValue, root_list
from crm_graphql.resolvers.mutations import Payload, mutate, mutate_payload, user_errors
from crm_graphql.services import webhooks as webhook_service

MAX_DELIVERIES = 100


async def webhooks(info: Info, *args: Any) -> ConnectionValue:
    return await root_list(info, webhook_service.WEBHOOKS, *args)


async def deliveries(info: Info, root: models.Webhook, first: int) -> list[models.WebhookDelivery]:
    """One statement for the deliveries of every webhook of the page."""
    limit = max(1, min(first, MAX_DELIVERIES))

    async def batch(actor: Any, session: Any, ids: Any) -> dict[Any, Any]:
        return await webhook_service.recent_deliveries(actor, session, ids, limit)

    loader = info.context.loaders.per_key(f"webhook_deliveries:{limit}", batch)
    return await loader.load(root.id)


async def delivery_attempts(
    info: Any, root: models.WebhookDelivery
) -> list[models.WebhookDeliveryAttempt]:
    """One statement for the attempts of every delivery listed."""
    loader = info.context.loaders.per_key("webhook_delivery_attempts", webhook_service.attempts_of)
    return await loader.load(root.id)  # type: ignore[no-any-return]


async def redeliver(info: Any, input: Any) -> Payload:
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


async def create_webhook(info: Info, input: Any) -> SecretPayload:
    data = input_changes(input)
    outcome = await mutate(info, lambda actor, s: webhook_service.create_webhook(actor, s, **data))
    webhook, secret = outcome.value or (None, None)
    return SecretPayload(webhook, secret, user_errors(outcome.errors))


async def rotate_webhook_secret(info: Info, input: Any) -> SecretPayload:
    id = decode_id(input.id, "Webhook")
    outcome = await mutate(
        info,
        lambda actor, s: webhook_service.rotate_webhook_secret(
            actor, s, id, expected_version=input.expected_version
        ),
    )
    webhook, secret = outcome.value or (None, None)
    return SecretPayload(webhook, secret, user_errors(outcome.errors))


async def update_webhook(info: Info, input: Any) -> Payload:
    id = decode_id(input.id, "Webhook")
    data = input_changes(input)
    return await mutate_payload(
        info,
        "webhook",
        lambda actor, s: webhook_service.update_webhook(
            actor, s, id, data, expected_version=input.expected_version
        ),
    )


async def delete_webhook(info: Info, input: Any) -> Payload:
    id = decode_id(input.id, "Webhook")
    return await mutate_payload(
        info,
        "webhook",
        lambda actor, s: webhook_service.delete_webhook(
            actor, s, id, expected_version=input.expected_version
        ),
    )
