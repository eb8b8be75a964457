"""Companies in GraphQL: the type, its filter and order inputs, mutations' inputs/payloads."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry

from crm_graphql.resolvers import companies as resolve
from crm_graphql.resolvers.mutations import UpsertPayload, UpsertResultValue
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import (
    CustomFieldFilter,
    DateTimeFilter,
    IDFilter,
    IntFilter,
    StringFilter,
    TagsFilter,
)
from crm_graphql.schema.relay import (
    Connection,
    Node,
    OrderDirection,
    UpsertRecordResult,
    UpsertSummary,
    UserError,
    read_model,
    upserts_of,
)
from crm_graphql.schema.scalars import JSON, Address, AddressInput, address_of

if TYPE_CHECKING:
    pass

_customers = "crm_graphql.schema.customers"
_deals = "crm_graphql.schema.deals"
_users = "crm_graphql.schema.users"


@strawberry.type(description="An organisation customers work for and deals are made with.")
@read_model("Company")
class Company(Node):
    is_type_of = rows_of("Company")

    name: str = strawberry.field(description="Company name.")
    domain: str | None = strawberry.field(description="Bare web domain, such as acme.com.")
    industry: str | None = strawberry.field(description="Industry, as entered.")
    employee_count: int | None = strawberry.field(description="Number of employees.")
    phone: str | None = strawberry.field(description="Main phone number as entered.")
    website: str | None = strawberry.field(description="Absolute http(s) address of the website.")
    tags: list[str] = strawberry.field(description="Free-form labels.")
    custom_fields: JSON = strawberry.field(description="Workspace-defined fields.")
    created_at: datetime = strawberry.field(description="When the company was added.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(description="Set when archived.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")

    @strawberry.field(description="Postal address.")
    def address(self) -> Address | None:
        return address_of(self.address)


@strawberry.input(description="Conditions on companies; fields combine with AND.")
class CompanyFilter:
    and_: list[CompanyFilter] | None = strawberry.field(default=None, name="and")
    or_: list[CompanyFilter] | None = strawberry.field(default=None, name="or")
    not_: CompanyFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    name: StringFilter | None = None
    domain: StringFilter | None = None
    industry: StringFilter | None = None
    employee_count: IntFilter | None = None
    owner_id: IDFilter | None = None
    tags: TagsFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None
    custom_fields: list[CustomFieldFilter] | None = strawberry.field(
        default=None,
        description="Conditions on typed custom fields (`customFieldDefinitions`), all "
        "of which hold.",
    )


@strawberry.enum(description="Fields companies can be ordered by.")
class CompanyOrderField(enum.Enum):
    NAME = "name"
    EMPLOYEE_COUNT = "employee_count"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


@strawberry.input(description="One sort key for companies.")
class CompanyOrder:
    field: CompanyOrderField | None = strawberry.field(
        default=None, description="A built-in field (or give `customField`)."
    )
    custom_field: str | None = strawberry.field(
        default=None,
        description="The key of a custom field of companies (not a multi select), instead "
        "of `field`.",
    )
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="A new company.")
class CreateCompanyInput:
    name: str
    domain: str | None = strawberry.UNSET
    industry: str | None = strawberry.UNSET
    employee_count: int | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    website: str | None = strawberry.UNSET
    address: AddressInput | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    custom_fields: JSON | None = strawberry.UNSET


@strawberry.input(description="Changes to a company; fields left out stay as they are.")
class UpdateCompanyInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the company's version differs."
    )
    name: str | None = strawberry.UNSET
    domain: str | None = strawberry.UNSET
    industry: str | None = strawberry.UNSET
    employee_count: int | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    website: str | None = strawberry.UNSET
    address: AddressInput | None = strawberry.UNSET
    owner_id: strawberry.ID | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    custom_fields: JSON | None = strawberry.UNSET


@strawberry.type(description="Result of a company mutation.")
class CompanyPayload:
    company: Company | None = strawberry.field(description="The company after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.input(description="Companies to create or update, matched by domain.")
class UpsertCompaniesInput:
    records: list[CreateCompanyInput] = strawberry.field(
        description="1 to 1,000 companies. A record whose domain (case ignored) a company "
        "already has updates that company (the oldest of several) with the fields it gives; "
        "any other creates one."
    )


@strawberry.type(description="What became of one record of `upsertCompanies`.")
class UpsertCompanyResult(UpsertRecordResult):
    is_type_of = upserts_of(UpsertResultValue)

    company: Company | None = strawberry.field(description="Null when the record failed.")


@strawberry.type(description="Result of `upsertCompanies`: one result per record, in order.")
class UpsertCompaniesPayload(UpsertSummary):
    is_type_of = upserts_of(UpsertPayload)

    results: list[UpsertCompanyResult] = strawberry.field(description="In the records' order.")


@strawberry.type
class CompanyQuery:
    companies = strawberry.field(
        resolver=resolve.companies,
        graphql_type=Connection[Company],
        description="Companies of the workspace, by name unless ordered.",
    )


@strawberry.type
class CompanyMutation:
    create_company = strawberry.mutation(
        resolver=resolve.create_company,
        graphql_type=CompanyPayload,
        description="Add a company.",
    )

    update_company = strawberry.mutation(
        resolver=resolve.update_company,
        graphql_type=CompanyPayload,
        description="Change a company's fields.",
    )

    archive_company = strawberry.mutation(
        resolver=resolve.archive_company,
        graphql_type=CompanyPayload,
        description="Hide a company from lists (its customers keep pointing at it).",
    )

    upsert_companies = strawberry.mutation(
        resolver=resolve.upsert_companies,
        graphql_type=UpsertCompaniesPayload,
        description="Create or update up to 1,000 companies in one call, matched by domain "
        "(case ignored). Each record succeeds or fails on its own (a failed one changes "
        "nothing) and is audited; counted against the caller's rate limit by records.",
    )
