// The GraphQL client: urql over HTTP for queries and mutations, graphql-ws for
// subscriptions on the same /graphql path. Both send the session's access token; the
// WebSocket sends it in connection_init (browsers cannot set handshake headers).
import { Client, cacheExchange, fetchExchange, mapExchange, subscriptionExchange } from "@urql/core";
import { createClient as createWsClient, type Client as WsClient } from "graphql-ws";

import { GRAPHQL_PATH, type SessionStore } from "./session";

/** The subscription socket: idle (no subscription), connecting, live, or retrying after
 * it dropped (shown in the header; the live views reload on every (re)connection, so an
 * event missed while the socket was down is not lost). */
export type LiveStatus = "idle" | "connecting" | "live" | "retrying";

/** Reconnection waits: 0.5 s doubling up to 5 s, plus up to 1 s of jitter (so a restarted
 * server is not hit by every console at once). graphql-ws's default doubles without end. */
export function retryDelayMs(retries: number): number {
  return Math.min(500 * 2 ** retries, 5_000) + Math.random() * 1_000;
}

export class LiveConnection {
  status: LiveStatus = "idle";
  /** The graphql-ws client, for streams that resume by cursor (see `resumable`). */
  socket: WsClient | null = null;
  /** Counts connections; a view that depends on live events reloads when it changes. */
  epoch = 0;
  private listeners = new Set<() => void>();

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(status: LiveStatus): void {
    if (status === "live") this.epoch += 1;
    this.status = status;
    for (const listener of this.listeners) listener();
  }
}

function authorization(store: SessionStore): Record<string, string> {
  const session = store.current;
  return session ? { Authorization: `Bearer ${session.accessToken}` } : {};
}

export function createClient(store: SessionStore, live: LiveConnection): Client {
  let connectedBefore = false;
  const ws = createWsClient({
    url: new URL(GRAPHQL_PATH, window.location.href).href.replace(/^http/, "ws"),
    lazy: true,
    // Moving between live pages closes one subscription and opens another: keep the socket.
    lazyCloseTimeout: 5_000,
    connectionParams: () => authorization(store),
    retryAttempts: Number.POSITIVE_INFINITY,
    retryWait: (retries) => new Promise((resolve) => window.setTimeout(resolve, retryDelayMs(retries))),
    shouldRetry: () => true,
    on: {
      connecting: () => live.set(connectedBefore ? "retrying" : "connecting"),
      connected: () => {
        connectedBefore = true;
        live.set("live");
      },
      // A lazy client closes once no subscription is left; any other close is retried.
      closed: (event) => live.set((event as CloseEvent).code === 1000 ? "idle" : "retrying"),
    },
  });
  live.socket = ws;
  return new Client({
    url: GRAPHQL_PATH,
    requestPolicy: "cache-and-network",
    // POST, not urql's default GET for queries: search text and ids would otherwise sit in
    // URLs, i.e. in access logs and proxies' logs.
    preferGetMethod: false,
    fetchOptions: () => ({ headers: authorization(store) }),
    exchanges: [
      cacheExchange,
      mapExchange({
        onError(error) {
          // An access token that expired early (clock skew, a sleeping laptop): refresh;
          // when the login has ended the store logs out and the login page shows.
          const codes = error.graphQLErrors.map((e) => e.extensions?.code);
          if (codes.includes("UNAUTHENTICATED") || error.response?.status === 401) {
            void store.refresh();
          }
        },
      }),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const operation = { ...request, query: request.query ?? "" };
          return {
            subscribe(sink) {
              return { unsubscribe: ws.subscribe(operation, sink) };
            },
          };
        },
      }),
    ],
  });
}

/** A subscription whose field takes `after: <cursor>` and whose events carry `cursor`:
 * graphql-ws subscribes again by itself after every reconnection, sending the payload
 * object it was given; its `after` is a getter, so each (re)subscription asks for what
 * came after the last event this page received, not after the first cursor. Nothing is
 * lost while the socket was down, and nothing is sent twice. Returns the unsubscribe. */
export function resumable<E extends { cursor: string }>(
  live: LiveConnection,
  query: string,
  variables: Record<string, unknown>,
  field: string,
  handlers: { event: (event: E) => void; error?: (message: string) => void },
  after: string | null = null,
): () => void {
  const socket = live.socket;
  if (!socket) throw new Error("no live connection");
  let last = after;
  const payload = {
    query,
    variables: {
      ...variables,
      get after() {
        return last;
      },
    },
  };
  return socket.subscribe<Record<string, E>>(payload, {
    next(result) {
      const event = result.data?.[field];
      if (event) {
        last = event.cursor;
        handlers.event(event);
      } else if (result.errors?.length) handlers.error?.(result.errors[0].message);
    },
    error(error) {
      const errors = error as { message?: string }[];
      handlers.error?.(Array.isArray(errors) ? (errors[0]?.message ?? "refused") : "connection failed");
    },
    complete() {},
  });
}
