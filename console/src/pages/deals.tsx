import { useMutation, useQuery, useSubscription } from "@urql/preact";
import { useState } from "preact/hooks";

import BoardDealsDocument from "../operations/BoardDeals.graphql";
import DealBoardEventsDocument from "../operations/DealBoardEvents.graphql";
import MoveDealDocument from "../operations/MoveDeal.graphql";
import PipelinesDocument from "../operations/Pipelines.graphql";
import { useReloadOnReconnect } from "../live";
import { Link, navigate } from "../router";
import type { UserError } from "../session";
import { Empty, ErrorState, Loading, formatMoney } from "../ui";

interface Stage {
  id: string;
  name: string;
  position: number;
  probability: number;
}

interface PipelinesData {
  pipelines: { nodes: { id: string; name: string; stages: Stage[] }[] };
}

interface BoardDeal {
  id: string;
  title: string;
  amount: string;
  currency: string;
  version: number;
  stage: { id: string } | null;
  owner: { id: string; name: string } | null;
  customer: { id: string; name: string } | null;
}

interface BoardDealsData {
  deals: { totalCount: number; nodes: BoardDeal[] };
}

interface MoveDealData {
  moveDeal: { deal: { id: string; version: number } | null; errors: UserError[] };
}

const DRAG_TYPE = "application/x-crm-deal";

/** Sum of the deals' amounts per currency, as text ("€1,200.00 + $300.00"). */
function columnTotal(deals: BoardDeal[]): string {
  const sums = new Map<string, number>();
  for (const d of deals) sums.set(d.currency, (sums.get(d.currency) ?? 0) + Number(d.amount));
  return [...sums].map(([currency, sum]) => formatMoney(String(sum), currency)).join(" + ");
}

/** A labelled choice of pipeline (the board's, the dashboard's). */
export function PipelineSelect(props: {
  id: string;
  pipelines: { id: string; name: string }[];
  value: string;
  onChange: (id: string) => void;
}) {
  return (
    <div class="field">
      <label for={props.id}>Pipeline</label>
      <select id={props.id} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        {props.pipelines.map((p) => (
          <option key={p.id} value={p.id}>
            {p.name}
          </option>
        ))}
      </select>
    </div>
  );
}

export function DealsPage(props: { pipelineId: string | null; writable: boolean }) {
  const [pipelines, reloadPipelines] = useQuery<PipelinesData>({ query: PipelinesDocument });
  if (pipelines.error && !pipelines.data) {
    return <ErrorState error={pipelines.error} retry={() => reloadPipelines({ requestPolicy: "network-only" })} />;
  }
  if (!pipelines.data) return <Loading what="pipelines" />;
  const all = pipelines.data.pipelines.nodes;
  const pipeline = all.find((p) => p.id === props.pipelineId) ?? all[0];
  if (!pipeline) return <Empty>No pipelines yet.</Empty>;
  return (
    <section aria-labelledby="deals-title">
      <div class="page-head">
        <h1 id="deals-title">Deals</h1>
        <PipelineSelect id="board-pipeline" pipelines={all} value={pipeline.id} onChange={(id) => navigate(`/deals/${encodeURIComponent(id)}`)} />
      </div>
      <Board key={pipeline.id} pipelineId={pipeline.id} stages={pipeline.stages} writable={props.writable} />
    </section>
  );
}

