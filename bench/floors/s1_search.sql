-- S1 floor: the same hits as bench/queries/s1_search.graphql, answered by one hand-written
-- statement that builds the whole JSON response, for an admin of the bench workspace
-- (an admin sees every conversation; archived rows are left out as the lists do).
-- Parameters:
--   $1  the workspace id (uuid)
--   $2  the query's folded word, e.g. ana                                 (text)
--   $3  the end of the word's prefix range: its last letter + 1, e.g. anb  (text)
--   $4  the word as a prefix tsquery, e.g. 'ana':*                        (text)
-- For a 2-4 letter query of ASCII letters, its folded word is its lower-case form.
-- Names first, from search_terms (migration 0017): for each term of the range (skipping
-- through the index), its first 21 visible documents in index order (weight, id), which
-- is their score order for that term; a document scores its best term. Whole values equal
-- to the word (exact) come from their partial index. Bodies only when the names give less
-- than a page (as the service); a one-word hit in bodies only always scores 1 + 0.125/4
-- (tier 1, no names band, the bodies' weight D), so those are in id order.
WITH RECURSIVE vocabulary (term) AS (
  (SELECT t.term FROM search_terms t
   WHERE t.workspace_id = $1 AND t.term >= $2 AND t.term < $3 ORDER BY t.term LIMIT 1)
  UNION ALL
  SELECT (SELECT t.term FROM search_terms t
          WHERE t.workspace_id = $1 AND t.term > v.term AND t.term < $3
          ORDER BY t.term LIMIT 1)
  FROM vocabulary v WHERE v.term IS NOT NULL
), term_hits AS (
  SELECT e.id, e.entity_type, e.score
  FROM vocabulary v CROSS JOIN LATERAL (
    SELECT t.id, t.entity_type,
           (CASE WHEN t.term = $2 THEN CASE WHEN t.exact THEN 3 ELSE 2 END ELSE 1 END)::float8
           + 0.5 + t.weight::float8 / 4 AS score
    FROM search_terms t
    WHERE t.workspace_id = $1 AND t.term = v.term
      AND CASE t.entity_type
            WHEN 'customer' THEN EXISTS (SELECT FROM customers c WHERE c.id = t.id
                                         AND c.workspace_id = $1 AND c.archived_at IS NULL)
            WHEN 'company' THEN EXISTS (SELECT FROM companies co WHERE co.id = t.id
                                        AND co.workspace_id = $1 AND co.archived_at IS NULL)
            WHEN 'deal' THEN EXISTS (SELECT FROM deals dl WHERE dl.id = t.id
                                     AND dl.workspace_id = $1 AND dl.archived_at IS NULL)
            WHEN 'conversation' THEN EXISTS (SELECT FROM conversations cv WHERE cv.id = t.id
                                             AND cv.workspace_id = $1)
            ELSE EXISTS (SELECT FROM activities a WHERE a.id = t.id
                         AND a.workspace_id = $1 AND a.archived_at IS NULL)
          END
    ORDER BY t.weight DESC, t.id
    LIMIT 21) e
  UNION ALL
  SELECT t.id, t.entity_type, 3.5 + t.weight::float8 / 4
  FROM search_terms t
  WHERE t.workspace_id = $1 AND t.term = $2 AND t.exact
    AND CASE t.entity_type
          WHEN 'customer' THEN EXISTS (SELECT FROM customers c WHERE c.id = t.id
                                       AND c.workspace_id = $1 AND c.archived_at IS NULL)
          WHEN 'company' THEN EXISTS (SELECT FROM companies co WHERE co.id = t.id
                                      AND co.workspace_id = $1 AND co.archived_at IS NULL)
          WHEN 'deal' THEN EXISTS (SELECT FROM deals dl WHERE dl.id = t.id
                                   AND dl.workspace_id = $1 AND dl.archived_at IS NULL)
          WHEN 'conversation' THEN EXISTS (SELECT FROM conversations cv WHERE cv.id = t.id
                                           AND cv.workspace_id = $1)
          ELSE EXISTS (SELECT FROM activities a WHERE a.id = t.id
                       AND a.workspace_id = $1 AND a.archived_at IS NULL)
        END
), best AS (
  SELECT h.id, h.entity_type, max(h.score) AS score
  FROM term_hits h GROUP BY h.id, h.entity_type
  ORDER BY score DESC, h.id
  LIMIT 21
), named AS (
  SELECT b.id, b.entity_type, b.score,
         c.name AS c_name, c.email AS c_email, co.name AS co_name, dl.title AS dl_title,
         cv.subject AS cv_subject, a.subject AS a_subject
  FROM best b
  LEFT JOIN customers c ON b.entity_type = 'customer' AND c.id = b.id
  LEFT JOIN companies co ON b.entity_type = 'company' AND co.id = b.id
  LEFT JOIN deals dl ON b.entity_type = 'deal' AND dl.id = b.id
  LEFT JOIN conversations cv ON b.entity_type = 'conversation' AND cv.id = b.id
  LEFT JOIN activities a ON b.entity_type = 'activity' AND a.id = b.id
), in_bodies AS (
  SELECT d.id, d.entity_type, 1.03125::float8 AS score,
         c.name AS c_name, c.email AS c_email, co.name AS co_name, dl.title AS dl_title,
         cv.subject AS cv_subject, a.subject AS a_subject
  FROM search_documents d
  LEFT JOIN customers c ON d.entity_type = 'customer' AND c.id = d.id
       AND c.workspace_id = $1 AND c.archived_at IS NULL
  LEFT JOIN companies co ON d.entity_type = 'company' AND co.id = d.id
       AND co.workspace_id = $1 AND co.archived_at IS NULL
  LEFT JOIN deals dl ON d.entity_type = 'deal' AND dl.id = d.id
       AND dl.workspace_id = $1 AND dl.archived_at IS NULL
  LEFT JOIN conversations cv ON d.entity_type = 'conversation' AND cv.id = d.id
       AND cv.workspace_id = $1
  LEFT JOIN activities a ON d.entity_type = 'activity' AND a.id = d.id
       AND a.workspace_id = $1 AND a.archived_at IS NULL
  WHERE d.workspace_id = $1 AND d.document @@ $4::tsquery AND NOT d.names @@ $4::tsquery
    AND (SELECT count(*) FROM named) <= 20
    AND (c.id IS NOT NULL OR co.id IS NOT NULL OR dl.id IS NOT NULL
         OR cv.id IS NOT NULL OR a.id IS NOT NULL)
  ORDER BY d.id
  LIMIT 21
), hits AS (
  SELECT * FROM named UNION ALL SELECT * FROM in_bodies ORDER BY score DESC, id LIMIT 21
), numbered AS (
  SELECT h.*, row_number() OVER (ORDER BY h.score DESC, h.id) AS rn FROM hits h
)
SELECT json_build_object('data', json_build_object('search', json_build_object(
  'edges', coalesce(json_agg(json_build_object(
      'score', n.score,
      'node', CASE n.entity_type
        WHEN 'customer' THEN json_build_object('__typename', 'Customer',
          'id', rtrim(translate(encode(convert_to('Customer:' || n.id::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='),
          'name', n.c_name, 'email', n.c_email)
        WHEN 'company' THEN json_build_object('__typename', 'Company',
          'id', rtrim(translate(encode(convert_to('Company:' || n.id::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='),
          'name', n.co_name)
        WHEN 'deal' THEN json_build_object('__typename', 'Deal',
          'id', rtrim(translate(encode(convert_to('Deal:' || n.id::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='),
          'title', n.dl_title)
        WHEN 'conversation' THEN json_build_object('__typename', 'Conversation',
          'id', rtrim(translate(encode(convert_to('Conversation:' || n.id::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='),
          'subject', n.cv_subject)
        ELSE json_build_object('__typename', 'Activity',
          'id', rtrim(translate(encode(convert_to('Activity:' || n.id::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '='),
          'activitySubject', n.a_subject)
      END) ORDER BY n.rn) FILTER (WHERE n.rn <= 20), '[]'),
  'pageInfo', json_build_object('hasNextPage', count(*) > 20))))::text
FROM numbered n;
