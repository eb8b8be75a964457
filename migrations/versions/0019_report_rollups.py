"""report rollups

Revision ID: 0019
Revises: 0016 (re-chain onto the previous head at merge)
Create Date: 2026-12-05 19:00:00

Orders summed per UTC calendar month, owner of the customer, status and currency
(``order_month_totals``), kept exact by triggers in the writing transaction, for revenue
per month and owner in any time zone (issue 13 point 8, S5;
docs/decisions/0021-report-speed.md):

- ``orders``: statement triggers with transition tables add the new rows and subtract
  the old ones (insert, update of any column, delete), archived orders left out; the
  changed orders' customers are locked ``FOR SHARE`` first, so an owner change waits for
  them (and they for it) and every order is counted under its customer's current owner;
  a TRUNCATE empties the totals;
- ``customers``: an owner change (SET NULL of a removed user included) moves the
  customer's orders from the old owner to the new one; deleting a customer subtracts its
  orders before the cascade deletes them (the orders' own trigger no longer finds the
  customer then, and leaves them);
- while a workspace is deleted (its rows cascade in any order) nothing is written: its
  totals go with it;
- upserts run in key order, so concurrent writers queue on the same rows instead of
  deadlocking.

Plus indexes for the sales report (S3): open deals per stage and currency, and deals
created in a period per pipeline, read from the index alone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "workspace_id, month, owner_id, status, currency"

# Signed contributions ``delta(workspace_id, month, owner_id, status, currency, n, amount)``
# added to the totals in key order; rows whose sums cancel out are not written.
UPSERT = f"""
    INSERT INTO order_month_totals AS t ({KEY}, order_count, amount)
    SELECT {KEY}, sum(n), sum(amount) FROM delta
    GROUP BY {KEY}
    HAVING sum(n) <> 0 OR sum(amount) <> 0
    ORDER BY {KEY}
    ON CONFLICT ({KEY}) DO UPDATE
    SET order_count = t.order_count + EXCLUDED.order_count,
        amount = t.amount + EXCLUDED.amount
"""


def _rows(table: str, sign: str) -> str:
    """The contributions of a transition table's orders under their customers' owners."""
    return f"""
        SELECT o.workspace_id, date_trunc('month', o.placed_at, 'UTC') AS month,
               c.owner_id, o.status, o.currency, {sign}1 AS n, {sign}o.amount AS amount
        FROM {table} o JOIN customers c ON c.id = o.customer_id
        JOIN workspaces w ON w.id = o.workspace_id
        WHERE o.archived_at IS NULL
    """


def _lock(tables: Sequence[str]) -> str:
    ids = " UNION ".join(f"SELECT customer_id FROM {t}" for t in tables)
    return f"PERFORM 1 FROM customers WHERE id IN ({ids}) ORDER BY id FOR SHARE;"


def _function(name: str, tables: Sequence[str], body: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {_lock(tables)}
            WITH delta AS ({body})
            {UPSERT};
            RETURN NULL;
        END $$
    """


def upgrade() -> None:
    op.create_table(
        "order_month_totals",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("month", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("order_count", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_order_month_totals_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "uq_order_month_totals_key",
        "order_month_totals",
        ["workspace_id", "month", "owner_id", "status", "currency"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.execute(
        _function("crm_order_totals_insert", ["new_rows"], _rows("new_rows", "+"))
    )
    op.execute(
        _function(
            "crm_order_totals_update",
            ["old_rows", "new_rows"],
            _rows("new_rows", "+") + " UNION ALL " + _rows("old_rows", "-"),
        )
    )
    op.execute(
        _function("crm_order_totals_delete", ["old_rows"], _rows("old_rows", "-"))
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION crm_order_totals_truncate() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM order_month_totals;
            RETURN NULL;
        END $$
        """
    )
    # A customer's orders under its owner, with ``sign``: what an owner change moves and
    # a deletion removes.
    customer_orders = """
        SELECT o.workspace_id, date_trunc('month', o.placed_at, 'UTC') AS month,
               x.owner_id, o.status, o.currency, x.sign AS n, x.sign * o.amount AS amount
        FROM orders o CROSS JOIN (VALUES {pairs}) AS x(owner_id, sign)
        WHERE o.workspace_id = OLD.workspace_id AND o.customer_id = OLD.id
          AND o.archived_at IS NULL
          AND EXISTS (SELECT 1 FROM workspaces w WHERE w.id = OLD.workspace_id)
    """
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_order_totals_owner_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            WITH delta AS ({customer_orders.format(pairs="(OLD.owner_id, -1), (NEW.owner_id, 1)")})
            {UPSERT};
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_order_totals_customer_deleted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            WITH delta AS ({customer_orders.format(pairs="(OLD.owner_id, -1)")})
            {UPSERT};
            RETURN OLD;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER order_totals_insert AFTER INSERT ON orders "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_order_totals_insert()"
    )
    op.execute(
        "CREATE TRIGGER order_totals_update AFTER UPDATE ON orders "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_order_totals_update()"
    )
    op.execute(
        "CREATE TRIGGER order_totals_delete AFTER DELETE ON orders "
        "REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_order_totals_delete()"
    )
    op.execute(
        "CREATE TRIGGER order_totals_truncate AFTER TRUNCATE ON orders "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_order_totals_truncate()"
    )
    op.execute(
        "CREATE TRIGGER order_totals_owner AFTER UPDATE OF owner_id ON customers "
        "FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id) "
        "EXECUTE FUNCTION crm_order_totals_owner_changed()"
    )
    op.execute(
        "CREATE TRIGGER order_totals_customer_delete BEFORE DELETE ON customers "
        "FOR EACH ROW EXECUTE FUNCTION crm_order_totals_customer_deleted()"
    )
    # The orders already stored.
    op.execute(
        f"""
        WITH delta AS ({_rows("orders", "+")})
        {UPSERT}
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS order_totals_customer_delete ON customers")
    op.execute("DROP TRIGGER IF EXISTS order_totals_owner ON customers")
    for name in ("truncate", "delete", "update", "insert"):
        op.execute(f"DROP TRIGGER IF EXISTS order_totals_{name} ON orders")
    for name in (
        "customer_deleted",
        "owner_changed",
        "truncate",
        "delete",
        "update",
        "insert",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS crm_order_totals_{name}()")
    op.drop_index("uq_order_month_totals_key", table_name="order_month_totals")
    op.drop_table("order_month_totals")
