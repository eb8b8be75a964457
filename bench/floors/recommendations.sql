-- Hand-written floor of bench/queries/recommendations.graphql: the same answer in one
-- statement. Parameters: $1 the workspace id (uuid), $2 the page size (the query's
-- $first). Customers by name then id; per customer up to five live products it has not
-- bought: by summed cosine similarity to its purchases (paid and fulfilled orders), then
-- the most popular ones, ties by product id.
-- Like the server, it reads the co-purchase summary (product_buyers, product_pairs,
-- product_pair_snapshots; docs/decisions/0020) while it was computed from the current
-- order history, and computes the counts from every purchase otherwise.
WITH page AS (
    SELECT id, name FROM customers
    WHERE workspace_id = $1 AND archived_at IS NULL
    ORDER BY name, id
    LIMIT $2
), current_summary AS (
    SELECT s.buyers FROM product_pair_snapshots s
    WHERE s.workspace_id = $1
      AND s.version = coalesce(
        (SELECT v.version FROM order_history_versions v WHERE v.workspace_id = $1), 0)
), bought AS (
    SELECT DISTINCT o.customer_id, l.product_id
    FROM orders o
    JOIN order_lines l ON l.order_id = o.id AND l.workspace_id = $1
    WHERE o.workspace_id = $1 AND o.archived_at IS NULL
      AND o.status IN ('paid', 'fulfilled') AND l.product_id IS NOT NULL
), popularity AS (
    SELECT product_id, buyers FROM product_buyers
    WHERE workspace_id = $1 AND EXISTS (SELECT 1 FROM current_summary)
    UNION ALL
    SELECT product_id, count(*) FROM bought
    WHERE NOT EXISTS (SELECT 1 FROM current_summary) GROUP BY product_id
), total AS (
    SELECT coalesce((SELECT buyers FROM current_summary),
                    (SELECT count(DISTINCT customer_id) FROM bought)) AS n
), mine AS (
    SELECT DISTINCT o.customer_id, l.product_id
    FROM page p
    JOIN orders o ON o.customer_id = p.id AND o.workspace_id = $1
    JOIN order_lines l ON l.order_id = o.id AND l.workspace_id = $1
    WHERE o.archived_at IS NULL AND o.status IN ('paid', 'fulfilled')
      AND l.product_id IS NOT NULL
), co AS MATERIALIZED (
    SELECT product_id AS seed, other_id AS candidate, together FROM product_pairs
    WHERE workspace_id = $1 AND EXISTS (SELECT 1 FROM current_summary)
      AND product_id IN (SELECT product_id FROM mine)
    UNION ALL
    SELECT peer.product_id AS seed, a.product_id AS candidate, count(*) AS together
    FROM bought peer
    JOIN bought a ON a.customer_id = peer.customer_id AND a.product_id <> peer.product_id
    WHERE peer.product_id IN (SELECT product_id FROM mine)
      AND NOT EXISTS (SELECT 1 FROM current_summary)
    GROUP BY 1, 2
), pairs AS (
    SELECT m.customer_id AS target, m.product_id AS seed, co.candidate, co.together
    FROM mine m JOIN co ON co.seed = m.product_id
), contributions AS (
    SELECT pr.*, pr.together::float8 / sqrt((s.buyers * c.buyers)::float8) AS similarity
    FROM pairs pr
    JOIN popularity s ON s.product_id = pr.seed
    JOIN popularity c ON c.product_id = pr.candidate
    WHERE NOT EXISTS (
        SELECT 1 FROM mine WHERE mine.customer_id = pr.target AND mine.product_id = pr.candidate
    )
), candidates AS (
    SELECT target, candidate AS product_id, sum(similarity) AS score,
           (array_agg(seed ORDER BY together DESC, similarity DESC, seed))[1] AS seed,
           max(together) AS together, 0 AS kind, true AS history
    FROM contributions GROUP BY target, candidate
    UNION ALL
    SELECT p.id, pop.product_id, pop.buyers::float8 / (SELECT n FROM total), NULL,
           pop.buyers, 1, EXISTS (SELECT 1 FROM mine WHERE mine.customer_id = p.id)
    FROM page p CROSS JOIN popularity pop
    WHERE NOT EXISTS (
        SELECT 1 FROM mine WHERE mine.customer_id = p.id AND mine.product_id = pop.product_id
    )
), ranked AS (
    SELECT d.*, row_number() OVER (
        PARTITION BY d.target ORDER BY d.kind, d.score DESC, d.product_id
    ) AS rank
    FROM (
        SELECT c.*, row_number() OVER (PARTITION BY c.target, c.product_id ORDER BY c.kind) AS dup
        FROM candidates c
        JOIN products live ON live.id = c.product_id
            AND live.workspace_id = $1 AND live.archived_at IS NULL
    ) d
    WHERE d.dup = 1
)
SELECT json_build_object('data', json_build_object('customers', json_build_object(
    'nodes', coalesce(json_agg(json_build_object(
        'name', p.name,
        'recommendations', coalesce(r.list, '[]'::json)
    ) ORDER BY p.name, p.id), '[]'::json)
)))
FROM page p
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
        'product', json_build_object('sku', pr.sku, 'name', pr.name),
        'score', round(r.score::numeric, 6),
        'reason', CASE WHEN r.kind = 0
            THEN format('Bought by %s customer%s who also bought %s', r.together,
                        CASE WHEN r.together = 1 THEN '' ELSE 's' END, s.name)
            ELSE format('Popular: bought by %s of %s customer%s (%s)', r.together, t.n,
                        CASE WHEN t.n = 1 THEN '' ELSE 's' END,
                        CASE WHEN r.history THEN 'few customers share its purchases'
                             ELSE 'no purchase history yet' END)
            END
    ) ORDER BY r.rank) AS list
    FROM ranked r
    JOIN products pr ON pr.id = r.product_id
    LEFT JOIN products s ON s.id = r.seed
    CROSS JOIN total t
    WHERE r.target = p.id AND r.rank <= 5
) r ON true;
