// Lists of the records behind a report's number (a drill-down): deals and orders, as a
// table paged by keyset cursor, narrowed by the drill-down's filter from the URL.
import type { ComponentChildren } from "preact";
import { useQuery } from "@urql/preact";
import { useEffect, useMemo, useState } from "preact/hooks";

import { type Drill, DrillBanner } from "../drill";
import DealListDocument from "../operations/DealList.graphql";
import OrderListDocument from "../operations/OrderList.graphql";
import { Link } from "../router";
import { Empty, ErrorState, Loading, Pager, formatDate, formatMoney, humanize } from "../ui";

const PAGE_SIZE = 25;

interface Connection<T> {
  totalCount: number;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  nodes: T[];
}

interface Column<T> {
  label: string;
  cell: (row: T) => ComponentChildren;
  numeric?: boolean;
}

/** One list's rows under `filter`, a page at a time. */
function RecordTable<T extends { id: string }>(props: {
  document: string;
  list: string;
  filter: Record<string, unknown> | null;
  columns: Column<T>[];
  noun: [string, string];
  caption: string;
}) {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  useEffect(() => setCursors([null]), [props.filter]);
  const after = cursors[cursors.length - 1];
  const variables = useMemo(() => ({ first: PAGE_SIZE, after, filter: props.filter }), [after, props.filter]);
  const [result, reexecute] = useQuery<Record<string, Connection<T>>>({ query: props.document, variables });
  const data = result.data?.[props.list];
  if (result.error && !data) {
    return <ErrorState error={result.error} retry={() => reexecute({ requestPolicy: "network-only" })} />;
  }
  if (!data) return <Loading what={props.noun[1]} />;
  return (
    <>
      <p class="count" aria-live="polite">
        {data.totalCount} {data.totalCount === 1 ? props.noun[0] : props.noun[1]}
        {result.stale || result.fetching ? " · updating…" : ""}
      </p>
      {data.nodes.length === 0 ? (
        <Empty>No {props.noun[1]} here.</Empty>
      ) : (
        <div class="table-wrap">
          <table class="records" data-list={props.list}>
            <caption class="visually-hidden">{props.caption}</caption>
            <thead>
              <tr>
                {props.columns.map((c) => (
                  <th key={c.label} scope="col" class={c.numeric ? "num" : undefined}>
                    {c.label}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {data.nodes.map((row) => (
                <tr key={row.id} data-id={row.id}>
                  {props.columns.map((c) => (
                    <td key={c.label} class={c.numeric ? "num" : undefined}>
                      {c.cell(row)}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager cursors={cursors} setCursors={setCursors} pageInfo={data.pageInfo} />
    </>
  );
}

function CustomerCell(props: { customer: { id: string; name: string } | null }) {
  return props.customer ? (
    <Link href={`/customers/${encodeURIComponent(props.customer.id)}`}>{props.customer.name}</Link>
  ) : (
    <>—</>
  );
}

interface DealRow {
  id: string;
  title: string;
  amount: string;
  currency: string;
  status: string;
  expectedCloseDate: string | null;
  closedAt: string | null;
  stage: { name: string } | null;
  owner: { name: string } | null;
  customer: { id: string; name: string } | null;
}

const DEAL_COLUMNS: Column<DealRow>[] = [
  { label: "Deal", cell: (d) => d.title },
  { label: "Customer", cell: (d) => <CustomerCell customer={d.customer} /> },
  { label: "Stage", cell: (d) => d.stage?.name ?? "—" },
  { label: "Status", cell: (d) => humanize(d.status) },
  { label: "Amount", cell: (d) => formatMoney(d.amount, d.currency), numeric: true },
  { label: "Owner", cell: (d) => d.owner?.name ?? "—" },
  { label: "Expected close", cell: (d) => formatDate(d.expectedCloseDate) },
  { label: "Closed", cell: (d) => formatDate(d.closedAt) },
];

/** The deals of a drill-down (the deals page shows them instead of the board). */
export function DealList(props: { drill: Drill }) {
  return (
    <section aria-labelledby="deals-title">
      <div class="page-head">
        <h1 id="deals-title">Deals</h1>
      </div>
      <DrillBanner drill={props.drill} clear="/deals" clearLabel="Show the board" />
      <RecordTable
        document={DealListDocument}
        list="deals"
        filter={props.drill.filter}
        columns={DEAL_COLUMNS}
        noun={["deal", "deals"]}
        caption={`Deals: ${props.drill.label}`}
      />
    </section>
  );
}

interface OrderRow {
  id: string;
  number: string;
  status: string;
  amount: string;
  currency: string;
  placedAt: string;
  customer: { id: string; name: string } | null;
}

const ORDER_COLUMNS: Column<OrderRow>[] = [
  { label: "Order", cell: (o) => o.number },
  { label: "Customer", cell: (o) => <CustomerCell customer={o.customer} /> },
  { label: "Status", cell: (o) => humanize(o.status) },
  { label: "Amount", cell: (o) => formatMoney(o.amount, o.currency), numeric: true },
  { label: "Placed", cell: (o) => formatDate(o.placedAt) },
];

/** Orders, newest first: all of them, or a drill-down's (the revenue chart's months). */
export function OrdersPage(props: { drill: Drill | null }) {
  return (
    <section aria-labelledby="orders-title">
      <div class="page-head">
        <h1 id="orders-title">Orders</h1>
      </div>
      {props.drill && <DrillBanner drill={props.drill} clear="/orders" clearLabel="Show all orders" />}
      <RecordTable
        document={OrderListDocument}
        list="orders"
        filter={props.drill?.filter ?? null}
        columns={ORDER_COLUMNS}
        noun={["order", "orders"]}
        caption={props.drill ? `Orders: ${props.drill.label}` : "Orders"}
      />
    </section>
  );
}
