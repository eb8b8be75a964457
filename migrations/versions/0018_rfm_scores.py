"""rfm scores

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 19:00:00

A per-workspace snapshot of the RFM scores (issue 13, point 8;
docs/decisions/0020-rfm-snapshot.md):

- ``order_history_versions``: a counter per workspace, raised by statement-level
  triggers in the writing transaction whenever the order history an order-derived
  snapshot reads changes (orders, order lines, customers' archival and deletion);
- ``rfm_scores`` and ``rfm_snapshots``: the scores of ``services.rfm.scores`` and the
  counter value they were computed from; ``product_buyers``, ``product_pairs`` and
  ``product_pair_snapshots``: the co-purchase counts recommendations read, likewise.
  Reads use the rows only while that value is the current one, so they stay what the
  read-time definitions give.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Raise the counter of each workspace of ``ids``, in workspace order (two statements
# touching the same workspaces lock their rows in the same order: no deadlock). A
# workspace being deleted (its rows cascading) is skipped: it has nothing left to count.
BUMP = """
CREATE FUNCTION crm_order_history_changed(ids uuid[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO order_history_versions AS v (workspace_id, version)
    SELECT w.id, 1 FROM workspaces w
    WHERE w.id = ANY(ids)
    ORDER BY w.id
    ON CONFLICT (workspace_id) DO UPDATE SET version = v.version + 1
$$
"""

# table -> columns whose change matters (besides inserts and deletes, which always do)
WATCHED = {
    "orders": ("customer_id", "status", "amount", "currency", "placed_at", "archived_at"),
    "order_lines": ("order_id", "product_id"),
    "customers": ("archived_at",),
}
# Inserting a customer changes no order history (it has no orders yet).
INSERT_MATTERS = {"orders": True, "order_lines": True, "customers": False}


def _function(table: str) -> str:
    changed = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in WATCHED[table])
    return f"""
CREATE FUNCTION crm_{table}_history_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM crm_order_history_changed(ARRAY(SELECT DISTINCT workspace_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM crm_order_history_changed(ARRAY(SELECT DISTINCT workspace_id FROM old_rows));
    ELSE
        PERFORM crm_order_history_changed(ARRAY(
            SELECT DISTINCT n.workspace_id FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE {changed}
        ));
    END IF;
    RETURN NULL;
END
$$
"""


def _triggers(table: str) -> list[str]:
    events = [("update", "UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows")]
    events.append(("delete", "DELETE", "OLD TABLE AS old_rows"))
    if INSERT_MATTERS[table]:
        events.append(("insert", "INSERT", "NEW TABLE AS new_rows"))
    return [
        f"CREATE TRIGGER {table}_history_{name} AFTER {event} ON {table} "
        f"REFERENCING {transition} FOR EACH STATEMENT "
        f"EXECUTE FUNCTION crm_{table}_history_changed()"
        for name, event, transition in events
    ]


def upgrade() -> None:
    op.create_table(
        "order_history_versions",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_order_history_versions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_order_history_versions")),
    )
    op.create_table(
        "rfm_snapshots",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column(
            "refreshed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_rfm_snapshots_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_rfm_snapshots")),
    )
    op.create_table(
        "rfm_scores",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("order_count", sa.Integer(), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("currency_orders", sa.Integer(), nullable=False),
        sa.Column("total", sa.Numeric(), nullable=False),
        sa.Column("r", sa.SmallInteger(), nullable=False),
        sa.Column("f", sa.SmallInteger(), nullable=False),
        sa.Column("m", sa.SmallInteger(), nullable=False),
        sa.Column("fm", sa.SmallInteger(), nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_rfm_scores_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_rfm_scores_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "customer_id", name=op.f("pk_rfm_scores")),
    )
    op.create_index(
        "ix_rfm_scores_workspace_segment",
        "rfm_scores",
        ["workspace_id", "segment", "customer_id"],
        unique=False,
    )
    op.create_table(
        "product_pair_snapshots",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.Column(
            "refreshed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_product_pair_snapshots_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_product_pair_snapshots")),
    )
    op.create_table(
        "product_buyers",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_buyers_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_product_buyers_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "product_id", name=op.f("pk_product_buyers")),
    )
    op.create_table(
        "product_pairs",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("other_id", sa.UUID(), nullable=False),
        sa.Column("together", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["other_id"],
            ["products.id"],
            name=op.f("fk_product_pairs_other_id_products"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_pairs_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_product_pairs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "product_id", "other_id", name=op.f("pk_product_pairs")
        ),
    )
    op.execute(BUMP)
    for table in WATCHED:
        op.execute(_function(table))
        for statement in _triggers(table):
            op.execute(statement)


def downgrade() -> None:
    for table in WATCHED:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_history_{name} ON {table}")
        op.execute(f"DROP FUNCTION crm_{table}_history_changed()")
    op.execute("DROP FUNCTION crm_order_history_changed(uuid[])")
    op.drop_table("product_pairs")
    op.drop_table("product_buyers")
    op.drop_table("product_pair_snapshots")
    op.drop_index("ix_rfm_scores_workspace_segment", table_name="rfm_scores")
    op.drop_table("rfm_scores")
    op.drop_table("rfm_snapshots")
    op.drop_table("order_history_versions")
