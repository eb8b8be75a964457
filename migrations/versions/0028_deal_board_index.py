"""deals: an index for a deal board's columns

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 13:30:00

A deal board (a pipeline's stages, each with its first deals newest first and how many
it holds, issue 14's P4) counted each stage's live deals through
``ix_deals_workspace_stage`` and then read every counted row from the table to drop the
archived ones: 87 of a 90 ms board at S=10 (decision 0005). A partial index of the live
deals by stage and creation lets PostgreSQL count them from the index alone (once the
table's visibility map is set, which autovacuum keeps) and read a column's first page in
order, stopping after it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deals_workspace_stage_live_created",
        "deals",
        ["workspace_id", "stage_id", "created_at", "id"],
        postgresql_where=sa.text("archived_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deals_workspace_stage_live_created", table_name="deals")
