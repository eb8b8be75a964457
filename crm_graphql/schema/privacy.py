"""Data protection in GraphQL: sensitive custom fields, a customer's export and erasure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

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
    sensitive_custom_fields = strawberry.field(
        resolver=resolve.sensitive_custom_fields,
        graphql_type=list[str],
        description="Customer custom-field keys whose values are encrypted at rest and "
        "hidden (null) from viewers and API keys.",
    )


@strawberry.type
class PrivacyMutation:
    set_sensitive_custom_fields = strawberry.mutation(
        resolver=resolve.set_sensitive_custom_fields,
        graphql_type=SensitiveCustomFieldsPayload,
        description="Choose the sensitive customer custom fields (admins); stored values "
        "are encrypted or decrypted accordingly.",
    )

    export_customer_data = strawberry.mutation(
        resolver=resolve.export_customer_data,
        graphql_type=ExportCustomerDataPayload,
        description="Everything held about a customer as one JSON document (admins and "
        "managers; audited).",
    )

    erase_customer = strawberry.mutation(
        resolver=resolve.erase_customer,
        graphql_type=Annotated["CustomerPayload", strawberry.lazy(_customers)],
        description="Erase a customer's personal data for good (admins; idempotent). "
        "Orders, deals, counts and the audit trail stay; personal values are redacted.",
    )
