"""segments

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-05 16:00:00

Saved customer segments (issue 13, point 3): a named CustomerFilter, shared with the
workspace or private to its owner, evaluated at read time. Built-in RFM segments are not
rows (docs/decisions/0013-segments-rfm.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("shared", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_segments_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_segments_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
    )
    op.create_index(
        "ix_segments_workspace_created", "segments", ["workspace_id", "created_at", "id"]
    )
    op.create_index("ix_segments_workspace_name", "segments", ["workspace_id", "name", "id"])
    op.create_index("ix_segments_workspace_owner", "segments", ["workspace_id", "owner_id"])


def downgrade() -> None:
    op.drop_index("ix_segments_workspace_owner", table_name="segments")
    op.drop_index("ix_segments_workspace_name", table_name="segments")
    op.drop_index("ix_segments_workspace_created", table_name="segments")
    op.drop_table("segments")
