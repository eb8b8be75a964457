"""search: updates of customers, companies and deals indexed per statement

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 10:30:00

Revision 0010 (and 0016, with custom fields) re-indexed an updated customer, company or
deal with a row trigger calling ``crm_search_refresh_<table>(ARRAY[NEW.id])``: an SQL
function, planned again at every call, so a statement updating 1,000 customers planned
its search upsert 1,000 times (4.2 ms a row, most of an import's update pass;
docs/decisions/0033-jobs-and-import.md). Inserts were already indexed per statement.

Now ``search_update`` is a statement trigger with transition tables, like the change
feed's: one refresh over the rows whose searchable values changed. Which values: the
columns of revision 0016's triggers, and of ``custom_fields`` only the keys the
workspace's definitions make searchable (a change of another key leaves the document as
it is, so it is not rebuilt). A company's new name still re-indexes its customers.

Transition tables cannot go with a column list (``UPDATE OF``), so the trigger runs for
every update statement of the table and finds the changed rows itself; an update of
other columns (``last_activity_at``) costs a join of its transition tables.
Conversations and activities keep their row triggers (updated one at a time).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (search entity, the columns of its document besides custom_fields), as
# revision 0016 watches them.
WATCHED = {
    "customers": ("customer", ("name", "email", "phone", "company_id", "tags")),
    "companies": ("company", ("name", "domain")),
    "deals": ("deal", ("title",)),
}

# A company's name is in its customers' documents.
EXTRA = {
    "companies": """
        IF EXISTS (SELECT FROM new_rows n JOIN old_rows o ON o.id = n.id
                   WHERE o.name IS DISTINCT FROM n.name) THEN
            PERFORM crm_search_refresh_customers(ARRAY(
                SELECT c.id FROM customers c
                JOIN new_rows n ON c.workspace_id = n.workspace_id AND c.company_id = n.id
                JOIN old_rows o ON o.id = n.id
                WHERE o.name IS DISTINCT FROM n.name));
        END IF;
    """,
}

UPDATED = """
    CREATE FUNCTION crm_search_{table}_updated() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    DECLARE
        changed uuid[];
    BEGIN
        WITH searchable AS (
            SELECT f.workspace_id, array_agg(f.key ORDER BY f.created_at, f.id) AS keys
            FROM custom_field_definitions f
            WHERE f.entity = '{entity}' AND f.searchable AND f.archived_at IS NULL
              AND f.workspace_id IN (SELECT workspace_id FROM new_rows)
            GROUP BY f.workspace_id
        )
        SELECT array_agg(n.id) INTO changed
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        LEFT JOIN searchable k ON k.workspace_id = n.workspace_id
        WHERE {changed}
           OR CASE WHEN o.custom_fields IS DISTINCT FROM n.custom_fields
                   THEN crm_search_custom_text(o.custom_fields, k.keys)
                        IS DISTINCT FROM crm_search_custom_text(n.custom_fields, k.keys)
                   ELSE false END;
        IF changed IS NOT NULL THEN
            PERFORM crm_search_refresh_{table}(changed);
        END IF;
        {extra}
        RETURN NULL;
    END $fn$
"""

# Revision 0010's row functions, for the downgrade.
PREVIOUS_EXTRA = {
    "companies": """
        IF TG_OP = 'UPDATE' AND OLD.name IS DISTINCT FROM NEW.name THEN
            PERFORM crm_search_refresh_customers(ARRAY(
                SELECT id FROM customers
                WHERE workspace_id = NEW.workspace_id AND company_id = NEW.id));
        END IF;
    """,
}
PREVIOUS_CHANGED = """
    CREATE FUNCTION crm_search_{table}_changed() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
        PERFORM crm_search_refresh_{table}(ARRAY[NEW.id]);
        {extra}
        RETURN NULL;
    END $fn$
"""


def _execute(sql: str) -> None:
    op.get_bind().exec_driver_sql(sql)


def upgrade() -> None:
    for table, (entity, columns) in WATCHED.items():
        changed = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in columns)
        _execute(
            UPDATED.format(table=table, entity=entity, changed=changed, extra=EXTRA.get(table, ""))
        )
        _execute(f"DROP TRIGGER search_update ON {table}")
        _execute(f"DROP FUNCTION crm_search_{table}_changed()")
        _execute(
            f"CREATE TRIGGER search_update AFTER UPDATE ON {table} "
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION crm_search_{table}_updated()"
        )


def downgrade() -> None:
    for table, (_, columns) in WATCHED.items():
        watched = (*columns, "custom_fields")
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in watched)
        _execute(PREVIOUS_CHANGED.format(table=table, extra=PREVIOUS_EXTRA.get(table, "")))
        _execute(f"DROP TRIGGER search_update ON {table}")
        _execute(f"DROP FUNCTION crm_search_{table}_updated()")
        _execute(
            f"CREATE TRIGGER search_update AFTER UPDATE OF {', '.join(watched)} ON {table} "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION crm_search_{table}_changed()"
        )
