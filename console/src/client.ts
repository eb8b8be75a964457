// The GraphQL client: urql over HTTP for queries and mutations, graphql-ws for
// subscriptions on the same /graphql path. Both send the session's access token; the
// WebSocket sends it in connection_init (browsers cannot set handshake headers).
import { Client, cacheExchange, fetchExchange, mapExchange, subscriptionExchange } from "@urql/core";
import { createClient as createWsClient } from "graphql-ws";

import { GRAPHQL_PATH, type SessionStore } from "./session";

function authorization(store: SessionStore): Record<string, string> {
  const session = store.current;
  return session ? { Authorization: `Bearer ${session.accessToken}` } : {};
}

export function createClient(store: SessionStore): Client {
  const ws = createWsClient({
    url: new URL(GRAPHQL_PATH, window.location.href).href.replace(/^http/, "ws"),
    lazy: true,
    connectionParams: () => authorization(store),
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: () => true,
  });
  return new Client({
    url: GRAPHQL_PATH,
    requestPolicy: "cache-and-network",
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