function Board(props: { pipelineId: string; stages: Stage[]; writable: boolean }) {
  const [result, reexecute] = useQuery<BoardDealsData>({
    query: BoardDealsDocument,
    variables: { pipelineId: props.pipelineId },
  });
  const reload = () => reexecute({ requestPolicy: "network-only" });
  // Live: a deal created, moved, won or lost anywhere reloads the board.
  useSubscription({ query: DealBoardEventsDocument, variables: { pipelineId: props.pipelineId } }, (_, event) => {
    reload();
    return event;
  });
  useReloadOnReconnect(reload);
  const [, moveDeal] = useMutation<MoveDealData>(MoveDealDocument);
  // Moves sent and not yet answered: the card shows in its new column at once.
  const [pending, setPending] = useState<Record<string, string>>({});
  const [notice, setNotice] = useState<string | null>(null);
  const [over, setOver] = useState<string | null>(null);

  if (result.error && !result.data) return <ErrorState error={result.error} retry={reload} />;
  if (!result.data) return <Loading what="deals" />;
  const deals = result.data.deals;

  async function move(deal: BoardDeal, stageId: string) {
    if (deal.stage?.id === stageId) return;
    setPending((p) => ({ ...p, [deal.id]: stageId }));
    setNotice(null);
    // expectedVersion: the move fails with CONFLICT when the deal changed since this
    // board read it, instead of overwriting someone else's change.
    const answer = await moveDeal({ input: { id: deal.id, stageId, expectedVersion: deal.version } });
    const errors = answer.data?.moveDeal.errors ?? [];
    if (!answer.data) setNotice(`“${deal.title}” was not moved: ${answer.error?.message ?? "no answer"}.`);
    else if (errors.some((e) => e.code === "CONFLICT")) {
      setNotice(`“${deal.title}” was changed by someone else meanwhile; the board now shows the latest.`);
    } else if (errors.length) setNotice(`“${deal.title}” was not moved: ${errors[0].message}`);
    reload();
    setPending((p) => {
      const next = { ...p };
      delete next[deal.id];
      return next;
    });
  }

  const stageOf = (d: BoardDeal) => pending[d.id] ?? d.stage?.id;
  const stages = [...props.stages].sort((a, b) => a.position - b.position);
  return (
    <>
      <p class="count" aria-live="polite">
        {deals.totalCount === 1 ? "1 open deal" : `${deals.totalCount} open deals`}
        {deals.totalCount > deals.nodes.length ? ` (the ${deals.nodes.length} largest shown)` : ""}
      </p>
      {notice && (
        <p class="notice" role="alert">
          {notice}
        </p>
      )}
      <div class="board">
        {stages.map((stage) => {
          const cards = deals.nodes.filter((d) => stageOf(d) === stage.id);
          return (
            <section
              key={stage.id}
              class={over === stage.id ? "column drop" : "column"}
              aria-labelledby={`stage-${stage.id}`}
              data-stage-id={stage.id}
              onDragOver={(e) => {
                if (!props.writable || !e.dataTransfer?.types.includes(DRAG_TYPE)) return;
                e.preventDefault();
                setOver(stage.id);
              }}
              onDragLeave={() => setOver((o) => (o === stage.id ? null : o))}
              onDrop={(e) => {
                e.preventDefault();
                setOver(null);
                const deal = deals.nodes.find((d) => d.id === e.dataTransfer?.getData(DRAG_TYPE));
                if (deal) void move(deal, stage.id);
              }}
            >
              <header>
                <h2 id={`stage-${stage.id}`}>{stage.name}</h2>
                <p>
                  {cards.length} · {columnTotal(cards) || "—"}
                </p>
              </header>
              <ul>
                {cards.map((deal) => (
                  <li
                    key={deal.id}
                    class={pending[deal.id] ? "card deal pending" : "card deal"}
                    data-deal-id={deal.id}
                    draggable={props.writable}
                    onDragStart={(e) => {
                      e.dataTransfer?.setData(DRAG_TYPE, deal.id);
                      if (e.dataTransfer) e.dataTransfer.effectAllowed = "move";
                    }}
                  >
                    <p class="title">{deal.title}</p>
                    <p class="amount">{formatMoney(deal.amount, deal.currency)}</p>
                    <p class="meta">
                      {deal.customer ? (
                        <Link href={`/customers/${encodeURIComponent(deal.customer.id)}`}>{deal.customer.name}</Link>
                      ) : (
                        "No customer"
                      )}
                      {" · "}
                      {deal.owner?.name ?? "no owner"}
                    </p>
                    {props.writable && (
                      // The keyboard's way to move a card (dragging needs a pointer).
                      <label class="move">
                        <span class="visually-hidden">Move “{deal.title}” to</span>
                        <select
                          value={stageOf(deal)}
                          onChange={(e) => void move(deal, e.currentTarget.value)}
                        >
                          {stages.map((s) => (
                            <option key={s.id} value={s.id}>
                              {s.name}
                            </option>
                          ))}
                        </select>
                      </label>
                    )}
                  </li>
                ))}
              </ul>
              {cards.length === 0 && <p class="state empty">No deals</p>}
            </section>
          );
        })}
      </div>
    </>
  );
}
