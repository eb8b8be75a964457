// Runs the frontend client (customers.ts) from Node against a live server and prints one
// JSON line: the pages it read and how each kind of failure was reported. Bundled and
// run by tests/test_examples.py:
//   CRM_URL=http://127.0.0.1:8000/graphql CRM_TOKEN=<accessToken> node run.mjs
import {
  API_KEYS,
  CUSTOMERS,
  CrmRequestError,
  type CrmError,
  createCrmClient,
  customerPages,
  query,
} from "./customers";

// The little of Node this runner uses (the client itself needs only fetch).
declare const process: { env: Record<string, string | undefined>; exitCode?: number };

async function failure(run: () => Promise<unknown>): Promise<CrmError | null> {
  try {
    await run();
    return null;
  } catch (error) {
    if (error instanceof CrmRequestError) return error.detail;
    throw error;
  }
}

async function main(): Promise<void> {
  const url = process.env.CRM_URL ?? "http://127.0.0.1:8000/graphql";
  const token = process.env.CRM_TOKEN;
  if (!token) throw new Error("Set CRM_TOKEN to an access token (the login mutation's)");
  const client = createCrmClient(url, token);
  const waits: number[] = [];
  const options = { maxRetries: 10, onRateLimited: (s: number) => waits.push(s) };

  const pages: string[][] = [];
  let totalCount = 0;
  for await (const page of customerPages(client, Number(process.env.CRM_PAGE_SIZE ?? "20"), options)) {
    pages.push(page.nodes.map((customer) => customer.name));
    totalCount = page.totalCount;
  }
  const firstPage = { first: 1, after: null };
  const errors = {
    forbidden: await failure(() => query(client, API_KEYS, {}, options)),
    badToken: await failure(() => query(createCrmClient(url, "not-a-token"), CUSTOMERS, firstPage)),
    badCursor: await failure(() => query(client, CUSTOMERS, { first: 1, after: "nonsense" }, options)),
    unreachable: await failure(() =>
      query(createCrmClient("http://127.0.0.1:9/graphql", token), CUSTOMERS, firstPage),
    ),
  };
  console.log(JSON.stringify({ pages, totalCount, rateLimitedWaits: waits, errors }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
