"""report rollups

Revision ID: 0019
Revises: 0018
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
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _upsert(table: str, key: str, sums: dict[str, str]) -> str:
    """Add the signed contributions of ``delta`` (the key's columns and the summed ones, as
    ``delta`` names them) to ``table``, in key order; sums that cancel out are not written."""
    columns = ", ".join(sums)
    totals = ", ".join(f"sum({v})" for v in sums.values())
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in sums.values())
    added = ", ".join(f"{c} = t.{c} + EXCLUDED.{c}" for c in sums)
    return f"""
        INSERT INTO {table} AS t ({key}, {columns})
        SELECT {key}, {totals} FROM delta
        GROUP BY {key}
        HAVING {nonzero}
        ORDER BY {key}
        ON CONFLICT ({key}) DO UPDATE SET {added}
    """


KEY = "workspace_id, month, owner_id, status, currency"
# Signed contributions ``delta(workspace_id, month, owner_id, status, currency, n, amount)``
UPSERT = _upsert("order_month_totals", KEY, {"order_count": "n", "amount": "amount"})


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


def _function(name: str, body: str, upsert: str = UPSERT, lock: str = "") -> str:
    return f"""
        CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {lock}
            WITH delta AS ({body})
            {upsert};
            RETURN NULL;
        END $$
    """


# ------------------------------------------------------------------------------ deals

STAGE_KEY = "workspace_id, pipeline_id, stage_id, owner_id, status, currency, close_month"
STAGE_UPSERT = _upsert("deal_stage_totals", STAGE_KEY, {"deal_count": "n", "amount": "amount"})
COHORT_KEY = "workspace_id, pipeline_id, owner_id, month, furthest_position"
CLOSE_KEY = "workspace_id, pipeline_id, owner_id, status, currency, month"
CLOSE_UPSERT = _upsert(
    "deal_close_totals", CLOSE_KEY, {"deal_count": "n", "amount": "amount", "seconds": "seconds"}
)
COHORT_UPSERT = _upsert("deal_cohort_totals", COHORT_KEY, {"deal_count": "n"})


def _stage_rows(table: str, sign: str) -> str:
    """Deals per stage, owner, status, currency and expected close month."""
    return f"""
        SELECT d.workspace_id, d.pipeline_id, d.stage_id, d.owner_id, d.status, d.currency,
               date_trunc('month', d.expected_close_date)::date AS close_month,
               {sign}1 AS n, {sign}d.amount AS amount
        FROM {table} d JOIN workspaces w ON w.id = d.workspace_id
        WHERE d.archived_at IS NULL
    """


def _close_rows(table: str, sign: str) -> str:
    """Closed deals per UTC month of closing, owner, status and currency, with the seconds
    from creation to closing (the cycle time)."""
    return f"""
        SELECT d.workspace_id, d.pipeline_id, d.owner_id, d.status, d.currency,
               date_trunc('month', d.closed_at, 'UTC') AS month, {sign}1 AS n,
               {sign}d.amount AS amount,
               -- Instants stored as -infinity / infinity (direct SQL) cannot be
               -- subtracted: such a deal's month is infinite too, outside any period.
               {sign}CASE WHEN isfinite(d.closed_at) AND isfinite(d.created_at)
                   THEN extract(epoch FROM d.closed_at - d.created_at) ELSE 0 END AS seconds
        FROM {table} d JOIN workspaces w ON w.id = d.workspace_id
        WHERE d.archived_at IS NULL AND d.closed_at IS NOT NULL
    """


def _furthest(deal: str, changes: str) -> str:
    """``services.deals.FURTHEST_STAGE_POSITION`` of ``deal`` with its moves in ``changes``
    (a relation of deal_stage_changes rows): the highest position among its current stage
    and the stages it left. Written as a join (one index scan of the moves and a key
    lookup per stage been in), not ``stage IN (moves)``, which rescans the moves per stage."""
    return f"""
        (SELECT max(s.position)
         FROM (SELECT {deal}.stage_id AS stage_id
               UNION ALL
               SELECT h.from_stage_id FROM {changes} h
               WHERE h.workspace_id = {deal}.workspace_id AND h.deal_id = {deal}.id) AS been
         JOIN stages s ON s.id = been.stage_id AND s.workspace_id = {deal}.workspace_id)
    """


def _cohort_rows(table: str, sign: str, changes: str = "deal_stage_changes") -> str:
    """Deals per UTC month of creation, owner and furthest stage position."""
    return f"""
        SELECT d.workspace_id, d.pipeline_id, d.owner_id,
               date_trunc('month', d.created_at, 'UTC') AS month,
               {_furthest("d", changes)} AS furthest_position, {sign}1 AS n
        FROM {table} d JOIN workspaces w ON w.id = d.workspace_id
        WHERE d.archived_at IS NULL
    """


def _moves_rows(moved: str, added: str | None, removed: str | None) -> str:
    """The deals whose moves changed (``moved``: their ids) leave their furthest position as
    it was before the statement (their moves then: the ones stored now but the ``added``
    rows, and the ``removed`` ones) and take the one they have now. Set-based (hashed
    anti-join and grouping), so a bulk load of moves costs one pass."""
    before = """
        SELECT h.deal_id, h.from_stage_id FROM deal_stage_changes h
        JOIN d ON d.id = h.deal_id AND h.workspace_id = d.workspace_id
    """
    after = before
    if added:
        before += f" WHERE NOT EXISTS (SELECT 1 FROM {added} a WHERE a.id = h.id)"
    if removed:
        before += f"""
            UNION ALL SELECT r.deal_id, r.from_stage_id FROM {removed} r JOIN d ON d.id = r.deal_id
        """
    return f"""
        WITH d AS MATERIALIZED (
            SELECT x.* FROM deals x JOIN workspaces w ON w.id = x.workspace_id
            WHERE x.archived_at IS NULL AND x.id IN (SELECT m.deal_id FROM {moved} AS m)
        ), been AS (
            SELECT d.id, 1 AS side, d.stage_id FROM d
            UNION ALL SELECT d.id, -1, d.stage_id FROM d
            UNION ALL SELECT b.deal_id, -1, b.from_stage_id FROM ({before}) b
            UNION ALL SELECT a.deal_id, 1, a.from_stage_id FROM ({after}) a
        ), furthest AS (
            SELECT been.id, been.side, max(s.position) AS position
            FROM been JOIN d ON d.id = been.id
            JOIN stages s ON s.id = been.stage_id AND s.workspace_id = d.workspace_id
            GROUP BY been.id, been.side
        )
        SELECT d.workspace_id, d.pipeline_id, d.owner_id,
               date_trunc('month', d.created_at, 'UTC') AS month,
               f.position AS furthest_position, f.side AS n
        FROM d JOIN furthest f ON f.id = d.id
    """


# Every deal of a workspace again (a stage's position changed, or a stage went with its
# moves): what the statement triggers cannot follow one row at a time. Writers of deals
# and moves wait meanwhile (a rare administrative change).
REBUILD_COHORTS = f"""
    CREATE OR REPLACE FUNCTION crm_deal_cohorts_rebuild(ws uuid) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        LOCK TABLE deals, deal_stage_changes IN SHARE ROW EXCLUSIVE MODE;
        DELETE FROM deal_cohort_totals WHERE workspace_id = ws;
        WITH delta AS (
            {_cohort_rows("(SELECT * FROM deals WHERE workspace_id = ws)", "+")}
        )
        {COHORT_UPSERT};
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
        _function("crm_order_totals_insert", _rows("new_rows", "+"), lock=_lock(["new_rows"]))
    )
    op.execute(
        _function(
            "crm_order_totals_update",
            _rows("new_rows", "+") + " UNION ALL " + _rows("old_rows", "-"),
            lock=_lock(["old_rows", "new_rows"]),
        )
    )
    op.execute(
        _function("crm_order_totals_delete", _rows("old_rows", "-"), lock=_lock(["old_rows"]))
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

    _upgrade_deals()


def _upgrade_deals() -> None:
    op.create_table(
        "deal_stage_totals",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("pipeline_id", sa.UUID(), nullable=False),
        sa.Column("stage_id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("close_month", sa.Date(), nullable=True),
        sa.Column("deal_count", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_deal_stage_totals_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "uq_deal_stage_totals_key",
        "deal_stage_totals",
        STAGE_KEY.split(", "),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "deal_cohort_totals",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("pipeline_id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("month", sa.DateTime(timezone=True), nullable=False),
        sa.Column("furthest_position", sa.Integer(), nullable=True),
        sa.Column("deal_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_deal_cohort_totals_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "uq_deal_cohort_totals_key",
        "deal_cohort_totals",
        COHORT_KEY.split(", "),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "deal_close_totals",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("pipeline_id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("month", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deal_count", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("seconds", sa.Numeric(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_deal_close_totals_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "uq_deal_close_totals_key",
        "deal_close_totals",
        CLOSE_KEY.split(", "),
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.execute(REBUILD_COHORTS)
    # Deals: their stage totals, and their cohort under their current moves. A deleted
    # deal's moves go with it (the cascade runs before statement triggers), so its cohort
    # row is taken out before, row by row.
    op.execute(
        _function(
            "crm_deal_totals_insert",
            _stage_rows("new_rows", "+"),
            upsert=STAGE_UPSERT
            + "; WITH delta AS ("
            + _cohort_rows("new_rows", "+")
            + ")"
            + COHORT_UPSERT
            + "; WITH delta AS ("
            + _close_rows("new_rows", "+")
            + ")"
            + CLOSE_UPSERT,
        )
    )
    op.execute(
        _function(
            "crm_deal_totals_update",
            _stage_rows("new_rows", "+") + " UNION ALL " + _stage_rows("old_rows", "-"),
            upsert=STAGE_UPSERT
            + "; WITH delta AS ("
            + _cohort_rows("new_rows", "+")
            + " UNION ALL "
            + _cohort_rows("old_rows", "-")
            + ")"
            + COHORT_UPSERT
            + "; WITH delta AS ("
            + _close_rows("new_rows", "+")
            + " UNION ALL "
            + _close_rows("old_rows", "-")
            + ")"
            + CLOSE_UPSERT,
        )
    )
    op.execute(
        _function(
            "crm_deal_totals_delete",
            _stage_rows("old_rows", "-"),
            upsert=STAGE_UPSERT
            + "; WITH delta AS ("
            + _close_rows("old_rows", "-")
            + ")"
            + CLOSE_UPSERT,
        )
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_deal_cohorts_deal_deleted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            WITH delta AS ({_cohort_rows("(SELECT OLD.*) ", "-")})
            {COHORT_UPSERT};
            RETURN OLD;
        END $$
        """
    )
    # Moves: the deals they belong to are locked FOR SHARE (a deal's update waits for them,
    # and they for it), then leave their furthest position as it was and take the new one.
    lock = "PERFORM 1 FROM deals WHERE id IN ({ids}) ORDER BY id FOR SHARE;"
    op.execute(
        _function(
            "crm_deal_cohorts_moves_insert",
            _moves_rows("new_rows", added="new_rows", removed=None),
            upsert=COHORT_UPSERT,
            lock=lock.format(ids="SELECT deal_id FROM new_rows"),
        )
    )
    op.execute(
        _function(
            "crm_deal_cohorts_moves_update",
            _moves_rows(
                "(SELECT deal_id FROM new_rows UNION SELECT deal_id FROM old_rows)",
                added="new_rows",
                removed="old_rows",
            ),
            upsert=COHORT_UPSERT,
            lock=lock.format(ids="SELECT deal_id FROM new_rows UNION SELECT deal_id FROM old_rows"),
        )
    )
    op.execute(
        _function(
            "crm_deal_cohorts_moves_delete",
            _moves_rows("old_rows", added=None, removed="old_rows"),
            upsert=COHORT_UPSERT,
            lock=lock.format(ids="SELECT deal_id FROM old_rows"),
        )
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION crm_deal_cohorts_stages_moved() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE ws uuid;
        BEGIN
            FOR ws IN SELECT DISTINCT n.workspace_id FROM new_rows n JOIN old_rows o
                      ON o.id = n.id WHERE o.position IS DISTINCT FROM n.position
                      ORDER BY 1 LOOP
                PERFORM crm_deal_cohorts_rebuild(ws);
            END LOOP;
            RETURN NULL;
        END $$
        """
    )
    # A deleted stage takes its moves with it (a cascade whose statement triggers may fire
    # before or after this one's): the workspace is rebuilt when the transaction commits,
    # after all of them.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION crm_deal_cohorts_stage_deleted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM workspaces WHERE id = OLD.workspace_id) THEN
                PERFORM crm_deal_cohorts_rebuild(OLD.workspace_id);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION crm_deal_totals_truncate() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM deal_stage_totals;
            DELETE FROM deal_cohort_totals;
            DELETE FROM deal_close_totals;
            RETURN NULL;
        END $$
        """
    )
    for event, tables in (
        ("insert", "NEW TABLE AS new_rows"),
        ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("delete", "OLD TABLE AS old_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER deal_totals_{event} AFTER {event.upper()} ON deals "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION crm_deal_totals_{event}()"
        )
        op.execute(
            f"CREATE TRIGGER deal_cohorts_{event} AFTER {event.upper()} ON deal_stage_changes "
            f"REFERENCING {tables} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION crm_deal_cohorts_moves_{event}()"
        )
    op.execute(
        "CREATE TRIGGER deal_cohorts_deal_delete BEFORE DELETE ON deals "
        "FOR EACH ROW EXECUTE FUNCTION crm_deal_cohorts_deal_deleted()"
    )
    op.execute(
        "CREATE TRIGGER deal_totals_truncate AFTER TRUNCATE ON deals "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_deal_totals_truncate()"
    )
    op.execute(
        "CREATE TRIGGER deal_cohorts_stages_update AFTER UPDATE ON stages "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION crm_deal_cohorts_stages_moved()"
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER deal_cohorts_stage_delete AFTER DELETE ON stages "
        "DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION crm_deal_cohorts_stage_deleted()"
    )
    # The deals already stored.
    op.execute(f"WITH delta AS ({_stage_rows('deals', '+')}) {STAGE_UPSERT}")
    op.execute(f"WITH delta AS ({_cohort_rows('deals', '+')}) {COHORT_UPSERT}")
    op.execute(f"WITH delta AS ({_close_rows('deals', '+')}) {CLOSE_UPSERT}")
    # The sales report's closed deals of a period, from the index alone.
    op.create_index(
        "ix_deals_workspace_pipeline_closed_cover",
        "deals",
        ["workspace_id", "pipeline_id", "closed_at"],
        postgresql_include=["status", "currency", "amount", "created_at", "archived_at"],
    )
    op.drop_index("ix_deals_workspace_pipeline_closed", table_name="deals")


def _downgrade_deals() -> None:
    op.create_index(
        "ix_deals_workspace_pipeline_closed", "deals", ["workspace_id", "pipeline_id", "closed_at"]
    )
    op.drop_index("ix_deals_workspace_pipeline_closed_cover", table_name="deals")
    op.execute("DROP TRIGGER IF EXISTS deal_cohorts_stage_delete ON stages")
    op.execute("DROP TRIGGER IF EXISTS deal_cohorts_stages_update ON stages")
    op.execute("DROP TRIGGER IF EXISTS deal_totals_truncate ON deals")
    op.execute("DROP TRIGGER IF EXISTS deal_cohorts_deal_delete ON deals")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS deal_totals_{event} ON deals")
        op.execute(f"DROP TRIGGER IF EXISTS deal_cohorts_{event} ON deal_stage_changes")
        op.execute(f"DROP FUNCTION IF EXISTS crm_deal_totals_{event}()")
        op.execute(f"DROP FUNCTION IF EXISTS crm_deal_cohorts_moves_{event}()")
    for name in (
        "crm_deal_totals_truncate",
        "crm_deal_cohorts_stages_moved",
        "crm_deal_cohorts_stage_deleted",
        "crm_deal_cohorts_deal_deleted",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP FUNCTION IF EXISTS crm_deal_cohorts_rebuild(uuid)")
    op.drop_table("deal_close_totals")
    op.drop_table("deal_cohort_totals")
    op.drop_table("deal_stage_totals")


def downgrade() -> None:
    _downgrade_deals()
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
