-- Floor of bench/queries/p2_inbox_page.graphql: the caller's 20 most recently active
-- conversations (last message first, those without messages last, then by id) with
-- customer and company, assignee, unread count and last message with its author, as one
-- JSON document built by PostgreSQL (no cursors, no GraphQL).
-- The API's rules, written out (services/conversations.py): visible_condition (admins and
-- managers see every conversation, other users the non-private ones and the private ones
-- assigned to them), unread_counts (messages past the caller's read receipt, never
-- negative) and last_messages (the message whose seq is the conversation's last).
-- Parameters: $1 workspace id (uuid), $2 the caller's user id (uuid).
SELECT json_build_object('data', json_build_object('conversations', json_build_object(
  'nodes', coalesce(json_agg(json_build_object(
      'id', translate(encode(convert_to('Conversation:' || p.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
      'subject', p.subject, 'status', upper(p.status), 'channel', upper(p.channel),
      'lastMessageAt', p.last_message_at,
      'customer', (SELECT json_build_object(
                     'id', translate(encode(convert_to('Customer:' || cu.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                     'name', cu.name,
                     'company', (SELECT json_build_object(
                                   'id', translate(encode(convert_to('Company:' || co.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                                   'name', co.name)
                                 FROM companies co WHERE co.workspace_id = $1 AND co.id = cu.company_id))
                   FROM customers cu WHERE cu.workspace_id = $1 AND cu.id = p.customer_id),
      'assignee', (SELECT json_build_object(
                     'id', translate(encode(convert_to('User:' || a.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                     'name', a.name)
                   FROM users a WHERE a.workspace_id = $1 AND a.id = p.assignee_id),
      'unreadCount', greatest(p.last_message_seq - coalesce(
                       (SELECT r.last_read_seq FROM conversation_reads r
                        WHERE r.conversation_id = p.id AND r.user_id = $2), 0), 0),
      'lastMessage', (SELECT json_build_object(
                        'id', translate(encode(convert_to('Message:' || m.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                        'body', m.body, 'createdAt', m.created_at,
                        'author', (SELECT json_build_object(
                                     'id', translate(encode(convert_to('User:' || au.id::text, 'UTF8'), 'base64'), E'+/=\n', '-_'),
                                     'name', au.name)
                                   FROM users au WHERE au.workspace_id = $1 AND au.id = m.author_user_id))
                      FROM messages m
                      WHERE m.workspace_id = $1 AND m.conversation_id = p.id AND m.seq = p.last_message_seq))
    ORDER BY p.n) FILTER (WHERE p.n <= 20), '[]'),
  'pageInfo', json_build_object('hasNextPage', count(*) > 20))))
FROM (
  SELECT c.id, c.subject, c.status, c.channel, c.last_message_at, c.last_message_seq,
         c.customer_id, c.assignee_id,
         row_number() OVER (ORDER BY c.last_message_at DESC NULLS LAST, c.id DESC) AS n
  FROM conversations c
  WHERE c.workspace_id = $1
    AND (NOT c.is_private OR c.assignee_id = $2
         OR EXISTS (SELECT 1 FROM users v WHERE v.workspace_id = $1 AND v.id = $2
                    AND v.role IN ('admin', 'manager')))
  ORDER BY c.last_message_at DESC NULLS LAST, c.id DESC
  LIMIT 21
) p;
