-- Floor of S4 (bench/queries/s4_service_report.graphql): the same numbers as one
-- hand-written statement returning one JSON document, for an admin (every conversation of
-- the workspace, private ones included).
-- Parameters: $1 workspace_id (uuid), $2 period start (timestamptz, `from` 00:00 in the
-- time zone), $3 period end (timestamptz, the day after `to` 00:00), $4 now (timestamptz,
-- the backlog's reference instant).
-- Rows per agent as the service orders them: unassigned first, then by the agent's id;
-- channels and statuses as the API's enum values (upper case); lists without rows are
-- empty arrays, as the API answers them.
WITH c AS (
    SELECT * FROM conversations WHERE workspace_id = $1
), frt AS (
    SELECT grouping(assignee_id) AS ga, grouping(channel) AS gc, assignee_id, channel,
           count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - first_customer_message_at)) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM first_response_at - first_customer_message_at)) AS p90
    FROM c WHERE first_response_at >= $2 AND first_response_at < $3
    GROUP BY GROUPING SETS ((assignee_id), (channel), ())
), res AS (
    SELECT grouping(assignee_id) AS ga, grouping(channel) AS gc, assignee_id, channel,
           count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - created_at)) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - created_at)) AS p90
    FROM c WHERE closed_at >= $2 AND closed_at < $3
    GROUP BY GROUPING SETS ((assignee_id), (channel), ())
), csat AS (
    SELECT grouping(assignee_id) AS ga, grouping(channel) AS gc, assignee_id, channel,
           count(*) AS n, count(*) FILTER (WHERE rating_score >= 4) AS happy,
           avg(rating_score) AS average
    FROM c WHERE rated_at >= $2 AND rated_at < $3
    GROUP BY GROUPING SETS ((assignee_id), (channel), ())
), backlog AS (
    SELECT CASE WHEN created_at > CAST($4 AS timestamptz) - interval '1 hour' THEN 0
                WHEN created_at > CAST($4 AS timestamptz) - interval '24 hours' THEN 1
                WHEN created_at > CAST($4 AS timestamptz) - interval '7 days' THEN 2 ELSE 3 END AS band,
           count(*) FILTER (WHERE status = 'open') AS open,
           count(*) FILTER (WHERE status = 'pending') AS pending
    FROM c WHERE status IN ('open', 'pending') GROUP BY 1
)
SELECT json_build_object(
    'volume', coalesce((SELECT json_agg(json_build_object('channel', upper(channel), 'status', upper(status),
                                                 'count', n) ORDER BY channel, status)
               FROM (SELECT channel, status, count(*) AS n FROM c
                     WHERE created_at >= $2 AND created_at < $3 GROUP BY 1, 2) v), '[]'),
    'firstResponse', json_build_object(
        'overall', (SELECT json_build_object('count', n, 'p50Seconds', p50, 'p90Seconds', p90)
                    FROM frt WHERE ga = 1 AND gc = 1),
        'byAgent', coalesce((SELECT json_agg(json_build_object(
                        'agent', (SELECT json_build_object('id', u.id, 'name', u.name)
                                  FROM users u WHERE u.id = f.assignee_id),
                        'count', n, 'p50Seconds', p50, 'p90Seconds', p90) ORDER BY assignee_id NULLS FIRST)
                    FROM frt f WHERE ga = 0), '[]'),
        'byChannel', coalesce((SELECT json_agg(json_build_object('channel', upper(channel), 'count', n,
                                                        'p50Seconds', p50, 'p90Seconds', p90)
                                      ORDER BY channel)
                      FROM frt WHERE gc = 0), '[]')),
    'resolution', json_build_object(
        'overall', (SELECT json_build_object('count', n, 'p50Seconds', p50, 'p90Seconds', p90)
                    FROM res WHERE ga = 1 AND gc = 1),
        'byAgent', coalesce((SELECT json_agg(json_build_object(
                        'agent', (SELECT json_build_object('id', u.id, 'name', u.name)
                                  FROM users u WHERE u.id = r.assignee_id),
                        'count', n, 'p50Seconds', p50, 'p90Seconds', p90) ORDER BY assignee_id NULLS FIRST)
                    FROM res r WHERE ga = 0), '[]'),
        'byChannel', coalesce((SELECT json_agg(json_build_object('channel', upper(channel), 'count', n,
                                                        'p50Seconds', p50, 'p90Seconds', p90)
                                      ORDER BY channel)
                      FROM res WHERE gc = 0), '[]')),
    'backlog', (SELECT json_agg(json_build_object(
                    'label', b.label, 'openCount', coalesce(k.open, 0),
                    'pendingCount', coalesce(k.pending, 0),
                    'count', coalesce(k.open + k.pending, 0)) ORDER BY b.band)
                FROM (VALUES (0, 'under 1 hour'), (1, '1 to 24 hours'), (2, '1 to 7 days'),
                             (3, 'over 7 days')) AS b (band, label)
                LEFT JOIN backlog k ON k.band = b.band),
    'csat', json_build_object(
        'overall', (SELECT json_build_object('count', n, 'satisfied', happy,
                                             'csat', happy::float / nullif(n, 0),
                                             'averageScore', average)
                    FROM csat WHERE ga = 1 AND gc = 1),
        'byAgent', coalesce((SELECT json_agg(json_build_object(
                        'agent', (SELECT json_build_object('id', u.id, 'name', u.name)
                                  FROM users u WHERE u.id = s.assignee_id),
                        'count', n, 'csat', happy::float / n, 'averageScore', average)
                        ORDER BY assignee_id NULLS FIRST)
                    FROM csat s WHERE ga = 0), '[]'),
        'byChannel', coalesce((SELECT json_agg(json_build_object('channel', upper(channel), 'count', n,
                                                        'csat', happy::float / n,
                                                        'averageScore', average)
                                      ORDER BY channel)
                      FROM csat WHERE gc = 0), '[]'))
);
