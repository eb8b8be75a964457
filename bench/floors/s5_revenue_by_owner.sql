-- S5 floor: the answer of bench/queries/s5_revenue_by_owner.graphql written by hand, as
-- one JSON document ({"data": {"ordersAggregate": ...}}).
-- Parameters: $1 workspace id (uuid), $2 from (timestamptz), $3 to (timestamptz),
-- $4 time zone (text, an IANA name such as 'UTC' or 'Europe/Berlin').
-- Revenue: paid and fulfilled, not archived orders; a month starts at local midnight on
-- the 1st in $4; the owner is the owner of the order's customer (null: none).
--
-- Like the server (decision 0021), it reads the monthly order totals kept by triggers
-- (order_month_totals: per UTC month, owner, status, currency) for the whole UTC months
-- of the period, each month's totals going to the local month holding its middle, plus
-- the orders between each UTC month start and the zone's month start next to it (added
-- to their own month, taken from the assigned one) and those of the period's partial
-- months. Assumes the period holds at least one whole UTC month (the bench's two years).
WITH bounds AS (
  SELECT CASE WHEN date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' = $2
              THEN $2::timestamptz
              ELSE (date_trunc('month', $2::timestamptz AT TIME ZONE 'UTC') + interval '1 month')
                   AT TIME ZONE 'UTC' END AS first_m,
         date_trunc('month', $3::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS after_m
),
windows AS (  -- disjoint ranges: boundary hours and partial months
  SELECT lower(w) AS lo, upper(w) AS hi
  FROM unnest((
    SELECT range_agg(r) FROM (
      SELECT tstzrange(least(b, m), greatest(b, m)) AS r
      FROM bounds,
           generate_series(first_m AT TIME ZONE 'UTC', after_m AT TIME ZONE 'UTC',
                           interval '1 month') AS g(local_m),
           LATERAL (SELECT local_m AT TIME ZONE 'UTC' AS m) AS um,
           LATERAL (SELECT date_trunc('month', m + interval '15 days', $4) AS b) AS z
      UNION ALL SELECT tstzrange($2, first_m) FROM bounds
      UNION ALL SELECT tstzrange(after_m, $3) FROM bounds
    ) pieces)) AS w
),
edge AS (  -- one index range scan per window (OFFSET 0: kept so in a generic plan too)
  SELECT o.placed_at, o.currency, o.amount, o.owner_id
  FROM windows w
  CROSS JOIN LATERAL (
    SELECT o.placed_at, o.currency, o.amount,
           (SELECT c.owner_id FROM customers c WHERE c.id = o.customer_id) AS owner_id
    FROM orders o
    WHERE o.workspace_id = $1 AND o.placed_at >= w.lo AND o.placed_at < w.hi
      AND o.archived_at IS NULL AND o.status IN ('paid', 'fulfilled')
      AND o.placed_at >= $2 AND o.placed_at < $3
    OFFSET 0
  ) o
),
fine AS (
  SELECT month, owner_id, currency, sum(n) AS n, sum(total) AS total
  FROM (
    SELECT date_trunc('month', e.placed_at, $4) AS month, e.owner_id, e.currency,
           1 AS n, e.amount AS total
    FROM edge e
    UNION ALL
    SELECT date_trunc('month', date_trunc('month', e.placed_at, 'UTC') + interval '15 days', $4),
           e.owner_id, e.currency, -1, -e.amount
    FROM edge e, bounds WHERE e.placed_at >= first_m AND e.placed_at < after_m
    UNION ALL
    SELECT date_trunc('month', t.month + interval '15 days', $4), t.owner_id, t.currency,
           t.order_count, t.amount
    FROM order_month_totals t, bounds
    WHERE t.workspace_id = $1 AND t.status IN ('paid', 'fulfilled')
      AND t.month >= first_m AND t.month < after_m
  ) parts
  GROUP BY 1, 2, 3
  HAVING sum(n) <> 0
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
