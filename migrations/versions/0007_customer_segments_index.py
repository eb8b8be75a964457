"""customer segments index

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-25 19:30:00

Filtered customer lists (name contains + lifecycle stage + created range, ordered by last
activity: issue 7's Q4) walked the last-activity index and filtered every row: fast for a
common name fragment, 50-75 ms at 100k customers for a rare one (about 44k rows read to
find 51). An index on (workspace, stage, created) bounds that case (a bitmap scan of the
stage and period, then a top-N sort: about 10 ms), and 1,000 statistics buckets on `name`
let the planner estimate `ILIKE '%fragment%'` from the histogram instead of a guess, so
it picks the walk for common fragments and the bitmap for rare ones (measured with
EXPLAIN ANALYZE on the S=10 bench data set: 74 ms -> 9 ms for '%us%', 4.8 ms kept for
'%an%').
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_customers_workspace_stage_created",
        "customers",
        ["workspace_id", "lifecycle_stage", "created_at"],
        unique=False,
    )
    op.execute("ALTER TABLE customers ALTER COLUMN name SET STATISTICS 1000")
    op.execute("ANALYZE customers")


def downgrade() -> None:
    op.execute("ALTER TABLE customers ALTER COLUMN name SET STATISTICS -1")
    op.drop_index("ix_customers_workspace_stage_created", table_name="customers")
