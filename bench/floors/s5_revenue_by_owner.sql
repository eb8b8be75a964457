-- S5 floor: the answer of bench/queries/s5_revenue_by_owner.graphql written by hand, as
-- one JSON document ({"data": {"ordersAggregate": ...}}).
-- Parameters: $1 workspace id (uuid), $2 from (timestamptz), $3 to (timestamptz),
-- $4 time zone (text, an IANA name such as 'UTC' or 'Europe/Berlin').
-- Revenue: paid and fulfilled, not archived orders; a month starts at local midnight on
-- the 1st in $4; the owner is the owner of the order's customer (null: none).
WITH fine AS (  -- hashed: a few hundred rows
  SELECT date_trunc('month', o.placed_at, $4) AS month,
         c.owner_id,
         o.currency,
         count(*) AS n,
         sum(o.amount) AS total
  FROM orders o
  LEFT JOIN customers c ON c.id = o.customer_id
  WHERE o.workspace_id = $1
    AND o.archived_at IS NULL
    AND o.status IN ('paid', 'fulfilled')
    AND o.placed_at >= $2 AND o.placed_at < $3
  GROUP BY 1, 2, 3
),
per_currency AS (  -- per month and owner, and the totals, per currency
  SELECT month, owner_id, currency, sum(n) AS n, sum(total) AS total,
         GROUPING(month, owner_id) AS g
  FROM fine
  GROUP BY GROUPING SETS ((month, owner_id, currency), (currency))
),
grouped AS (
  SELECT g, month, owner_id, sum(n) AS n,
         json_agg(json_build_object('amount', total::text, 'currency', currency)
                  ORDER BY currency) AS sums
  FROM per_currency
  GROUP BY g, month, owner_id
)
SELECT json_build_object('data', json_build_object('ordersAggregate', json_build_object(
  'count', coalesce((SELECT n FROM grouped WHERE g <> 0), 0),
  'amount', json_build_object('sum', coalesce((SELECT sums FROM grouped WHERE g <> 0), '[]')),
  'groups', coalesce((
    SELECT json_agg(json_build_object(
             'placedAt', to_char(l.local_start, 'YYYY-MM-DD"T"HH24:MI:SS')
                         || CASE WHEN l.off < interval '0' THEN '-' ELSE '+' END
                         || to_char(CASE WHEN l.off < interval '0' THEN -l.off ELSE l.off END,
                                    'HH24:MI'),
             'owner', CASE WHEN u.id IS NULL THEN NULL ELSE json_build_object(
                        'id', rtrim(translate(encode(convert_to('User:' || u.id::text, 'UTF8'),
                                                     'base64'), '+/', '-_'), '='),
                        'name', u.name) END,
             'count', gr.n,
             'amount', json_build_object('sum', gr.sums))
           ORDER BY gr.month, gr.owner_id NULLS LAST)
    FROM grouped gr
    CROSS JOIN LATERAL (SELECT gr.month AT TIME ZONE $4 AS local_start,
                               (gr.month AT TIME ZONE $4) - (gr.month AT TIME ZONE 'UTC') AS off) l
    LEFT JOIN users u ON u.id = gr.owner_id
    WHERE gr.g = 0), '[]')
)));
