// The graphql-http audit suite (GraphQL over HTTP spec conformance) against a live server.
//
// Usage: node scripts/graphql_http_audit.mjs http://127.0.0.1:8000/graphql [bearer-token]
// Prints one JSON line per audit ({id, name, status, reason}) and a summary line
// {"ok": N, "notice": N, "warn": N, "error": N}; exits 1 when any audit warned or failed
// (a notice is a MAY of the spec left out).
// graphql-http is pinned in package.json (devDependencies); `make setup` installs it.
import { serverAudits } from "graphql-http";

const [url, token] = process.argv.slice(2);
if (!url) {
  console.error("usage: graphql_http_audit.mjs <graphql url> [bearer token]");
  process.exit(2);
}

// With a token, every audit request carries it (the audits themselves send no credentials).
const fetchFn = token
  ? (input, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${token}`);
      return fetch(input, { ...init, headers });
    }
  : fetch;

const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  counts[result.status] += 1;
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== "ok") {
    line.reason = result.reason;
    // The response the audit judged, for the report (its body may be large).
    try {
      line.response = {
        status: result.response.status,
        contentType: result.response.headers.get("content-type"),
        body: (await result.response.text()).slice(0, 300),
      };
    } catch {
      // The body was already read by the audit.
    }
  }
  console.log(JSON.stringify(line));
}
console.log(JSON.stringify(counts));
process.exit(counts.warn || counts.error ? 1 : 0);
