"""Data protection in GraphQL: sensitive custom fields, a customer's export and erasure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from crm_graphql.resolvers import privacy as resolve
from crm_graphql.schema.relay import UserError
from crm_graphql.schema.scalars import JSON

if TYPE_CHECKING:
    from crm_graphql.schema.customers import Customer, CustomerPayload

_customers = "crm_graphql.schema.customers"


@strawberry.input(description="The customer custom-field keys to keep encrypted.")
class SetSensitiveCustomFieldsInput:
    keys: list[str] = strawberry.field(
        description='Every sensitive key (replaces the list); e.g. `["nationalId"]`.'
    )


@strawberry.type(description="Result of setSensitiveCustomFields.")
class SensitiveCustomFieldsPayload:
    keys: list[str] = strawberry.field(description="The sensitive keys now in force.")
    customers_changed: int = strawberry.field(
        description="Customers whose stored values moved into or out of encryption."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.input(description="A customer, by ID.")
class CustomerDataInput:
    customer_id: strawberry.ID = strawberry.field(
        description="The customer whose data to export or erase."
    )


@strawberry.type(description="Everything held about a customer.")
class ExportCustomerDataPayload:
    customer: Annotated[Customer, strawberry.lazy(_customers)] | None = strawberry.field(
        description="The exported customer."
    )
    data: JSON | None = strawberry.field(
        description="One JSON document: profile (sensitive fields decrypted), company, "
        "orders, deals, activities, conversations with messages, audit entries."
    )
    errors: list[UserError] = strawberry.field(
        description="Why nothing was exported (empty on success)."
    )


@strawberry.type
class PrivacyQuery:
    @strawberry.field(
        description="Customer custom-field keys whose values are encrypted at rest and "
        "hidden (null) from viewers and API keys."
    )
    async def sensitive_custom_fields(self, info: Info) -> list[str]:
        return await resolve.sensitive_custom_fields(info)


@strawberry.type
class PrivacyMutation:
    @strawberry.mutation(
        description="Choose the sensitive customer custom fields (admins); stored values "
        "are encrypted or decrypted accordingly."
    )
    async def set_sensitive_custom_fields(
        self, info: Info, input: SetSensitiveCustomFieldsInput
    ) -> SensitiveCustomFieldsPayload:
        return await resolve.set_sensitive_custom_fields(info, input)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Everything held about a customer as one JSON document (admins and "
        "managers; audited)."
    )
    async def export_customer_data(
        self, info: Info, input: CustomerDataInput
    ) -> ExportCustomerDataPayload:
        return await resolve.export_customer_data(info, input)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Erase a customer's personal data for good (admins; idempotent). "
        "Orders, deals, counts and the audit trail stay; personal values are redacted."
    )
    async def erase_customer(
        self, info: Info, input: CustomerDataInput
    ) -> Annotated[CustomerPayload, strawberry.lazy(_customers)]:
        return await resolve.erase_customer(info, input)  # type: ignore[return-value]
