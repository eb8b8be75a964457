// The official graphql-sse client ("distinct connections" mode) against a live server: one
// subscription, driven by the test through stdin, reporting through stdout (one JSON line
// each). Used by tests/api/test_sse.py; the package is pinned in package.json.
//
// Usage: node tests/clients/graphql_sse_subscription.mjs <graphql url> <bearer token> \
//          '<{"query": "...", "variables": {...}}>' <field>
// stdout: {"connected": <reconnected>, "lastEventId": <header sent or null>} on each
//         connection, {"result": <ExecutionResult>} per result, {"dropped": true} once the
//         connection was cut, {"error": "..."} / {"complete": true} at the end.
// stdin:  "drop" cuts the connection as a network failure would (the client reconnects
//         once "reconnect" comes, sending Last-Event-ID: the last cursor it received);
//         "stop" ends the subscription.
import { createInterface } from "node:readline";
import { createClient } from "graphql-sse";

const [url, token, requestJson, field] = process.argv.slice(2);
const request = JSON.parse(requestJson);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

const waiting = {};
const commands = createInterface({ input: process.stdin });
commands.on("line", (line) => {
  const command = line.trim();
  if (command === "drop") cut();
  const resolve = waiting[command];
  delete waiting[command];
  resolve?.();
});
const command = (name) => new Promise((resolve) => (waiting[name] = resolve));

let lastCursor = null; // the cursor of the last event received: resume after it
let lastHeaders = {};
let current = null; // the abort controller of the open connection's fetch

function cut() {
  current?.abort(new Error("connection dropped by the test"));
  print({ dropped: true });
}

const client = createClient({
  url,
  headers: () => {
    lastHeaders = { authorization: `Bearer ${token}` };
    if (lastCursor) lastHeaders["last-event-id"] = lastCursor;
    return lastHeaders;
  },
  retryAttempts: 3,
  retry: () => command("reconnect"),
  // Each connection gets an abort controller of its own, so that the test can cut it
  // the way a network failure does (the client then retries, as after a real one).
  fetchFn: (input, init) => {
    const own = new AbortController();
    init.signal?.addEventListener("abort", () => own.abort(init.signal.reason));
    current = own;
    return fetch(input, { ...init, signal: own.signal });
  },
  on: {
    connected: (reconnected) =>
      print({ connected: reconnected, lastEventId: lastHeaders["last-event-id"] ?? null }),
  },
});

const unsubscribe = client.subscribe(request, {
  next: (result) => {
    const value = result.data?.[field];
    if (value?.cursor) lastCursor = value.cursor;
    print({ result });
  },
  error: (error) => {
    print({ error: String(error?.message ?? error) });
    process.exit(0);
  },
  complete: () => {
    print({ complete: true });
    process.exit(0);
  },
});

command("stop").then(() => {
  unsubscribe();
  client.dispose();
  print({ complete: true });
  process.exit(0);
});
