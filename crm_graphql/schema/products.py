"""Products in GraphQL: the catalogue type, its filter and order inputs, mutations."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import strawberry

from crm_graphql.resolvers import products as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import DateTimeFilter, DecimalFilter, IDFilter, StringFilter
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError


@strawberry.type(description="A product of the catalogue that order lines refer to.")
class Product(Node):
    is_type_of = rows_of("Product")

    sku: str = strawberry.field(
        description="Stock keeping unit, unique in the workspace ignoring case."
    )
    name: str = strawberry.field(description="Name shown to agents and on order lines.")
    category: str | None = strawberry.field(description="Catalogue category, such as Add-ons.")
    price: Decimal = strawberry.field(description="List price, as a decimal string.")
    currency: str = strawberry.field(description="ISO 4217 currency code of the price.")
    created_at: datetime = strawberry.field(description="When the product was added.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(
        description="Set when taken out of the catalogue (no new lines, no recommendations)."
    )
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")


@strawberry.input(description="Conditions on products; fields combine with AND.")
class ProductFilter:
    and_: list[ProductFilter] | None = strawberry.field(default=None, name="and")
    or_: list[ProductFilter] | None = strawberry.field(default=None, name="or")
    not_: ProductFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    sku: StringFilter | None = None
    name: StringFilter | None = None
    category: StringFilter | None = None
    price: DecimalFilter | None = None
    currency: StringFilter | None = None
    created_at: DateTimeFilter | None = None
    updated_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields products can be ordered by.")
class ProductOrderField(enum.Enum):
    NAME = "name"
    SKU = "sku"
    CATEGORY = "category"
    PRICE = "price"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


@strawberry.input(description="One sort key for products.")
class ProductOrder:
    field: ProductOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="A new product.")
class CreateProductInput:
    sku: str = strawberry.field(description="Unique in the workspace, ignoring case.")
    name: str
    price: Decimal = strawberry.field(description="List price (at most 2 decimals).")
    currency: str = strawberry.field(description="ISO 4217 currency code, such as EUR.")
    category: str | None = strawberry.UNSET


@strawberry.input(description="Changes to a product; fields left out stay as they are.")
class UpdateProductInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the product's version differs."
    )
    sku: str | None = strawberry.UNSET
    name: str | None = strawberry.UNSET
    category: str | None = strawberry.UNSET
    price: Decimal | None = strawberry.UNSET
    currency: str | None = strawberry.UNSET


@strawberry.type(description="Result of a product mutation.")
class ProductPayload:
    product: Product | None = strawberry.field(description="The product after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type
class ProductQuery:
    products = strawberry.field(
        resolver=resolve.products,
        graphql_type=Connection[Product],
        description="The product catalogue, by name unless ordered.",
    )


@strawberry.type
class ProductMutation:
    create_product = strawberry.mutation(
        resolver=resolve.create_product,
        graphql_type=ProductPayload,
        description="Add a product; past order lines with its SKU and no product link to it.",
    )

    update_product = strawberry.mutation(
        resolver=resolve.update_product,
        graphql_type=ProductPayload,
        description="Change a product's fields (lines already sold keep theirs).",
    )

    archive_product = strawberry.mutation(
        resolver=resolve.archive_product,
        graphql_type=ProductPayload,
        description="Take a product out of the catalogue (it stays readable by ID).",
    )
