// Follow the agent inbox with the official graphql-ws client (Node 18+).
//   CRM_TOKEN=<accessToken> node examples/subscribe.mjs
// Optional: CRM_URL (default ws://127.0.0.1:8000/graphql), CRM_AFTER (resume cursor),
// CRM_MAX_EVENTS (stop after that many events).
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const client = createClient({
  url: process.env.CRM_URL ?? "ws://127.0.0.1:8000/graphql",
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${process.env.CRM_TOKEN}` },
});

const query = `subscription ($after: String) {
  inbox(after: $after) {
    cursor
    type
    conversation { id subject status }
    message { seq body authorType }
  }
}`;

let seen = 0;
const max = Number(process.env.CRM_MAX_EVENTS ?? Infinity);
for await (const result of client.iterate({ query, variables: { after: process.env.CRM_AFTER ?? null } })) {
  console.log(JSON.stringify(result));
  // Keep result.data.inbox.cursor: subscribe again with it as `after` to miss nothing.
  if (++seen >= max) break;
}
await client.dispose();
