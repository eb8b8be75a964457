-- PostGraphile comparator only: Customer.purchaseSummary as a computed column (the same
-- totals our API computes: paid or fulfilled orders, one total per currency). Created in
-- the bench database by bench/run.py before PostGraphile starts.
CREATE OR REPLACE FUNCTION public.customers_purchase_summary(c public.customers) RETURNS json
LANGUAGE sql STABLE AS $$
  SELECT json_build_object(
    'orderCount', count(*),
    'totals', coalesce((SELECT json_agg(json_build_object('amount', t.amount::text, 'currency', t.currency) ORDER BY t.currency)
                        FROM (SELECT currency, sum(amount) AS amount FROM public.orders o2
                              WHERE o2.workspace_id = c.workspace_id AND o2.customer_id = c.id
                                AND o2.status IN ('paid', 'fulfilled') AND o2.archived_at IS NULL
                              GROUP BY currency) t), '[]'::json),
    'firstOrderAt', min(o.placed_at),
    'lastOrderAt', max(o.placed_at))
  FROM public.orders o
  WHERE o.workspace_id = c.workspace_id AND o.customer_id = c.id
    AND o.status IN ('paid', 'fulfilled') AND o.archived_at IS NULL
$$;
