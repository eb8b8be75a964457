"""Products: the catalogue order lines refer to."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import CHAR, Index, Integer, Numeric, String, func
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
