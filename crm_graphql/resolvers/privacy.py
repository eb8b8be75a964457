"""Data protection fields and mutations: sensitive custom fields, export, erasure."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from crm_graphql import models
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.mutations import Payload, mutate, mutate_payload, user_errors
from crm_graphql.services import privacy

# Annotations here are evaluated where they stand (no postponed annotations): Strawberry
# reads the GraphQL arguments from them, and the schema's types by lazy reference.
if TYPE_CHECKING:
    from crm_graphql.schema.privacy import CustomerDataInput, SetSensitiveCustomFieldsInput

_privacy = "crm_graphql.schema.privacy"


def custom_fields(root: models.Customer, info: Info) -> dict[str, Any]:
    actor = info.context.require_actor()
    return privacy.custom_fields_view(actor, info.context.app.keyring, root)


async def sensitive_custom_fields(info: Info) -> list[str]:
    actor = info.context.require_actor()
    async with info.context.read() as session:
        return await privacy.sensitive_custom_fields(actor, session)


@dataclass
class SensitiveFieldsPayload:
    keys: list[str]
    customers_changed: int
    errors: list[Any]


async def set_sensitive_custom_fields(
    info: Info,
    input: Annotated["SetSensitiveCustomFieldsInput", strawberry.lazy(_privacy)],
) -> SensitiveFieldsPayload:
    keys = list(input.keys)
    outcome = await mutate(
        info, lambda actor, s: privacy.set_sensitive_custom_fields(actor, s, keys)
    )
    if outcome.value is None:
        return SensitiveFieldsPayload([], 0, user_errors(outcome.errors))
    return SensitiveFieldsPayload(outcome.value.keys, outcome.value.customers_changed, [])


@dataclass
class ExportPayload:
    customer: models.Customer | None
    data: dict[str, Any] | None
    errors: list[Any]


async def export_customer_data(
    info: Info,
    input: Annotated["CustomerDataInput", strawberry.lazy(_privacy)],
) -> ExportPayload:
    id = decode_id(input.customer_id, "Customer")
    outcome = await mutate(info, lambda actor, s: privacy.export_customer_data(actor, s, id))
    customer, data = outcome.value or (None, None)
    return ExportPayload(customer, data, user_errors(outcome.errors))


async def erase_customer(
    info: Info,
    input: Annotated["CustomerDataInput", strawberry.lazy(_privacy)],
) -> Payload:
    id = decode_id(input.customer_id, "Customer")
    return await mutate_payload(
        info, "customer", lambda actor, s: privacy.erase_customer(actor, s, id)
    )
