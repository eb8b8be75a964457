"""Orders in GraphQL: the type, its filter and order inputs, mutations' inputs/payloads."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from crm_graphql.resolvers import orders as resolve
from crm_graphql.resolvers.nodes import rows_of
from crm_graphql.schema.filters import (
    DateTimeFilter,
    DecimalFilter,
    EnumFilter,
    IDFilter,
    StringFilter,
)
from crm_graphql.schema.relay import Connection, Node, OrderDirection, UserError, read_model
from crm_graphql.schema.scalars import JSON, OrderStatus

if TYPE_CHECKING:
    from crm_graphql.schema.products import Product

_customers = "crm_graphql.schema.customers"
_products = "crm_graphql.schema.products"


@strawberry.type(
    description="One line of an order: a product (null for a free line recorded before the "
    "catalogue had its SKU), how many and at what unit price."
)
class OrderLine:
    position: int = strawberry.field(description="Place of the line in the order, from 0.")
    sku: str | None = strawberry.field(description="SKU as sold.")
    name: str | None = strawberry.field(description="Name as sold.")
    quantity: Decimal = strawberry.field(description="How many, as a decimal string.")
    unit_price: Decimal | None = strawberry.field(
        description="Price of one, in the order's currency (null when the item had none)."
    )
    currency: str = strawberry.field(description="ISO 4217 code: the order's currency.")

    product = strawberry.field(
        resolver=resolve.line_product,
        graphql_type=Annotated["Product", strawberry.lazy(_products)] | None,
        description="The catalogue product (null for a free line).",
    )


@strawberry.input(
    description="An order line: a product by `productId` or `sku` (either one; both must "
    "agree), the quantity (1 when left out) and unit price (the product's price when left "
    "out and the product is priced in the order's currency)."
)
class OrderLineInput:
    product_id: strawberry.ID | None = strawberry.UNSET
    sku: str | None = strawberry.UNSET
    quantity: Decimal | None = strawberry.UNSET
    unit_price: Decimal | None = strawberry.UNSET
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: the product's name."
    )


@strawberry.type(description="A purchase a customer made.")
@read_model("Order")
class Order(Node):
    is_type_of = rows_of("Order")

    number: str = strawberry.field(description="Order number, unique in the workspace (ORD-00042).")
    status: OrderStatus = strawberry.field(description="Where the order stands.")
    amount: Decimal = strawberry.field(description="Total amount, as a decimal string.")
    currency: str = strawberry.field(description="ISO 4217 currency code of the amount.")
    placed_at: datetime = strawberry.field(description="When the customer placed the order.")
    items: JSON = strawberry.field(
        description="Order lines as JSON objects (sku, name, quantity ...)."
    )
    created_at: datetime = strawberry.field(description="When the order was recorded.")
    updated_at: datetime = strawberry.field(description="Last change.")
    archived_at: datetime | None = strawberry.field(description="Set when archived.")
    version: int = strawberry.field(description="Pass as `expectedVersion` to update safely.")

    lines = strawberry.field(
        resolver=resolve.lines,
        graphql_type=list[OrderLine],
        description="Order lines with their products (from `lines`, or from `items` where "
        "their SKU matches a product).",
    )


@strawberry.input(description="Conditions on orders; fields combine with AND.")
class OrderFilter:
    and_: list[OrderFilter] | None = strawberry.field(default=None, name="and")
    or_: list[OrderFilter] | None = strawberry.field(default=None, name="or")
    not_: OrderFilter | None = strawberry.field(default=None, name="not")
    id: IDFilter | None = None
    customer_id: IDFilter | None = None
    customer_owner_id: IDFilter | None = strawberry.field(
        default=None, description="The owner of the order's customer."
    )
    number: StringFilter | None = None
    status: EnumFilter[OrderStatus] | None = None
    amount: DecimalFilter | None = None
    currency: StringFilter | None = None
    placed_at: DateTimeFilter | None = None
    created_at: DateTimeFilter | None = None


@strawberry.enum(description="Fields orders can be ordered by.")
class OrderOrderField(enum.Enum):
    PLACED_AT = "placed_at"
    AMOUNT = "amount"
    NUMBER = "number"
    CREATED_AT = "created_at"


@strawberry.input(description="One sort key for orders.")
class OrderOrder:
    field: OrderOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="A new order.")
class CreateOrderInput:
    customer_id: strawberry.ID = strawberry.field(description="The customer who placed it.")
    amount: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="Total amount (at most 2 decimals). Left out: the total of `lines`.",
    )
    currency: str = strawberry.field(description="ISO 4217 currency code, such as EUR.")
    number: str | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: the workspace's next ORD-00042 number."
    )
    status: OrderStatus | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: PAID."
    )
    placed_at: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: now."
    )
    items: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="Order lines, a list of JSON objects (sku, name, quantity, unitPrice); "
        "prefer `lines`.",
    )
    lines: list[OrderLineInput] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Order lines referring to products (`items` is then written from them).",
    )


@strawberry.input(description="Changes to an order; fields left out stay as they are.")
class UpdateOrderInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="Fail with CONFLICT if the order's version differs."
    )
    customer_id: strawberry.ID | None = strawberry.UNSET
    number: str | None = strawberry.UNSET
    status: OrderStatus | None = strawberry.UNSET
    amount: Decimal | None = strawberry.UNSET
    currency: str | None = strawberry.UNSET
    placed_at: datetime | None = strawberry.UNSET
    items: JSON | None = strawberry.UNSET
    lines: list[OrderLineInput] | None = strawberry.field(
        default=strawberry.UNSET, description="Replaces the order's lines (and `items`)."
    )


@strawberry.type(description="Result of an order mutation.")
class OrderPayload:
    order: Order | None = strawberry.field(description="The order after the change.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing changed (empty on success)."
    )


@strawberry.type
class OrderQuery:
    orders = strawberry.field(
        resolver=resolve.orders,
        graphql_type=Connection[Order],
        description="Orders of the workspace, latest placed first unless ordered.",
    )


@strawberry.type
class OrderMutation:
    create_order = strawberry.mutation(
        resolver=resolve.create_order,
        graphql_type=OrderPayload,
        description="Record a purchase.",
    )

    update_order = strawberry.mutation(
        resolver=resolve.update_order,
        graphql_type=OrderPayload,
        description="Change an order's fields.",
    )

    archive_order = strawberry.mutation(
        resolver=resolve.archive_order,
        graphql_type=OrderPayload,
        description="Hide an order from lists and purchase summaries (it stays readable by ID).",
    )
