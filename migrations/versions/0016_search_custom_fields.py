"""search custom fields

Revision ID: 0016
Revises: 0014 (re-chain onto the previous head at merge)
Create Date: 2026-12-05 17:00:00

Customers', companies' and deals' custom fields marked ``searchable`` join their search
documents (issue 13; docs/decisions/0017-custom-fields-everywhere.md). The documents stay
written by the triggers of revision 0010, in the writing transaction:

- the refresh functions of the three tables add the values of the workspace's active
  searchable definitions of the entity (text and dates as written, numbers as JSON writes
  them, a multi select's options one by one, booleans left out: what
  ``custom_fields.searchable_text`` takes), weight C like tags;
- their update triggers also watch ``custom_fields``;
- a trigger on ``custom_field_definitions`` rebuilds the documents of the records holding
  the key when a definition becomes searchable or stops being so (its flag changes, it is
  archived or restored, or it is created searchable over values already stored).

Sensitive keys never reach a document: their values are never in ``custom_fields`` (they
are encrypted into ``custom_fields_encrypted``) and a sensitive key cannot be searchable.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPSERT = """
    INSERT INTO search_documents AS d
        (id, workspace_id, entity_type, names, document, exact_keys)
    SELECT s.id, s.workspace_id, '{entity}', s.names, s.names || s.bodies, s.exact_keys
    FROM ({select}) AS s
    ON CONFLICT (id) DO UPDATE
    SET names = EXCLUDED.names, document = EXCLUDED.document,
        exact_keys = EXCLUDED.exact_keys, updated_at = now()
"""

# The searchable keys of one entity, per workspace of the rows being indexed (one pass
# over the definitions for a bulk load, whatever the number of rows).
KEYS = """
    WITH searchable AS (
        SELECT f.workspace_id, array_agg(f.key ORDER BY f.created_at, f.id) AS keys
        FROM custom_field_definitions f
        WHERE f.entity = '{entity}' AND f.searchable AND f.archived_at IS NULL
          AND f.workspace_id IN (SELECT t.workspace_id FROM {table} t WHERE t.id = ANY(ids))
        GROUP BY f.workspace_id
    )
