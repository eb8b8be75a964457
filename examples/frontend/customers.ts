// A frontend's GraphQL client for the CRM API (urql), ready for a browser bundle: typed
// documents, cursor pagination, and errors turned into what a screen can act on (log in
// again, wait and retry, show a message). examples/frontend/run.ts drives it from Node.
import { type AnyVariables, Client, type CombinedError, fetchExchange, gql } from "@urql/core";
import type { TypedDocumentNode } from "@urql/core";

export interface Customer {
  id: string;
  name: string;
  email: string | null;
}

interface PageInfo {
  hasNextPage: boolean;
  endCursor: string | null;
}

export interface CustomersPage {
  customers: { nodes: Customer[]; pageInfo: PageInfo; totalCount: number };
}

export interface CustomersVariables {
  first: number;
  after: string | null;
}

/** One page of customers, in the API's default order; `endCursor` asks for the next. */
export const CUSTOMERS = gql<CustomersPage, CustomersVariables>`
  query Customers($first: Int!, $after: String) {
    customers(first: $first, after: $after) {
      totalCount
      nodes { id name email }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

/** Something an agent may not read (API keys: admins only): a FORBIDDEN error. */
export const API_KEYS = gql<{ apiKeys: { totalCount: number } }, Record<string, never>>`
  query ApiKeys { apiKeys { totalCount } }
`;

export function createCrmClient(url: string, accessToken: string): Client {
  return new Client({
    url,
    exchanges: [fetchExchange],
    // Every page is read from the server: this example keeps no cache.
    requestPolicy: "network-only",
    // POST: ids and search text stay out of URLs (and so out of access logs).
    preferGetMethod: false,
    fetchOptions: () => ({
      headers: {
        Authorization: `Bearer ${accessToken}`,
        // One JSON answer per query, with HTTP status codes that mean what they say (a
        // request error is a 400, a refused token a 401, a rate limit a 429).
        Accept: "application/graphql-response+json",
      },
    }),
  });
}

/** What went wrong, in the terms a screen acts on. */
export type CrmError =
  | { kind: "network"; message: string }
  | { kind: "unauthenticated"; message: string }
  | { kind: "rateLimited"; retryAfterSeconds: number }
  | { kind: "graphql"; codes: string[]; messages: string[] };

export class CrmRequestError extends Error {
  constructor(readonly detail: CrmError) {
    super(`${detail.kind}: ${JSON.stringify(detail)}`);
  }
}

/** Sort an urql error into ``CrmError``: by the errors' ``extensions.code`` (the API codes
 * every error) and the HTTP status, then as a network failure. */
export function describeError(error: CombinedError): CrmError {
  const codes = error.graphQLErrors.map((e) => String(e.extensions?.code ?? "UNKNOWN"));
  const messages = error.graphQLErrors.map((e) => e.message);
  const response = error.response as Response | undefined;
  if (codes.includes("RATE_LIMITED") || response?.status === 429) {
    const hinted = error.graphQLErrors
      .map((e) => Number(e.extensions?.retryAfter))
      .find((seconds) => Number.isFinite(seconds) && seconds > 0);
    const header = Number(response?.headers.get("Retry-After"));
    return { kind: "rateLimited", retryAfterSeconds: hinted ?? (header > 0 ? header : 1) };
  }
  if (codes.includes("UNAUTHENTICATED") || response?.status === 401) {
    return { kind: "unauthenticated", message: messages[0] ?? "Log in again" };
  }
  if (codes.length === 0 && error.networkError) {
    return { kind: "network", message: error.networkError.message };
  }
  return { kind: "graphql", codes, messages };
}

export interface RetryOptions {
  /** How many times a rate-limited request is sent again after waiting. */
  maxRetries?: number;
  /** Called before each wait (a screen shows "busy, retrying in N s"). */
  onRateLimited?: (seconds: number) => void;
  sleep?: (ms: number) => Promise<void>;
}

const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Run a query; a rate-limited one waits what the server said and goes again. Anything
 * else that fails throws ``CrmRequestError``. */
export async function query<Data, Variables extends AnyVariables>(
  client: Client,
  document: TypedDocumentNode<Data, Variables>,
  variables: Variables,
  { maxRetries = 3, onRateLimited, sleep = wait }: RetryOptions = {},
): Promise<Data> {
  for (let attempt = 0; ; attempt += 1) {
    const result = await client.query(document, variables).toPromise();
    if (result.error === undefined && result.data !== undefined) {
      return result.data;
    }
    const detail: CrmError = result.error
      ? describeError(result.error)
      : { kind: "graphql", codes: ["NO_DATA"], messages: ["The answer had no data"] };
    if (detail.kind === "rateLimited" && attempt < maxRetries) {
      onRateLimited?.(detail.retryAfterSeconds);
      await sleep(detail.retryAfterSeconds * 1000);
      continue;
    }
    throw new CrmRequestError(detail);
  }
}

/** Every customer, a page at a time: follows ``endCursor`` until ``hasNextPage`` is false. */
export async function* customerPages(
  client: Client,
  pageSize: number,
  options: RetryOptions = {},
): AsyncGenerator<CustomersPage["customers"]> {
  let after: string | null = null;
  for (;;) {
    const page: CustomersPage = await query(client, CUSTOMERS, { first: pageSize, after }, options);
    yield page.customers;
    if (!page.customers.pageInfo.hasNextPage) return;
    after = page.customers.pageInfo.endCursor;
  }
}
