-- Floor of bench/queries/p1_list_page.graphql: the caller's user row and Q1's page of 50
-- customers (newest first) with company, owner and tags, as one JSON document built by
-- PostgreSQL (no cursors, no GraphQL).
-- Parameters: $1 workspace id (uuid), $2 the caller's user id (uuid).
SELECT json_build_object('data', json_build_object(
  'me', (SELECT json_build_object(
            'id', translate(encode(convert_to('User:' || u.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
            'name', u.name, 'email', u.email, 'role', upper(u.role))
         FROM users u WHERE u.workspace_id = $1 AND u.id = $2),
  'customers', json_build_object(
    'nodes', coalesce(json_agg(json_build_object(
        'id', translate(encode(convert_to('Customer:' || p.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
        'name', p.name, 'email', p.email, 'lifecycleStage', upper(p.lifecycle_stage), 'tags', p.tags,
        'company', (SELECT json_build_object(
                      'id', translate(encode(convert_to('Company:' || co.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                      'name', co.name)
                    FROM companies co WHERE co.workspace_id = $1 AND co.id = p.company_id),
        'owner', (SELECT json_build_object(
                    'id', translate(encode(convert_to('User:' || o.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                    'name', o.name)
                  FROM users o WHERE o.workspace_id = $1 AND o.id = p.owner_id))
      ORDER BY p.n) FILTER (WHERE p.n <= 50), '[]'),
    'pageInfo', json_build_object('hasNextPage', count(*) > 50))))
FROM (
  SELECT c.id, c.name, c.email, c.lifecycle_stage, c.tags, c.company_id, c.owner_id,
         row_number() OVER (ORDER BY c.created_at DESC, c.id DESC) AS n
  FROM customers c
  WHERE c.workspace_id = $1 AND c.archived_at IS NULL
  ORDER BY c.created_at DESC, c.id DESC
  LIMIT 51
) p;
