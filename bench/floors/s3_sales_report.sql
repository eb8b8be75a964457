-- Floor of S3 (bench/queries/s3_sales_report.graphql): the same numbers as one hand-written
-- statement returning one JSON document, for an admin (no row restriction beyond the
-- workspace; archived deals excluded).
-- Parameters: $1 workspace_id (uuid), $2 pipeline_id (uuid), $3 period start (timestamptz,
-- `from` 00:00 in the time zone), $4 period end (timestamptz, the day after `to` 00:00),
-- $5 `from` (date), $6 `to` (date).
-- Like the server (decision 0021) it reads the deal summaries kept by triggers: open deals
-- and the forecast from deal_stage_totals (per stage, owner, status, currency, expected
-- close month), and the deals created in the period by furthest stage from
-- deal_cohort_totals (per UTC month of creation), corrected by the deals created between
-- each end of the period and the UTC month start nearest to it; the deals won or lost in
-- the period from deal_close_totals (per UTC month of closing), corrected the same way.
-- Lists without rows are empty arrays, as the API answers them, and every list is in the
-- API's order (an aggregate without ORDER BY follows the plan: at S=10 a parallel hash
-- aggregate gave a stage's currencies out of order): currencies alphabetically, forecast
-- by month, then owner with the unowned first, then currency.
WITH st AS (
    SELECT id, name, position, probability FROM stages
    WHERE workspace_id = $1 AND pipeline_id = $2 AND archived_at IS NULL
), open_by_stage AS (  -- from the summary: open deals per stage and currency
    SELECT stage_id, currency, sum(deal_count) AS n, sum(amount) AS amount
    FROM deal_stage_totals
    WHERE workspace_id = $1 AND pipeline_id = $2 AND status = 'open'
    GROUP BY stage_id, currency HAVING sum(deal_count) <> 0
), months AS (  -- the UTC month starts nearest to the period's ends
    SELECT CASE WHEN $3 - lo <= hi - $3 THEN lo ELSE hi END AS first_m,
           CASE WHEN $4 - lo4 <= hi4 - $4 THEN lo4 ELSE hi4 END AS after_m
    FROM (SELECT date_trunc('month', $3::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS lo,
                 (date_trunc('month', $3::timestamptz AT TIME ZONE 'UTC') + interval '1 month')
                     AT TIME ZONE 'UTC' AS hi,
                 date_trunc('month', $4::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS lo4,
                 (date_trunc('month', $4::timestamptz AT TIME ZONE 'UTC') + interval '1 month')
                     AT TIME ZONE 'UTC' AS hi4) x
), edges AS (  -- deals created between a period end and its month start: +1 or -1
    SELECT x.id, x.stage_id, e.sign
    FROM months m
    CROSS JOIN LATERAL (VALUES (least($3, m.first_m), greatest($3, m.first_m),
                                CASE WHEN $3 < m.first_m THEN 1 ELSE -1 END),
                               (least($4, m.after_m), greatest($4, m.after_m),
                                CASE WHEN m.after_m < $4 THEN 1 ELSE -1 END)) AS e(lo, hi, sign)
    CROSS JOIN LATERAL (  -- an index range scan per edge (OFFSET 0: in a generic plan too)
        SELECT d.id, d.stage_id FROM deals d
        WHERE d.workspace_id = $1 AND d.pipeline_id = $2 AND d.archived_at IS NULL
          AND d.created_at >= e.lo AND d.created_at < e.hi
        OFFSET 0) x
), furthest AS (
    -- The stages a deal has been in: its current one and every one it was moved out of.
    SELECT f.position, c.sign AS n
    FROM edges c
    CROSS JOIN LATERAL (
        SELECT max(s.position) AS position
        FROM (SELECT c.stage_id AS stage_id
              UNION ALL
              SELECT h.from_stage_id FROM deal_stage_changes h
              WHERE h.workspace_id = $1 AND h.deal_id = c.id) been
        JOIN stages s ON s.id = been.stage_id) f
), reach AS (  -- the summary's whole months, and the deals of the edges
    SELECT position, sum(n) AS n FROM (
        SELECT t.furthest_position AS position, t.deal_count AS n
        FROM deal_cohort_totals t, months m
        WHERE t.workspace_id = $1 AND t.pipeline_id = $2
          AND t.month >= m.first_m AND t.month < m.after_m
        UNION ALL
        SELECT position, n FROM furthest
    ) parts GROUP BY position
), closed AS (  -- the summary's whole months, corrected at the ends like the cohort
    SELECT status, currency, sum(n) AS n, sum(amount) AS amount, sum(seconds) AS seconds
    FROM (
        SELECT t.status, t.currency, t.deal_count AS n, t.amount, t.seconds
        FROM deal_close_totals t, months m
        WHERE t.workspace_id = $1 AND t.pipeline_id = $2 AND t.status IN ('won', 'lost')
          AND t.month >= m.first_m AND t.month < m.after_m
        UNION ALL
        SELECT x.status, x.currency, e.sign, e.sign * x.amount,
               e.sign * extract(epoch FROM x.closed_at - x.created_at)
        FROM months m
        CROSS JOIN LATERAL (VALUES (least($3, m.first_m), greatest($3, m.first_m),
                                    CASE WHEN $3 < m.first_m THEN 1 ELSE -1 END),
                                   (least($4, m.after_m), greatest($4, m.after_m),
                                    CASE WHEN m.after_m < $4 THEN 1 ELSE -1 END))
                    AS e(lo, hi, sign)
        CROSS JOIN LATERAL (
            SELECT d.status, d.currency, d.amount, d.closed_at, d.created_at FROM deals d
            WHERE d.workspace_id = $1 AND d.pipeline_id = $2 AND d.archived_at IS NULL
              AND d.closed_at >= e.lo AND d.closed_at < e.hi AND d.status IN ('won', 'lost')
            OFFSET 0) x
    ) parts
    GROUP BY status, currency HAVING sum(n) <> 0
), forecast AS (  -- from the summary (the bench's periods are whole months)
    SELECT t.close_month AS month, t.owner_id, t.currency,
           sum(t.deal_count) AS n, sum(t.amount) AS amount,
           round(sum(t.amount * s.probability / 100.0), 2) AS weighted
    FROM deal_stage_totals t JOIN st s ON s.id = t.stage_id
    WHERE t.workspace_id = $1 AND t.pipeline_id = $2 AND t.status = 'open'
      AND t.close_month BETWEEN $5 AND $6
    GROUP BY 1, 2, 3 HAVING sum(t.deal_count) <> 0
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
            'reachedCount', (SELECT coalesce(sum(r.n), 0) FROM reach r WHERE r.position >= s.position),
            'conversionToNext', (
                SELECT (SELECT coalesce(sum(r.n), 0) FROM reach r WHERE r.position >= n.position)::float
                       / nullif((SELECT coalesce(sum(r.n), 0) FROM reach r
                                 WHERE r.position >= s.position), 0)
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
