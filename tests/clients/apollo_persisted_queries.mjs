// Apollo Client 3 with its persisted-queries link (automatic persisted queries) against a
// live server: runs each operation of argv's JSON list and prints, as one JSON line, the
// results and every HTTP request the link made (method, whether the document was sent,
// status). Used by tests/api/test_persisted_queries.py; packages pinned in package.json.
//
// Usage: node tests/clients/apollo_persisted_queries.mjs <graphql url> <bearer token|-> \
//          <useGET: true|false> '[{"query": "...", "variables": {...}}, ...]'
import { createHash } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { ApolloClient, HttpLink, InMemoryCache, gql } = require("@apollo/client/core");
const { createPersistedQueryLink } = require("@apollo/client/link/persisted-queries");

const [url, token, useGet, operationsJson] = process.argv.slice(2);
const requests = [];

async function recordingFetch(input, init = {}) {
  const target = new URL(typeof input === "string" ? input : input.url);
  const body = init.body ? JSON.parse(init.body) : null;
  const sentQuery = body ? typeof body.query === "string" : target.searchParams.has("query");
  const response = await fetch(input, init);
  requests.push({ method: init.method || "GET", sentQuery, status: response.status });
  return response;
}

const persisted = createPersistedQueryLink({
  sha256: (text) => createHash("sha256").update(text).digest("hex"),
  useGETForHashedQueries: useGet === "true",
});
const http = new HttpLink({
  uri: url,
  fetch: recordingFetch,
  headers: token && token !== "-" ? { authorization: `Bearer ${token}` } : {},
});
const client = new ApolloClient({
  link: persisted.concat(http),
  cache: new InMemoryCache(),
  defaultOptions: { query: { fetchPolicy: "no-cache" }, mutate: { fetchPolicy: "no-cache" } },
});

const results = [];
for (const operation of JSON.parse(operationsJson)) {
  const before = requests.length;
  const document = gql(operation.query);
  const isMutation = document.definitions.some((d) => d.operation === "mutation");
  try {
    const result = isMutation
      ? await client.mutate({ mutation: document, variables: operation.variables })
      : await client.query({ query: document, variables: operation.variables });
    results.push({ data: result.data, requests: requests.slice(before) });
  } catch (error) {
    results.push({ error: String(error), requests: requests.slice(before) });
  }
}
console.log(JSON.stringify(results));
