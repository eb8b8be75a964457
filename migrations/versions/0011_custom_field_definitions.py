"""custom field definitions

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-05 16:30:00

Typed custom fields (issue 13, point 2; docs/decisions/0012-custom-fields.md): one row per
key a workspace declares for customers, companies or deals; deals get ``custom_fields``
like customers and companies; a jsonb_path_ops GIN index per table serves ``@>`` (the
custom-field equality filters).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("customers", "companies", "deals")


def upgrade() -> None:
    op.create_table(
        "custom_field_definitions",
        sa.Column(
            "entity",
            sa.Enum(
                "customer",
                "company",
                "deal",
                name="custom_field_entity",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "text",
                "number",
                "date",
                "boolean",
                "single_select",
                "multi_select",
                name="custom_field_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "options", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("searchable", sa.Boolean(), nullable=False),
        sa.Column("exportable", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
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
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_custom_field_definitions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_field_definitions")),
    )
    op.create_index(
        "uq_custom_field_definitions_workspace_entity_key",
        "custom_field_definitions",
        ["workspace_id", "entity", "key"],
        unique=True,
    )
    op.add_column(
        "deals",
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    for table in TABLES:
        op.create_index(
            f"ix_{table}_custom_fields",
            table,
            ["custom_fields"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"custom_fields": "jsonb_path_ops"},
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_custom_fields", table_name=table)
    op.drop_column("deals", "custom_fields")
    op.drop_index(
        "uq_custom_field_definitions_workspace_entity_key", table_name="custom_field_definitions"
    )
    op.drop_table("custom_field_definitions")
