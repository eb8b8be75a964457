-- S2 floor: the same answer as bench/queries/s2_segment_page.graphql for the built-in
-- "champions" segment, as one JSON document built by PostgreSQL.
-- Parameters: $1 = the workspace id (uuid).
-- Scores as services/rfm.py defines them: counted orders = paid or fulfilled, not
-- archived, of live customers; R by latest order, F by order count, M by total in the
-- customer's primary currency among customers of that currency; ties by customer id;
-- champions = R 5 and (F + M + 1) / 2 >= 4.
-- Like the server, it reads the summary table rfm_scores (docs/decisions/0020) while the
-- workspace's snapshot was computed from the current order history
-- (rfm_snapshots.version = order_history_versions.version), and computes the scores from
-- the orders otherwise (a read-only statement cannot refresh the snapshot: the server's
-- first read after an order change does; the bench runs ours first).
WITH current_snapshot AS (
  SELECT EXISTS (
    SELECT 1 FROM rfm_snapshots s
    WHERE s.workspace_id = $1
      AND s.version = coalesce(
        (SELECT v.version FROM order_history_versions v WHERE v.workspace_id = $1), 0)
  ) AS yes
), per_currency AS (
  SELECT o.customer_id, o.currency, count(*) AS n, sum(o.amount) AS total,
         max(o.placed_at) AS last
  FROM orders o JOIN customers c ON c.id = o.customer_id
  WHERE o.workspace_id = $1 AND c.workspace_id = $1 AND c.archived_at IS NULL
    AND o.archived_at IS NULL AND o.status IN ('paid', 'fulfilled')
  GROUP BY o.customer_id, o.currency
), per_customer AS (
  SELECT customer_id, currency, total,
         sum(n) OVER w AS order_count, max(last) OVER w AS last_order_at,
         row_number() OVER (PARTITION BY customer_id ORDER BY n DESC, currency) AS rank
  FROM per_currency
  WINDOW w AS (PARTITION BY customer_id)
), computed AS (
  SELECT customer_id,
         ntile(5) OVER (ORDER BY last_order_at, customer_id) AS r,
         ntile(5) OVER (ORDER BY order_count, customer_id) AS f,
         ntile(5) OVER (PARTITION BY currency ORDER BY total, customer_id) AS m
  FROM per_customer
  WHERE rank = 1
), champions AS (
  SELECT customer_id, r, f, m FROM rfm_scores
  WHERE workspace_id = $1 AND segment = 'champions' AND (SELECT yes FROM current_snapshot)
  UNION ALL
  SELECT customer_id, r, f, m FROM computed
  WHERE r = 5 AND (f + m + 1) / 2 >= 4 AND NOT (SELECT yes FROM current_snapshot)
), members AS (
  -- Each member's row by primary key (OFFSET 0 keeps the lookup per member: a generic
  -- plan otherwise hashes every customer of the database to join ~4% of one workspace's).
  SELECT c.id, c.name, c.email, c.lifecycle_stage, c.created_at, s.r, s.f, s.m
  FROM champions s
  CROSS JOIN LATERAL (
    SELECT c.* FROM customers c
    WHERE c.id = s.customer_id AND c.workspace_id = $1 AND c.archived_at IS NULL
    OFFSET 0
  ) c
), page AS (
  SELECT * FROM members ORDER BY created_at DESC, id DESC LIMIT 51
)
SELECT json_build_object(
  'data', json_build_object('customers', json_build_object(
    'totalCount', (SELECT count(*) FROM members),
    'nodes', coalesce((
      SELECT json_agg(json_build_object(
        'id', rtrim(translate(encode(convert_to('Customer:' || p.id, 'UTF8'), 'base64'),
                              '+/', '-_'), '='),
        'name', p.name, 'email', p.email, 'lifecycleStage', upper(p.lifecycle_stage),
        'rfm', json_build_object('segment', 'CHAMPIONS', 'rScore', p.r, 'fScore', p.f,
                                 'mScore', p.m)
      ) ORDER BY p.created_at DESC, p.id DESC)
      FROM (SELECT * FROM page ORDER BY created_at DESC, id DESC LIMIT 50) p
    ), '[]'::json),
    'pageInfo', json_build_object('hasNextPage', (SELECT count(*) > 50 FROM page))
  ))
)::text;
