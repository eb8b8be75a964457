-- Floor of bench/queries/cf1_custom_field_page.graphql: the same 50 customers, in the
-- same order, as one JSON document built by PostgreSQL (no cursors, no GraphQL).
-- Parameters: $1 workspace id (uuid), $2 the sources (jsonb array of two strings, e.g.
-- '["referral", "webinar"]'), $3 the title prefix (text, e.g. 'C').
SELECT json_build_object('data', json_build_object('customers', json_build_object(
  'nodes', coalesce(json_agg(json_build_object(
      'id', translate(encode(convert_to('Customer:' || p.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
      'name', p.name, 'email', p.email, 'customFields', p.custom_fields)
    ORDER BY p.title_key, p.id) FILTER (WHERE p.n <= 50), '[]'),
  'pageInfo', json_build_object('hasNextPage', count(*) > 50))))
FROM (
  SELECT c.id, c.name, c.email, c.custom_fields,
         CASE WHEN jsonb_typeof(c.custom_fields -> 'title') = 'string'
              THEN c.custom_fields ->> 'title' END AS title_key,
         row_number() OVER (ORDER BY CASE WHEN jsonb_typeof(c.custom_fields -> 'title') = 'string'
                                          THEN c.custom_fields ->> 'title' END NULLS LAST, c.id) AS n
  FROM customers c
  WHERE c.workspace_id = $1
    AND c.archived_at IS NULL
    AND EXISTS (SELECT 1 FROM jsonb_array_elements($2::jsonb) s
                WHERE c.custom_fields @> jsonb_build_object('source', s))
    AND (c.custom_fields ->> 'title') ILIKE replace(replace(replace($3, '\', '\\'), '%', '\%'), '_', '\_') || '%'
  ORDER BY 5 NULLS LAST, c.id
  LIMIT 51
) p;
