"""customers by stage and last activity

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-25 18:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_customers_workspace_stage_last_activity",
        "customers",
        [
            "workspace_id",
            "lifecycle_stage",
            sa.text("last_activity_at DESC NULLS LAST"),
            sa.text("id DESC"),
        ],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_customers_workspace_stage_last_activity", table_name="customers")