"""

# (kind, SELECT of id, workspace_id, names, bodies, exact_keys for ``ids``): revision
# 0010's, with the searchable custom fields.
REFRESH = {
    "customers": (
        "customer",
        KEYS.format(entity="customer", table="customers")
        + """
        SELECT c.id, c.workspace_id,
            crm_search_vector(c.name, 'A') || crm_search_vector(c.email, 'B')
            || crm_search_vector(c.phone, 'B')
            || crm_search_lexemes(crm_search_digit_suffixes(c.phone), 'B')
            || crm_search_vector(co.name, 'C')
            || crm_search_vector(array_to_string(c.tags, ' '), 'C')
            || crm_search_vector(crm_search_custom_text(c.custom_fields, k.keys), 'C')
                AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(c.name), crm_search_key(c.email),
                               crm_search_key(c.phone), crm_search_digits(c.phone)], '')
                AS exact_keys
        FROM customers c LEFT JOIN companies co ON co.id = c.company_id
        LEFT JOIN searchable k ON k.workspace_id = c.workspace_id
        WHERE c.id = ANY(ids)
        """,
    ),
    "companies": (
        "company",
        KEYS.format(entity="company", table="companies")
        + """
        SELECT co.id, co.workspace_id,
            crm_search_vector(co.name, 'A') || crm_search_vector(co.domain, 'B')
            || crm_search_vector(crm_search_custom_text(co.custom_fields, k.keys), 'C')
                AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(co.name), crm_search_key(co.domain)], '')
                AS exact_keys
        FROM companies co LEFT JOIN searchable k ON k.workspace_id = co.workspace_id
        WHERE co.id = ANY(ids)
        """,
    ),
    "deals": (
        "deal",
        KEYS.format(entity="deal", table="deals")
        + """
        SELECT dl.id, dl.workspace_id, crm_search_vector(dl.title, 'A')
            || crm_search_vector(crm_search_custom_text(dl.custom_fields, k.keys), 'C')
                AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(dl.title)], '') AS exact_keys
        FROM deals dl LEFT JOIN searchable k ON k.workspace_id = dl.workspace_id
        WHERE dl.id = ANY(ids)
        """,
    ),
}

# Revision 0010's, for the downgrade.
PREVIOUS_REFRESH = {
    "customers": (
        "customer",
        """
        SELECT c.id, c.workspace_id,
            crm_search_vector(c.name, 'A') || crm_search_vector(c.email, 'B')
            || crm_search_vector(c.phone, 'B')
            || crm_search_lexemes(crm_search_digit_suffixes(c.phone), 'B')
            || crm_search_vector(co.name, 'C')
            || crm_search_vector(array_to_string(c.tags, ' '), 'C') AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(c.name), crm_search_key(c.email),
                               crm_search_key(c.phone), crm_search_digits(c.phone)], '')
                AS exact_keys
        FROM customers c LEFT JOIN companies co ON co.id = c.company_id
        WHERE c.id = ANY(ids)
        """,
    ),
    "companies": (
        "company",
        """
        SELECT co.id, co.workspace_id,
            crm_search_vector(co.name, 'A') || crm_search_vector(co.domain, 'B') AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(co.name), crm_search_key(co.domain)], '')
                AS exact_keys
        FROM companies co WHERE co.id = ANY(ids)
        """,
    ),
    "deals": (
        "deal",
        """
        SELECT dl.id, dl.workspace_id, crm_search_vector(dl.title, 'A') AS names,
            ''::tsvector AS bodies,
            array_remove(ARRAY[crm_search_key(dl.title)], '') AS exact_keys
        FROM deals dl WHERE dl.id = ANY(ids)
        """,
    ),
}

WATCHED = {
    "customers": ("name", "email", "phone", "company_id", "tags", "custom_fields"),
    "companies": ("name", "domain", "custom_fields"),
    "deals": ("title", "custom_fields"),
}
PREVIOUS_WATCHED = {
    "customers": ("name", "email", "phone", "company_id", "tags"),
    "companies": ("name", "domain"),
    "deals": ("title",),
}

# The text of the searchable values of one record: each key's value in the order of
# ``keys``; strings and numbers as JSON holds them, arrays (multi selects) element by
# element; booleans, nulls and objects add nothing.
CUSTOM_TEXT = """
    CREATE FUNCTION crm_search_custom_text(custom jsonb, keys text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
        SELECT string_agg(e.value #>> '{}', ' ' ORDER BY k.n, e.m)
        FROM unnest(keys) WITH ORDINALITY AS k(key, n)
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE jsonb_typeof(custom -> k.key)
                WHEN 'array' THEN custom -> k.key
                ELSE jsonb_build_array(custom -> k.key)
            END) WITH ORDINALITY AS e(value, m)
        WHERE jsonb_typeof(e.value) IN ('string', 'number')
    $fn$
"""

# The records of one entity that hold ``key``, re-indexed.
REFRESH_KEY = """
    CREATE FUNCTION crm_search_refresh_custom_key(ws uuid, entity text, field text)
    RETURNS void LANGUAGE plpgsql AS $fn$
    BEGIN
        IF entity = 'customer' THEN
            PERFORM crm_search_refresh_customers(ARRAY(
                SELECT id FROM customers
                WHERE workspace_id = ws AND jsonb_exists(custom_fields, field)));
        ELSIF entity = 'company' THEN
            PERFORM crm_search_refresh_companies(ARRAY(
                SELECT id FROM companies
                WHERE workspace_id = ws AND jsonb_exists(custom_fields, field)));
        ELSIF entity = 'deal' THEN
            PERFORM crm_search_refresh_deals(ARRAY(
                SELECT id FROM deals
                WHERE workspace_id = ws AND jsonb_exists(custom_fields, field)));
        END IF;
    END $fn$
"""

# A definition that starts or stops being indexed (searchable and not archived)
# re-indexes the records holding its key. Definitions are archived, never deleted one by
# one (a workspace's deletion removes its documents by cascade).
DEFINITION_CHANGED = """
    CREATE FUNCTION crm_search_custom_definition_changed() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    DECLARE
        was boolean := false;
        indexed boolean := NEW.searchable AND NEW.archived_at IS NULL;
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            was := OLD.searchable AND OLD.archived_at IS NULL;
            IF was AND (OLD.workspace_id, OLD.entity, OLD.key)
                    IS DISTINCT FROM (NEW.workspace_id, NEW.entity, NEW.key) THEN
                PERFORM crm_search_refresh_custom_key(OLD.workspace_id, OLD.entity, OLD.key);
                was := false;
            END IF;
        END IF;
        IF was IS DISTINCT FROM indexed THEN
            PERFORM crm_search_refresh_custom_key(NEW.workspace_id, NEW.entity, NEW.key);
        END IF;
        RETURN NULL;
    END $fn$
"""


def _execute(sql: str) -> None:
    op.get_bind().exec_driver_sql(sql)


def _refresh_functions(refresh: dict[str, tuple[str, str]]) -> None:
    for table, (entity, select) in refresh.items():
        _execute(
            f"CREATE OR REPLACE FUNCTION crm_search_refresh_{table}(ids uuid[]) RETURNS void "
            f"LANGUAGE sql AS $fn$ {UPSERT.format(entity=entity, select=select)} $fn$"
        )


def _update_triggers(watched: dict[str, tuple[str, ...]]) -> None:
    for table, columns in watched.items():
        changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
        _execute(f"DROP TRIGGER search_update ON {table}")
        _execute(
            f"CREATE TRIGGER search_update AFTER UPDATE OF {', '.join(columns)} ON {table} "
            f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION crm_search_{table}_changed()"
        )


def upgrade() -> None:
    _execute(CUSTOM_TEXT)
    _refresh_functions(REFRESH)
    _update_triggers(WATCHED)
    _execute(REFRESH_KEY)
    _execute(DEFINITION_CHANGED)
    _execute(
        "CREATE TRIGGER search_definition_insert AFTER INSERT ON custom_field_definitions "
        "FOR EACH ROW WHEN (NEW.searchable AND NEW.archived_at IS NULL) "
        "EXECUTE FUNCTION crm_search_custom_definition_changed()"
    )
    _execute(
        "CREATE TRIGGER search_definition_update "
        "AFTER UPDATE OF searchable, archived_at, key, entity, workspace_id "
        "ON custom_field_definitions FOR EACH ROW "
        "WHEN (OLD.searchable IS DISTINCT FROM NEW.searchable "
        "OR (OLD.archived_at IS NULL) IS DISTINCT FROM (NEW.archived_at IS NULL) "
        "OR OLD.key IS DISTINCT FROM NEW.key OR OLD.entity IS DISTINCT FROM NEW.entity "
        "OR OLD.workspace_id IS DISTINCT FROM NEW.workspace_id) "
        "EXECUTE FUNCTION crm_search_custom_definition_changed()"
    )
    # Index the searchable values already stored.
    _execute(
        "SELECT crm_search_refresh_custom_key(workspace_id, entity, key) "
        "FROM custom_field_definitions WHERE searchable AND archived_at IS NULL"
    )


def downgrade() -> None:
    _execute("DROP TRIGGER search_definition_update ON custom_field_definitions")
    _execute("DROP TRIGGER search_definition_insert ON custom_field_definitions")
    _execute("DROP FUNCTION crm_search_custom_definition_changed()")
    _execute("DROP FUNCTION crm_search_refresh_custom_key(uuid, text, text)")
    _update_triggers(PREVIOUS_WATCHED)
    _refresh_functions(PREVIOUS_REFRESH)
    _execute("DROP FUNCTION crm_search_custom_text(jsonb, text[])")
    for table in PREVIOUS_REFRESH:
        _execute(f"SELECT crm_search_refresh_{table}(ARRAY(SELECT id FROM {table}))")
