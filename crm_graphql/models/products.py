"""Products: the catalogue order lines refer to."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CHAR,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.models.base import Archivable, Base, WorkspaceScoped


class Product(WorkspaceScoped, Archivable, Base):
    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    price: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    __mapper_args__ = {"version_id_col": version, "eager_defaults": True}
    __table_args__ = (
        # SKUs are matched case-insensitively (order lines, imports): unique the same way.
        Index("uq_products_workspace_sku", "workspace_id", func.lower(sku), unique=True),
        Index("ix_products_workspace_created", "workspace_id", "created_at", "id"),
        Index("ix_products_workspace_name", "workspace_id", "name", "id"),
    )


# Co-purchase summaries for recommendations (migration 0018, docs/decisions/0020): derived
# from the counted orders' lines, used only while computed from the current order history.


class ProductPairSnapshot(Base):
    """Which order-history version a workspace's ``product_buyers`` and ``product_pairs``
    were computed from, and how many customers bought any product then."""

    __tablename__ = "product_pair_snapshots"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    buyers: Mapped[int] = mapped_column(Integer, nullable=False)
    refreshed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class ProductBuyers(Base):
    """How many customers bought a product (in a counted order)."""

    __tablename__ = "product_buyers"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    buyers: Mapped[int] = mapped_column(Integer, nullable=False)


class ProductPair(Base):
    """How many customers bought both products (each pair in both directions)."""

    __tablename__ = "product_pairs"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    other_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    together: Mapped[int] = mapped_column(Integer, nullable=False)
