"""products and order lines

Revision ID: 0015
Revises: 0009
Create Date: 2026-12-05 16:10:00

Issue 13, point 6: a product catalogue (SKU unique per workspace, case-insensitive) and
order lines that refer to it. Existing orders get their lines from their ``items`` JSON:
an item whose SKU matches a product (case-insensitive) is linked to it, the others stay
free lines with the item's SKU and name (``services.products.ORDER_LINES_FROM_ITEMS``;
``createProduct`` links free lines of its SKU later). ``items`` stays as it is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from crm_graphql.services.products import order_lines_from_items

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("price", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        *_timestamps(),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_products_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_index(
        "uq_products_workspace_sku",
        "products",
        ["workspace_id", sa.text("lower(sku)")],
        unique=True,
    )
    op.create_index(
        "ix_products_workspace_created", "products", ["workspace_id", "created_at", "id"]
    )
    op.create_index("ix_products_workspace_name", "products", ["workspace_id", "name", "id"])
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=True),
        sa.Column("sku", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=12, scale=3), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        *_timestamps(),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_lines_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_order_lines_product_id_products"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_order_lines_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
    )
    op.create_index(
        "uq_order_lines_workspace_order_position",
        "order_lines",
        ["workspace_id", "order_id", "position"],
        unique=True,
    )
    op.create_index(
        "ix_order_lines_workspace_product", "order_lines", ["workspace_id", "product_id"]
    )
    op.create_index(
        "ix_order_lines_workspace_sku", "order_lines", ["workspace_id", sa.text("lower(sku)")]
    )
    op.execute(order_lines_from_items())


def downgrade() -> None:
    op.drop_index("ix_order_lines_workspace_sku", table_name="order_lines")
    op.drop_index("ix_order_lines_workspace_product", table_name="order_lines")
    op.drop_index("uq_order_lines_workspace_order_position", table_name="order_lines")
    op.drop_table("order_lines")
    op.drop_index("ix_products_workspace_name", table_name="products")
    op.drop_index("ix_products_workspace_created", table_name="products")
    op.drop_index("uq_products_workspace_sku", table_name="products")
    op.drop_table("products")
