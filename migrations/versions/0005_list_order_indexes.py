"""list order indexes: customers by last activity (newest first), a customer's deals by creation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 18:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_customers_workspace_last_activity_desc",
        "customers",
        [
            "workspace_id",
            sa.text("last_activity_at DESC NULLS LAST"),
            sa.text("id DESC"),
        ],
        unique=False,
    )
    op.drop_index("ix_deals_workspace_customer", table_name="deals")
    op.create_index(
        "ix_deals_workspace_customer_created",
        "deals",
        ["workspace_id", "customer_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_deals_workspace_customer_created", table_name="deals")
    op.create_index(
        "ix_deals_workspace_customer", "deals", ["workspace_id", "customer_id"], unique=False
    )
    op.drop_index("ix_customers_workspace_last_activity_desc", table_name="customers")
