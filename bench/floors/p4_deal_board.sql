-- Floor of bench/queries/p4_deal_board.graphql: a pipeline, its live stages by position
-- (the API lists one page of the largest size, 100), each with how many live deals it
-- holds and its 20 newest with their owner, as one JSON document built by PostgreSQL.
-- Parameters: $1 workspace id (uuid), $2 pipeline id (uuid).
SELECT json_build_object('data', json_build_object('node', (
  SELECT json_build_object(
    'id', translate(encode(convert_to('Pipeline:' || pl.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
    'name', pl.name,
    'stages', coalesce((
      SELECT json_agg(json_build_object(
          'id', translate(encode(convert_to('Stage:' || st.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
          'name', st.name, 'probability', st.probability,
          'deals', json_build_object(
            'totalCount', (SELECT count(*) FROM deals n
                           WHERE n.workspace_id = $1 AND n.stage_id = st.id AND n.archived_at IS NULL),
            'nodes', coalesce((
              SELECT json_agg(json_build_object(
                  'id', translate(encode(convert_to('Deal:' || d.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                  'title', d.title, 'amount', d.amount::text, 'currency', d.currency,
                  'owner', (SELECT json_build_object(
                              'id', translate(encode(convert_to('User:' || o.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                              'name', o.name)
                            FROM users o WHERE o.workspace_id = $1 AND o.id = d.owner_id))
                ORDER BY d.created_at DESC, d.id DESC)
              FROM (SELECT * FROM deals d
                    WHERE d.workspace_id = $1 AND d.stage_id = st.id AND d.archived_at IS NULL
                    ORDER BY d.created_at DESC, d.id DESC LIMIT 20) d), '[]')))
        ORDER BY st.position, st.id)
      FROM (SELECT * FROM stages st
            WHERE st.workspace_id = $1 AND st.pipeline_id = pl.id AND st.archived_at IS NULL
            ORDER BY st.position, st.id LIMIT 100) st), '[]'))
  FROM pipelines pl WHERE pl.workspace_id = $1 AND pl.id = $2)));
