"""credential revocations

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 12:30:00

A WebSocket must not outlive its credentials (issue 12, point 3). Every change that ends
credentials (``revokeApiKey``, a user disabled or given another role, ``logout``, a
reused refresh token) moves its workspace's counter ``workspace_credentials.seq`` by one,
under that row's lock (so the counter moves in commit order), and records what it ended
in ``credential_revocations``. The real-time hub reads the counter in the same statement
as the events it delivers: when the counter moved, it ends the connections concerned
before it sends anything of that read (services/credentials.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspace_credentials",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_credentials_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_workspace_credentials")),
    )
    op.create_table(
        "credential_revocations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.UUID(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_credential_revocations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credential_revocations")),
    )
    op.create_index(
        "ix_credential_revocations_workspace_seq",
        "credential_revocations",
        ["workspace_id", "seq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_credential_revocations_workspace_seq", table_name="credential_revocations")
    op.drop_table("credential_revocations")
    op.drop_table("workspace_credentials")
