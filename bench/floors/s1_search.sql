-- S1 floor: the same hits as bench/queries/s1_search.graphql, answered by one hand-written
-- statement that builds the whole JSON response, for an admin of the bench workspace
-- (an admin sees every conversation; archived rows are left out as the lists do).
-- Parameters:
--   $1  the workspace id (uuid)
--   $2  the query's folded word, e.g. ana                                 (text)
--   $3  the end of the word's prefix range: its last letter + 1, e.g. anb  (text)
--   $4  the word as a prefix tsquery, e.g. 'ana':*                        (text)
-- For a 2-4 letter query of ASCII letters, its folded word is its lower-case form.
-- Names first, from search_terms (migration 0017), in the service's stages, best first:
-- the word is a whole value (3.5 + weight / 4), a whole word (2.5 + weight / 4), or starts
-- a longer word of weight A, then B, then C (1.5 + weight / 4); within a stage, id order,
-- the index's. A stage of longer words reads, for each term of its weight in the range
-- (skipping through the index), its first 21 visible documents, and runs only when the
-- stages before found less than 21 documents. A document scores its best stage. Bodies
-- only when the names give less than a page (as the service); a one-word hit in bodies
-- only always scores 1 + 0.125/4 (tier 1, no names band, the bodies' weight D), so those
-- are in id order.
WITH RECURSIVE terms_a (term) AS (
  (SELECT t.term FROM search_terms t
   WHERE t.workspace_id = $1 AND t.weight = 1 AND t.term > $2 AND t.term < $3
   ORDER BY t.term LIMIT 1)
  UNION ALL
  SELECT (SELECT t.term FROM search_terms t
          WHERE t.workspace_id = $1 AND t.weight = 1 AND t.term > v.term AND t.term < $3
          ORDER BY t.term LIMIT 1)
  FROM terms_a v WHERE v.term IS NOT NULL
), terms_b (term) AS (
  (SELECT t.term FROM search_terms t
   WHERE t.workspace_id = $1 AND t.weight = 0.5 AND t.term > $2 AND t.term < $3
   ORDER BY t.term LIMIT 1)
  UNION ALL
  SELECT (SELECT t.term FROM search_terms t
          WHERE t.workspace_id = $1 AND t.weight = 0.5 AND t.term > v.term AND t.term < $3
          ORDER BY t.term LIMIT 1)
  FROM terms_b v WHERE v.term IS NOT NULL
), terms_c (term) AS (
  (SELECT t.term FROM search_terms t
   WHERE t.workspace_id = $1 AND t.weight = 0.25 AND t.term > $2 AND t.term < $3
   ORDER BY t.term LIMIT 1)
  UNION ALL
  SELECT (SELECT t.term FROM search_terms t
          WHERE t.workspace_id = $1 AND t.weight = 0.25 AND t.term > v.term AND t.term < $3
          ORDER BY t.term LIMIT 1)
  FROM terms_c v WHERE v.term IS NOT NULL
),
stage_0 AS (
  SELECT t.id, t.entity_type, 3.5 + t.weight::float8 / 4 AS score
  FROM search_terms t
  WHERE t.workspace_id = $1 AND t.term = $2 AND t.exact
    AND coalesce(CASE t.entity_type
             WHEN 'customer' THEN (SELECT true FROM customers c WHERE c.id = t.id
                                   AND c.workspace_id = $1 AND c.archived_at IS NULL)
             WHEN 'company' THEN (SELECT true FROM companies co WHERE co.id = t.id
                                  AND co.workspace_id = $1 AND co.archived_at IS NULL)
             WHEN 'deal' THEN (SELECT true FROM deals dl WHERE dl.id = t.id
                               AND dl.workspace_id = $1 AND dl.archived_at IS NULL)
             WHEN 'conversation' THEN (SELECT true FROM conversations cv WHERE cv.id = t.id
                                       AND cv.workspace_id = $1)
             WHEN 'activity' THEN (SELECT true FROM activities a WHERE a.id = t.id
                                   AND a.workspace_id = $1 AND a.archived_at IS NULL)
           END, false)
  ORDER BY t.weight DESC, t.id
  LIMIT 21
), stage_1 AS (
  SELECT e.id, e.entity_type, e.score
  FROM (VALUES (1::real), (0.5::real), (0.25::real)) AS w (weight) CROSS JOIN LATERAL (
    SELECT t.id, t.entity_type, 2.5 + t.weight::float8 / 4 AS score
    FROM search_terms t
    WHERE t.workspace_id = $1 AND t.weight = w.weight AND t.term = $2 AND NOT t.exact
      AND coalesce(CASE t.entity_type
             WHEN 'customer' THEN (SELECT true FROM customers c WHERE c.id = t.id
                                   AND c.workspace_id = $1 AND c.archived_at IS NULL)
             WHEN 'company' THEN (SELECT true FROM companies co WHERE co.id = t.id
                                  AND co.workspace_id = $1 AND co.archived_at IS NULL)
             WHEN 'deal' THEN (SELECT true FROM deals dl WHERE dl.id = t.id
                               AND dl.workspace_id = $1 AND dl.archived_at IS NULL)
             WHEN 'conversation' THEN (SELECT true FROM conversations cv WHERE cv.id = t.id
                                       AND cv.workspace_id = $1)
             WHEN 'activity' THEN (SELECT true FROM activities a WHERE a.id = t.id
                                   AND a.workspace_id = $1 AND a.archived_at IS NULL)
           END, false)
    ORDER BY t.id
    LIMIT 21) e
), stage_2 AS (
  SELECT e.id, e.entity_type, e.score
  FROM terms_a v CROSS JOIN LATERAL (
    SELECT t.id, t.entity_type, 1.75::float8 AS score
    FROM search_terms t
    WHERE t.workspace_id = $1 AND t.weight = 1.0 AND t.term = v.term
      AND coalesce(CASE t.entity_type
             WHEN 'customer' THEN (SELECT true FROM customers c WHERE c.id = t.id
                                   AND c.workspace_id = $1 AND c.archived_at IS NULL)
             WHEN 'company' THEN (SELECT true FROM companies co WHERE co.id = t.id
                                  AND co.workspace_id = $1 AND co.archived_at IS NULL)
             WHEN 'deal' THEN (SELECT true FROM deals dl WHERE dl.id = t.id
                               AND dl.workspace_id = $1 AND dl.archived_at IS NULL)
             WHEN 'conversation' THEN (SELECT true FROM conversations cv WHERE cv.id = t.id
                                       AND cv.workspace_id = $1)
             WHEN 'activity' THEN (SELECT true FROM activities a WHERE a.id = t.id
                                   AND a.workspace_id = $1 AND a.archived_at IS NULL)
           END, false)
    ORDER BY t.id
    LIMIT 21) e
  WHERE (SELECT count(DISTINCT x.id) FROM (SELECT id FROM stage_0 UNION ALL SELECT id FROM stage_1) x) < 21
), stage_3 AS (
  SELECT e.id, e.entity_type, e.score
  FROM terms_b v CROSS JOIN LATERAL (
    SELECT t.id, t.entity_type, 1.625::float8 AS score
    FROM search_terms t
    WHERE t.workspace_id = $1 AND t.weight = 0.5 AND t.term = v.term
      AND coalesce(CASE t.entity_type
             WHEN 'customer' THEN (SELECT true FROM customers c WHERE c.id = t.id
                                   AND c.workspace_id = $1 AND c.archived_at IS NULL)
             WHEN 'company' THEN (SELECT true FROM companies co WHERE co.id = t.id
                                  AND co.workspace_id = $1 AND co.archived_at IS NULL)
             WHEN 'deal' THEN (SELECT true FROM deals dl WHERE dl.id = t.id
                               AND dl.workspace_id = $1 AND dl.archived_at IS NULL)
             WHEN 'conversation' THEN (SELECT true FROM conversations cv WHERE cv.id = t.id
                                       AND cv.workspace_id = $1)
             WHEN 'activity' THEN (SELECT true FROM activities a WHERE a.id = t.id
                                   AND a.workspace_id = $1 AND a.archived_at IS NULL)
           END, false)
    ORDER BY t.id
    LIMIT 21) e
  WHERE (SELECT count(DISTINCT x.id) FROM (SELECT id FROM stage_0 UNION ALL SELECT id FROM stage_1 UNION ALL SELECT id FROM stage_2) x) < 21
), stage_4 AS (
  SELECT e.id, e.entity_type, e.score
  FROM terms_c v CROSS JOIN LATERAL (
    SELECT t.id, t.entity_type, 1.5625::float8 AS score
    FROM search_terms t
    WHERE t.workspace_id = $1 AND t.weight = 0.25 AND t.term = v.term
      AND coalesce(CASE t.entity_type
             WHEN 'customer' THEN (SELECT true FROM customers c WHERE c.id = t.id
                                   AND c.workspace_id = $1 AND c.archived_at IS NULL)
             WHEN 'company' THEN (SELECT true FROM companies co WHERE co.id = t.id
                                  AND co.workspace_id = $1 AND co.archived_at IS NULL)
             WHEN 'deal' THEN (SELECT true FROM deals dl WHERE dl.id = t.id
                               AND dl.workspace_id = $1 AND dl.archived_at IS NULL)
             WHEN 'conversation' THEN (SELECT true FROM conversations cv WHERE cv.id = t.id
                                       AND cv.workspace_id = $1)
             WHEN 'activity' THEN (SELECT true FROM activities a WHERE a.id = t.id
                                   AND a.workspace_id = $1 AND a.archived_at IS NULL)
           END, false)
    ORDER BY t.id
    LIMIT 21) e
  WHERE (SELECT count(DISTINCT x.id) FROM (SELECT id FROM stage_0 UNION ALL SELECT id FROM stage_1 UNION ALL SELECT id FROM stage_2 UNION ALL SELECT id FROM stage_3) x) < 21
), best AS (
  SELECT h.id, h.entity_type, max(h.score) AS score
  FROM (SELECT * FROM stage_0 UNION ALL SELECT * FROM stage_1 UNION ALL SELECT * FROM stage_2
        UNION ALL SELECT * FROM stage_3 UNION ALL SELECT * FROM stage_4) h
  GROUP BY h.id, h.entity_type
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
