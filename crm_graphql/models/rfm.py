"""The RFM snapshot: each live customer's scores as ``services.rfm.scores`` computes them,
kept per workspace with the order-history version they were computed from
(migration 0018, ``docs/decisions/0020-rfm-snapshot.md``). Derived data: a read uses
the rows only while their version is the workspace's current one."""

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
    SmallInteger,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from crm_graphql.models.base import Base


class RfmSnapshot(Base):
    """Which order-history version a workspace's ``rfm_scores`` rows were computed from."""

    __tablename__ = "rfm_snapshots"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refreshed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class RfmScore(Base):
    """One live customer with counted orders, scored over the whole workspace."""

    __tablename__ = "rfm_scores"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    # An erased or deleted customer's scores go with it, not at the next refresh.
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    order_count: Mapped[int] = mapped_column(Integer, nullable=False)
    first_order_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_order_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    currency: Mapped[str] = mapped_column(CHAR(3), nullable=False)
    currency_orders: Mapped[int] = mapped_column(Integer, nullable=False)
    total: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    r: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    f: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    m: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    fm: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    segment: Mapped[str] = mapped_column(String(32), nullable=False)

    __table_args__ = (
        Index("ix_rfm_scores_workspace_segment", "workspace_id", "segment", "customer_id"),
    )
