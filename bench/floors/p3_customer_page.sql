-- Floor of bench/queries/p3_customer_page.graphql: one customer with contact fields,
-- company, owner, its 10 newest deals with their stage, its 10 latest activities and its 5
-- most recently active conversations the caller may see with their last message, as one
-- JSON document built by PostgreSQL (no GraphQL). Lists leave archived rows out, as the
-- API's do; conversations follow the API's visibility rule (see p2_inbox_page.sql).
-- Parameters: $1 workspace id (uuid), $2 customer id (uuid), $3 the caller's user id (uuid).
SELECT json_build_object('data', json_build_object('node', (
  SELECT json_build_object(
    'id', translate(encode(convert_to('Customer:' || c.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
    'name', c.name, 'email', c.email, 'phone', c.phone,
    'lifecycleStage', upper(c.lifecycle_stage), 'tags', c.tags, 'lastActivityAt', c.last_activity_at,
    'company', (SELECT json_build_object(
                  'id', translate(encode(convert_to('Company:' || co.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                  'name', co.name)
                FROM companies co WHERE co.workspace_id = $1 AND co.id = c.company_id),
    'owner', (SELECT json_build_object(
                'id', translate(encode(convert_to('User:' || o.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                'name', o.name)
              FROM users o WHERE o.workspace_id = $1 AND o.id = c.owner_id),
    'deals', json_build_object('nodes', coalesce((
      SELECT json_agg(json_build_object(
          'id', translate(encode(convert_to('Deal:' || d.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
          'title', d.title, 'amount', d.amount::text, 'currency', d.currency, 'status', upper(d.status),
          'stage', (SELECT json_build_object(
                      'id', translate(encode(convert_to('Stage:' || st.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                      'name', st.name)
                    FROM stages st WHERE st.workspace_id = $1 AND st.id = d.stage_id))
        ORDER BY d.created_at DESC, d.id DESC)
      FROM (SELECT * FROM deals d
            WHERE d.workspace_id = $1 AND d.customer_id = c.id AND d.archived_at IS NULL
            ORDER BY d.created_at DESC, d.id DESC LIMIT 10) d), '[]')),
    'activities', json_build_object('nodes', coalesce((
      SELECT json_agg(json_build_object(
          'id', translate(encode(convert_to('Activity:' || a.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
          'subject', a.subject, 'type', upper(a.type), 'occurredAt', a.occurred_at)
        ORDER BY a.occurred_at DESC, a.id DESC)
      FROM (SELECT * FROM activities a
            WHERE a.workspace_id = $1 AND a.customer_id = c.id AND a.archived_at IS NULL
            ORDER BY a.occurred_at DESC, a.id DESC LIMIT 10) a), '[]')),
    'conversations', json_build_object('nodes', coalesce((
      SELECT json_agg(json_build_object(
          'id', translate(encode(convert_to('Conversation:' || v.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
          'subject', v.subject, 'status', upper(v.status),
          'lastMessage', (SELECT json_build_object(
                            'id', translate(encode(convert_to('Message:' || m.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                            'body', m.body)
                          FROM messages m
                          WHERE m.workspace_id = $1 AND m.conversation_id = v.id AND m.seq = v.last_message_seq))
        ORDER BY v.last_message_at DESC NULLS LAST, v.id DESC)
      FROM (SELECT * FROM conversations v
            WHERE v.workspace_id = $1 AND v.customer_id = c.id
              AND (NOT v.is_private OR v.assignee_id = $3
                   OR EXISTS (SELECT 1 FROM users w WHERE w.workspace_id = $1 AND w.id = $3
                              AND w.role IN ('admin', 'manager')))
            ORDER BY v.last_message_at DESC NULLS LAST, v.id DESC LIMIT 5) v), '[]')))
  FROM customers c WHERE c.workspace_id = $1 AND c.id = $2)));
