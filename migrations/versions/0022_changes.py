"""changes: every create, update, archive and erase of the synced tables in the event log

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 01:00:00

The ``changes`` query (issue 17, point 4; docs/decisions/0032-sync-and-clean-data.md)
reads the event log's topic ``changes`` in its commit-safe ``(txid, id)`` order. Its
rows are written here, by statement triggers with transition tables on every synced
table, in the writing transaction: whatever writes a row (an ORM flush, a bulk
``UPDATE``, a merge moving deals, an erasure scrubbing messages, a later import) adds
its change, and a change commits exactly when the row does.

One row per changed row and statement: ``type`` ``change.created`` / ``change.updated``
/ ``change.archived`` (``archived_at`` set) / ``change.erased`` (a customer's
``erased_at`` set, or a row deleted), ``entity_type`` the GraphQL type, ``entity_id``
the row, ``payload`` ``{"fields": [columns]}``: the columns that changed (for a
creation, those given a value), never their values (personal data stays out of the log).
Bookkeeping columns (``id``, ``workspace_id``, ``created_at``, ``updated_at``,
``version``) do not count, and an update that changes nothing else writes nothing.
Rows deleted with their workspace write nothing: the log goes with the workspace.

Existing rows get their ``change.created`` (and ``change.archived`` / ``change.erased``
when they are) in the upgrade, so a partner that reads the feed from its start sees
every row. The downgrade drops the triggers and deletes the topic's rows.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> GraphQL type (the events' entity_type)
SYNCED = {
    "customers": "Customer",
    "companies": "Company",
    "deals": "Deal",
    "pipelines": "Pipeline",
    "stages": "Stage",
    "activities": "Activity",
    "orders": "Order",
    "products": "Product",
    "conversations": "Conversation",
    "messages": "Message",
}
BOOKKEEPING = "ARRAY['id', 'workspace_id', 'created_at', 'updated_at', 'version']"


def _filled(row: str) -> str:
    """The columns of ``row`` (a JSONB row) that hold a value (not null, not an empty
    list or object), as a sorted JSON array."""
    return f"""(SELECT coalesce(jsonb_agg(f.key ORDER BY f.key), '[]'::jsonb)
                FROM jsonb_each({row}) f
                WHERE f.value NOT IN ('null'::jsonb, '[]'::jsonb, '{{}}'::jsonb)
                  AND f.key <> ALL ({BOOKKEEPING}))"""


FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION crm_changes_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (workspace_id, topic, type, entity_type, entity_id, payload)
    SELECT n.workspace_id, 'changes', 'change.created', TG_ARGV[0], n.id,
           jsonb_build_object('fields', {_filled("to_jsonb(n)")})
    FROM new_rows n
    ORDER BY n.id;
    RETURN NULL;
END $$;


CREATE OR REPLACE FUNCTION crm_changes_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (workspace_id, topic, type, entity_type, entity_id, payload)
    SELECT r.workspace_id, 'changes',
           CASE
               WHEN r.o ->> 'erased_at' IS NULL AND r.n ->> 'erased_at' IS NOT NULL
                   THEN 'change.erased'
               WHEN r.o ->> 'archived_at' IS NULL AND r.n ->> 'archived_at' IS NOT NULL
                   THEN 'change.archived'
               ELSE 'change.updated'
           END,
           TG_ARGV[0], r.id, jsonb_build_object('fields', c.fields)
    FROM (
        SELECT n.workspace_id, n.id, to_jsonb(n) AS n, to_jsonb(o) AS o
        FROM new_rows n JOIN old_rows o ON o.id = n.id
    ) r
    CROSS JOIN LATERAL (
        SELECT jsonb_agg(f.key ORDER BY f.key) AS fields
        FROM jsonb_each(r.n) f
        WHERE f.value IS DISTINCT FROM r.o -> f.key AND f.key <> ALL ({BOOKKEEPING})
    ) c
    WHERE c.fields IS NOT NULL
    ORDER BY r.id;
    RETURN NULL;
END $$;


CREATE OR REPLACE FUNCTION crm_changes_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (workspace_id, topic, type, entity_type, entity_id, payload)
    SELECT o.workspace_id, 'changes', 'change.erased', TG_ARGV[0], o.id,
           jsonb_build_object('fields', '[]'::jsonb)
    FROM old_rows o
    WHERE EXISTS (SELECT FROM workspaces w WHERE w.id = o.workspace_id)
    ORDER BY o.id;
    RETURN NULL;
END $$;
"""


def _backfill(table: str, type_name: str) -> str:
    created = f"""
        SELECT t.workspace_id, 'change.created' AS type, t.id, {_filled("to_jsonb(t)")} AS fields,
               0 AS step, t.created_at
        FROM {table} t"""
    archived = f"""
        SELECT t.workspace_id, 'change.archived', t.id, '["archived_at"]'::jsonb, 1, t.created_at
        FROM {table} t WHERE to_jsonb(t) ->> 'archived_at' IS NOT NULL"""
    erased = f"""
        SELECT t.workspace_id, 'change.erased', t.id, '["erased_at"]'::jsonb, 2, t.created_at
        FROM {table} t WHERE to_jsonb(t) ->> 'erased_at' IS NOT NULL"""
    return f"""
        INSERT INTO events (workspace_id, topic, type, entity_type, entity_id, payload)
        SELECT b.workspace_id, 'changes', b.type, '{type_name}', b.id,
               jsonb_build_object('fields', b.fields)
        FROM ({created} UNION ALL {archived} UNION ALL {erased}) b
        ORDER BY b.created_at, b.id, b.step
    """


def upgrade() -> None:
    for function in FUNCTIONS.split("\n\n\n"):
        op.execute(function)
    for table, type_name in SYNCED.items():
        op.execute(_backfill(table, type_name))
        op.execute(
            f"CREATE TRIGGER changes_created AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION crm_changes_created('{type_name}')"
        )
        op.execute(
            f"CREATE TRIGGER changes_updated AFTER UPDATE ON {table} "
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION crm_changes_updated('{type_name}')"
        )
        op.execute(
            f"CREATE TRIGGER changes_deleted AFTER DELETE ON {table} "
            "REFERENCING OLD TABLE AS old_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION crm_changes_deleted('{type_name}')"
        )


def downgrade() -> None:
    for table in SYNCED:
        for trigger in ("changes_created", "changes_updated", "changes_deleted"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    for function in ("crm_changes_created", "crm_changes_updated", "crm_changes_deleted"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.execute("DELETE FROM events WHERE topic = 'changes'")
