-- Floor of bench/queries/cf2_custom_field_aggregate.graphql: the same counts, as one JSON
-- document built by PostgreSQL ({"data": {"customersAggregate": ...}}).
-- Parameters: $1 workspace id (uuid), $2 the sources (jsonb array of two strings, e.g.
-- '["referral", "webinar"]').
WITH kept AS (
  SELECT c.lifecycle_stage
  FROM customers c
  WHERE c.workspace_id = $1
    AND c.archived_at IS NULL
    AND EXISTS (SELECT 1 FROM jsonb_array_elements($2::jsonb) s
                WHERE c.custom_fields @> jsonb_build_object('source', s))
),
per_stage AS (
  SELECT lifecycle_stage, count(*) AS n FROM kept GROUP BY lifecycle_stage
)
SELECT json_build_object('data', json_build_object('customersAggregate', json_build_object(
  'count', (SELECT count(*) FROM kept),
  'groups', coalesce((SELECT json_agg(json_build_object(
                        'lifecycleStage', upper(lifecycle_stage), 'count', n)
                      ORDER BY lifecycle_stage) FROM per_stage), '[]'))));
