"""jobs (imports, bulk actions) and customers' external ids

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 04:20:00

Issue 17, point 1 (docs/decisions/0033-jobs-and-import.md):

- ``jobs``: background work of a workspace (an import, a bulk action), claimed by one
  server process at a time (``FOR UPDATE SKIP LOCKED``) and fenced by its ``claim``;
  ``job_files`` the file an uploaded import reads, apart so polling a job never reads it.
- ``customers.external_id``: the customer's id in another system, unique per workspace
  when given, an upsert key of imports. Existing customers have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def upgrade() -> None:
    uuid = postgresql.UUID(as_uuid=True)
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "jobs",
        sa.Column("id", uuid, nullable=False),
        sa.Column("workspace_id", uuid, nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *STATUSES, name="job_status", native_enum=False, length=32, create_constraint=True
            ),
            nullable=False,
        ),
        sa.Column("params", postgresql.JSONB(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("checkpoint", sa.Integer(), nullable=False),
        sa.Column("counts", postgresql.JSONB(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("result", postgresql.JSONB(none_as_null=True), nullable=True),
        sa.Column("errors", postgresql.JSONB(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("created_by_id", uuid, nullable=True),
        sa.Column("created_by_api_key_id", uuid, nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claim", uuid, nullable=True),
        sa.Column("heartbeat_at", stamp, nullable=True),
        sa.Column("started_at", stamp, nullable=True),
        sa.Column("finished_at", stamp, nullable=True),
        sa.Column("created_at", stamp, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", stamp, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_jobs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_jobs_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_jobs_created_by_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_workspace_created", "jobs", ["workspace_id", "created_at", "id"])
    op.create_index(
        "ix_jobs_runnable",
        "jobs",
        ["status", "created_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_table(
        "job_files",
        sa.Column("job_id", uuid, nullable=False),
        sa.Column("workspace_id", uuid, nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_files_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_job_files_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_files")),
    )
    op.add_column("customers", sa.Column("external_id", sa.String(200), nullable=True))
    op.create_index(
        "uq_customers_workspace_external_id",
        "customers",
        ["workspace_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_customers_workspace_external_id", "customers")
    op.drop_column("customers", "external_id")
    op.drop_table("job_files")
    op.drop_index("ix_jobs_runnable", "jobs")
    op.drop_index("ix_jobs_workspace_created", "jobs")
    op.drop_table("jobs")
