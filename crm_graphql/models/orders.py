"""Orders: a customer's purchase history."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.enums import OrderStatus
from crm_graphql.models.base import Archivable, Base, WorkspaceScoped, text_enum


class Order(WorkspaceScoped, Archivable, Base):
    __tablename__ = "orders"

    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[OrderStatus] = mapped_column(
        text_enum(OrderStatus, "order_status"), nullable=False, default=OrderStatus.PAID
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    items: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        Index("uq_orders_workspace_number", "workspace_id", "number", unique=True),
        Index("ix_orders_workspace_customer_placed", "workspace_id", "customer_id", "placed_at"),
        Index("ix_orders_workspace_placed", "workspace_id", "placed_at", "id"),
        Index("ix_orders_workspace_created", "workspace_id", "created_at", "id"),
    )


class OrderLine(WorkspaceScoped, Base):
    """One line of an order: a product (or, for history recorded before the catalogue, a
    free line with only what the item said), how many and at what unit price. The line
    keeps its own SKU and name as sold, so renaming a product does not rewrite history."""

    __tablename__ = "order_lines"

    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    product_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("products.id", ondelete="SET NULL"), nullable=True
    )
    sku: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3), nullable=False)
    unit_price: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)

    __table_args__ = (
        Index(
            "uq_order_lines_workspace_order_position",
            "workspace_id",
            "order_id",
            "position",
            unique=True,
        ),
        Index("ix_order_lines_workspace_product", "workspace_id", "product_id"),
        Index("ix_order_lines_workspace_sku", "workspace_id", text("lower(sku)")),
    )


class OrderHistoryVersion(Base):
    """A counter per workspace, raised by triggers (migration 0018) in the transaction of
    every change an order-derived snapshot depends on: an order created, deleted, or
    changed in customer, status, amount, currency, time or archival; an order line
    created, deleted or moved to another product or order; a customer archived, restored
    or deleted. A snapshot computed from version ``v`` is exact while the counter is ``v``
    (docs/decisions/0020-rfm-snapshot.md)."""

    __tablename__ = "order_history_versions"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)


class OrderMonthTotal(Base):
    """Orders summed per UTC calendar month, owner of the customer, status and currency:
    a summary kept exact by triggers in every writing transaction (migration 0019,
    ``docs/decisions/0021-report-speed.md``), never written by the application. Archived
    orders are not in it. Revenue per month in any time zone reads it with the few orders
    that lie between a UTC month's start and the zone's (``services.order_totals``).

    No primary key of its own: the owner may be null, so the key is a unique index with
    NULLS NOT DISTINCT, which the triggers' upsert names."""

    __tablename__ = "order_month_totals"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    month: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The order's customer's owner (no foreign key: the customers' trigger moves the
    # totals when an owner changes or is removed, SET NULL included).
    owner_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)
    order_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric, nullable=False)

    __mapper_args__ = {
        "primary_key": [workspace_id, month, owner_id, status, currency],
        "eager_defaults": False,
    }
    __table_args__ = (
        Index(
            "uq_order_month_totals_key",
            "workspace_id",
            "month",
            "owner_id",
            "status",
            "currency",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )
