"""read event streams in txid order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:05:55.411102
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_events_workspace_topic_id"), table_name="events")
    op.create_index(
        "ix_events_workspace_topic_txid_id",
        "events",
        ["workspace_id", "topic", "txid", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_events_workspace_topic_txid_id", table_name="events")
    op.create_index(
        op.f("ix_events_workspace_topic_id"),
        "events",
        ["workspace_id", "topic", "id"],
        unique=False,
    )
