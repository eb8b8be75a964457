-- Floor of S3 (bench/queries/s3_sales_report.graphql): the same numbers as one hand-written
-- statement returning one JSON document, for an admin (no row restriction beyond the
-- workspace; archived deals excluded).
-- Parameters: $1 workspace_id (uuid), $2 pipeline_id (uuid), $3 period start (timestamptz,
-- `from` 00:00 in the time zone), $4 period end (timestamptz, the day after `to` 00:00),
-- $5 `from` (date), $6 `to` (date).
-- Lists without rows are empty arrays, as the API answers them, and every list is in the
-- API's order (an aggregate without ORDER BY follows the plan: at S=10 a parallel hash
-- aggregate gave a stage's currencies out of order): currencies alphabetically, forecast
-- by month, then owner with the unowned first, then currency.
WITH d AS (
    SELECT * FROM deals
    WHERE workspace_id = $1 AND pipeline_id = $2 AND archived_at IS NULL
), st AS (
    SELECT id, name, position, probability FROM stages
    WHERE workspace_id = $1 AND pipeline_id = $2 AND archived_at IS NULL
), open_by_stage AS (
    SELECT stage_id, currency, count(*) AS n, sum(amount) AS amount
    FROM d WHERE status = 'open' GROUP BY stage_id, currency
), cohort AS (
    SELECT id, stage_id FROM d WHERE created_at >= $3 AND created_at < $4
), furthest AS (
    -- The stages a deal has been in: its current one and every one it was moved out of.
    SELECT max(position) AS position FROM (
        SELECT c.id, s.position FROM cohort c JOIN stages s ON s.id = c.stage_id
        UNION ALL
        SELECT c.id, s.position FROM cohort c
        JOIN deal_stage_changes h ON h.workspace_id = $1 AND h.deal_id = c.id
        JOIN stages s ON s.id = h.from_stage_id
    ) been GROUP BY id
), closed AS (
    SELECT status, currency, count(*) AS n, sum(amount) AS amount,
           sum(extract(epoch FROM closed_at - created_at)) AS seconds
    FROM d WHERE closed_at >= $3 AND closed_at < $4 AND status IN ('won', 'lost')
    GROUP BY status, currency
), forecast AS (
    SELECT date_trunc('month', d.expected_close_date)::date AS month, d.owner_id, d.currency,
           count(*) AS n, sum(d.amount) AS amount,
           round(sum(d.amount * s.probability / 100.0), 2) AS weighted
    FROM d JOIN st s ON s.id = d.stage_id
    WHERE d.status = 'open' AND d.expected_close_date BETWEEN $5 AND $6
    GROUP BY 1, 2, 3
)
SELECT json_build_object(
    'stages', (
        SELECT json_agg(json_build_object(
            'stage', json_build_object('id', s.id, 'name', s.name, 'probability', s.probability),
            'openCount', coalesce((SELECT sum(n) FROM open_by_stage o WHERE o.stage_id = s.id), 0),
            'openValue', coalesce((SELECT json_agg(json_build_object('currency', o.currency,
                                                                     'amount', o.amount)
                                                   ORDER BY o.currency)
                                   FROM open_by_stage o WHERE o.stage_id = s.id), '[]'),
            'weightedValue', coalesce((SELECT json_agg(json_build_object(
                                           'currency', o.currency,
                                           'amount', round(o.amount * s.probability / 100.0, 2))
                                           ORDER BY o.currency)
                                       FROM open_by_stage o WHERE o.stage_id = s.id), '[]'),
            'reachedCount', (SELECT count(*) FROM furthest f WHERE f.position >= s.position),
            'conversionToNext', (
                SELECT (SELECT count(*) FROM furthest f WHERE f.position >= n.position)::float
                       / nullif((SELECT count(*) FROM furthest f WHERE f.position >= s.position), 0)
                FROM st n WHERE (n.position, n.id) > (s.position, s.id)
                ORDER BY n.position, n.id LIMIT 1)
        ) ORDER BY s.position, s.id)
        FROM st s),
    'winRate', (
        SELECT json_build_object(
            'won', coalesce(sum(n) FILTER (WHERE status = 'won'), 0),
            'lost', coalesce(sum(n) FILTER (WHERE status = 'lost'), 0),
            'rate', coalesce(sum(n) FILTER (WHERE status = 'won'), 0)::float / nullif(sum(n), 0))
        FROM closed),
    'averageDealSize', coalesce((
        SELECT json_agg(json_build_object('currency', currency, 'amount', round(amount / n, 2),
                                          'count', n) ORDER BY currency)
        FROM closed WHERE status = 'won'), '[]'),
    'averageCycleTime', (
        SELECT json_build_object('averageDays', sum(seconds) / nullif(sum(n), 0) / 86400,
                                 'count', coalesce(sum(n), 0))
        FROM closed WHERE status = 'won'),
    'weightedPipeline', coalesce((
        SELECT json_agg(json_build_object('currency', currency, 'amount', amount)
                        ORDER BY currency)
        FROM (SELECT o.currency, round(sum(o.amount * s.probability / 100.0), 2) AS amount
              FROM open_by_stage o JOIN st s ON s.id = o.stage_id GROUP BY o.currency) w), '[]'),
    'forecast', coalesce((
        SELECT json_agg(json_build_object(
            'month', f.month,
            'owner', (SELECT json_build_object('id', u.id, 'name', u.name)
                      FROM users u WHERE u.id = f.owner_id),
            'currency', f.currency, 'count', f.n, 'amount', f.amount,
            'weightedAmount', f.weighted) ORDER BY f.month, f.owner_id NULLS FIRST, f.currency)
        FROM forecast f), '[]')
);
