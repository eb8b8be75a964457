-- S1 floor: the same hits as bench/queries/s1_search.graphql, answered by one hand-written
-- statement that builds the whole JSON response, for an admin of the bench workspace
-- (an admin sees every conversation; archived rows are left out as the lists do).
-- Parameters:
--   $1  the workspace id (uuid)
--   $2  the prefix tsquery of the query's folded words, e.g. 'ana':*  (text)
--   $3  the same words as whole words, e.g. 'ana'                        (text)
--   $4  the folded words joined by one space, e.g. ana                   (text)
-- For a 2-4 letter query of ASCII letters, its folded word is its lower-case form.
-- Names and titles first; bodies only when they give less than a page (as the service).
WITH named AS (
  SELECT d.id, d.entity_type,
         (CASE WHEN $4 = ANY (d.exact_keys) THEN 3
               WHEN d.names @@ $3::tsquery THEN 2 ELSE 1 END)::float8
         + (CASE WHEN d.names @@ $2::tsquery THEN 0.5 ELSE 0.0 END)::float8
         + ts_rank('{0.1,0.2,0.4,1.0}'::real[], d.document, $2::tsquery, 32)::float8 / 2 AS score,
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
  WHERE d.workspace_id = $1 AND d.names @@ $2::tsquery
    AND (c.id IS NOT NULL OR co.id IS NOT NULL OR dl.id IS NOT NULL
         OR cv.id IS NOT NULL OR a.id IS NOT NULL)
  ORDER BY score DESC, d.id
  LIMIT 21
), in_bodies AS (
  SELECT d.id, d.entity_type,
         (CASE WHEN $4 = ANY (d.exact_keys) THEN 3
               WHEN d.names @@ $3::tsquery THEN 2 ELSE 1 END)::float8
         + (CASE WHEN d.names @@ $2::tsquery THEN 0.5 ELSE 0.0 END)::float8
         + ts_rank('{0.1,0.2,0.4,1.0}'::real[], d.document, $2::tsquery, 32)::float8 / 2 AS score,
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
  WHERE d.workspace_id = $1 AND d.document @@ $2::tsquery AND NOT d.names @@ $2::tsquery
    AND (SELECT count(*) FROM named) <= 20
    AND (c.id IS NOT NULL OR co.id IS NOT NULL OR dl.id IS NOT NULL
         OR cv.id IS NOT NULL OR a.id IS NOT NULL)
  ORDER BY score DESC, d.id
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
