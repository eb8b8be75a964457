// Follow the agent inbox with the official graphql-ws client (Node 18+).
//   CRM_TOKEN=<accessToken> CRM_REFRESH_TOKEN=<refreshToken> node examples/subscribe.mjs
// Optional: CRM_URL (default ws://127.0.0.1:8000/graphql), CRM_AFTER (resume cursor),
// CRM_MAX_EVENTS (stop after that many events), CRM_REFRESH_TOKEN (renew the access
// token when the server closes the socket because it expired).
//
// The server closes a socket whose credentials end: 4440 when the access token expired
// (or the user's role changed), 4401 when they were revoked. graphql-ws retries 4440 and
// calls `connectionParams` again: that is where a fresh token comes from. It gives up on
// 4401 (API key revoked, user disabled, logged out). Events you missed while away come
// first when it resubscribes, since the request carries the last cursor seen.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const url = process.env.CRM_URL ?? "ws://127.0.0.1:8000/graphql";
let accessToken = process.env.CRM_TOKEN;
let refreshToken = process.env.CRM_REFRESH_TOKEN;
let renew = false; // the server said: this access token no longer does

async function refresh() {
  const response = await fetch(url.replace(/^ws/, "http"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      query: `mutation ($t: String!) {
        refreshToken(input: {refreshToken: $t}) { accessToken refreshToken errors { message } }
      }`,
      variables: { t: refreshToken },
    }),
  });
  const result = (await response.json()).data?.refreshToken;
  if (!result?.accessToken) throw new Error(`refreshToken failed: ${JSON.stringify(result)}`);
  ({ accessToken, refreshToken } = result); // a refresh token works once: keep the new one
}

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: async () => {
    if (renew && refreshToken) {
      await refresh();
      renew = false;
    }
    return { Authorization: `Bearer ${accessToken}` };
  },
  on: {
    connected: () => console.error("connected"),
    closed: (event) => {
      console.error(`closed ${event.code} ${event.reason}`);
      // 4440: expired or role changed; 4403: refused at connection (e.g. expired meanwhile)
      if (event.code === 4440 || event.code === 4403) renew = true;
    },
  },
});

const request = {
  query: `subscription ($after: String) {
    inbox(after: $after) {
      cursor
      type
      conversation { id subject status }
      message { seq body authorType }
    }
  }`,
  variables: { after: process.env.CRM_AFTER ?? null },
};

let seen = 0;
const max = Number(process.env.CRM_MAX_EVENTS ?? Infinity);
await new Promise((resolve, reject) => {
  const stop = client.subscribe(request, {
    next(result) {
      // graphql-ws sends this same request again when it resubscribes after a
      // reconnection: with the last cursor in it, the server resumes right after it.
      request.variables.after = result.data?.inbox?.cursor ?? request.variables.after;
      console.log(JSON.stringify(result));
      if (++seen >= max) {
        stop();
        resolve();
      }
    },
    error: reject,
    complete: resolve,
  });
});
await client.dispose();
