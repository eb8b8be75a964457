// The dashboard: a pipeline's sales funnel and win rate (`salesReport`), revenue per
// month (`timeSeries`), service times, backlog and CSAT (`serviceReport`), all in one
// `dashboard` subscription: the answer comes at once and again whenever the data under
// it changes (at most once a second), so the charts are live without polling.
import type { ChartConfiguration } from "chart.js";
import type { ComponentChildren } from "preact";
import { useQuery, useSubscription } from "@urql/preact";
import { useMemo, useState } from "preact/hooks";

import { ChartCanvas, PALETTE } from "../chart";
import { type DrillDown, DrillLink, drillHref } from "../drill";
import DashboardLiveDocument from "../operations/DashboardLive.graphql";
import PipelinesDocument from "../operations/Pipelines.graphql";
import { useLiveStatus } from "../live";
import { navigate } from "../router";
import { Empty, ErrorState, Loading, formatMoney, humanize } from "../ui";
import { PipelineSelect } from "./deals";

interface Money {
  amount: string;
  currency: string;
}

interface Times {
  count: number;
  p50Seconds: number | null;
  p90Seconds: number | null;
  drillDown: DrillDown;
}

interface Rated {
  count: number;
  satisfied: number;
  csat: number | null;
  averageScore: number | null;
  drillDown: DrillDown;
}

interface DashboardData {
  dashboard: {
    salesReport: {
      stages: {
        stage: { id: string; name: string };
        openCount: number;
        reachedCount: number;
        conversionToNext: number | null;
        drillDown: DrillDown;
        reachedDrillDown: DrillDown;
      }[];
      winRate: { won: number; lost: number; rate: number | null; drillDown: DrillDown; wonDrillDown: DrillDown; lostDrillDown: DrillDown };
      averageDealSize: (Money & { drillDown: DrillDown })[];
      weightedPipeline: (Money & { drillDown: DrillDown })[];
      averageCycleTime: { averageDays: number | null; count: number };
    };
    timeSeries: { start: string; count: number; amount: Money[]; drillDown: DrillDown }[];
    serviceReport: {
      firstResponse: { overall: Times; byChannel: (Times & { channel: string })[] };
      resolution: { overall: Times; byChannel: (Times & { channel: string })[] };
      backlog: { label: string; openCount: number; pendingCount: number; count: number; drillDown: DrillDown }[];
      csat: {
        overall: Rated;
        byAgent: (Rated & { agent: { id: string; name: string } | null; satisfiedDrillDown: DrillDown })[];
      };
    };
  };
}

interface PipelinesData {
  pipelines: { nodes: { id: string; name: string }[] };
}

function isoDate(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The period's first and last day: the last 12 months (whole months), or a year. */
function period(choice: string, today = new Date()): { from: string; to: string } {
  if (choice.startsWith("year:")) {
    const year = choice.slice(5);
    return { from: `${year}-01-01`, to: `${year}-12-31` };
  }
  const start = new Date(today.getFullYear(), today.getMonth() - 11, 1);
  return { from: isoDate(start), to: isoDate(today) };
}

function dayAfter(date: string): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

/** The browser's IANA time zone (reports cut days and months in it). */
function timeZone(): string {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return zone && zone !== "Etc/Unknown" ? zone : "UTC";
}

function percent(share: number | null): string {
  return share === null ? "—" : `${Math.round(share * 100)}%`;
}

function hours(seconds: number | null): string {
  if (seconds === null) return "—";
  return seconds < 3600 ? `${Math.round(seconds / 60)} min` : `${(seconds / 3600).toFixed(1)} h`;
}

function money(cells: Money[]): string {
  return cells.length ? cells.map((c) => formatMoney(c.amount, c.currency)).join(" + ") : "—";
}

/** Amounts per currency, one per line (currencies never add up); with `label`, each
 * opens the deals behind it. */
function MoneyLines(props: { cells: (Money & { drillDown?: DrillDown })[]; label?: (cell: Money) => string }) {
  if (!props.cells.length) return <>—</>;
  return (
    <>
      {props.cells.map((c) => (
        <span key={c.currency} class="line">
          <Figure drill={props.label ? c.drillDown : undefined} label={props.label?.(c) ?? ""}>
            {formatMoney(c.amount, c.currency)}
          </Figure>
        </span>
      ))}
    </>
  );
}

/** The pipeline and period chosen, kept in the URL's fragment: Back from a drill-down, a
 * reload or a shared link shows the same dashboard. */
function useChoices(): [string | null, string, (pipelineId: string | null, period: string) => void] {
  const read = () => new URLSearchParams(window.location.hash.slice(1));
  const [state, setState] = useState(() => ({ pipeline: read().get("pipeline"), period: read().get("period") ?? "last12" }));
  const choose = (pipeline: string | null, period: string) => {
    setState({ pipeline, period });
    const params = new URLSearchParams({ period });
    if (pipeline) params.set("pipeline", pipeline);
    window.history.replaceState(null, "", `${window.location.pathname}#${params.toString()}`);
  };
  return [state.pipeline, state.period, choose];
}

export function DashboardPage() {
  const [pipelines, reloadPipelines] = useQuery<PipelinesData>({ query: PipelinesDocument });
  const [pipelineId, choice, choose] = useChoices();
  const setPipelineId = (id: string) => choose(id, choice);
  const setChoice = (period: string) => choose(pipelineId, period);
  const thisYear = new Date().getFullYear();

  if (pipelines.error && !pipelines.data) {
    return <ErrorState error={pipelines.error} retry={() => reloadPipelines({ requestPolicy: "network-only" })} />;
  }
  if (!pipelines.data) return <Loading what="pipelines" />;
  const all = pipelines.data.pipelines.nodes;
  const pipeline = all.find((p) => p.id === pipelineId) ?? all[0];
  if (!pipeline) return <Empty>No pipelines yet.</Empty>;
  return (
    <section aria-labelledby="dashboard-title">
      <div class="page-head">
        <h1 id="dashboard-title">Dashboard</h1>
        <div class="head-actions">
          <PipelineSelect id="dashboard-pipeline" pipelines={all} value={pipeline.id} onChange={setPipelineId} />
          <div class="field">
            <label for="dashboard-period">Period</label>
            <select id="dashboard-period" value={choice} onChange={(e) => setChoice(e.currentTarget.value)}>
              <option value="last12">Last 12 months</option>
              {[0, 1, 2].map((back) => (
                <option key={back} value={`year:${thisYear - back}`}>
                  {thisYear - back}
                </option>
              ))}
            </select>
          </div>
        </div>
      </div>
      <Reports
        pipelineId={pipeline.id}
        {...period(choice)}
        earlier={[0, 1, 2].map((back) => `year:${thisYear - back}`).filter((c) => c !== choice)}
        choose={setChoice}
      />
    </section>
  );
}

function Reports(props: { pipelineId: string; from: string; to: string; earlier: string[]; choose: (period: string) => void }) {
  const variables = useMemo(
    () => ({
      pipelineId: props.pipelineId,
      from: props.from,
      to: props.to,
      monthsFrom: `${props.from}T00:00:00Z`,
      monthsTo: `${dayAfter(props.to)}T00:00:00Z`,
      timeZone: timeZone(),
    }),
    [props.pipelineId, props.from, props.to],
  );
  const [result] = useSubscription<DashboardData>({ query: DashboardLiveDocument, variables });
  const status = useLiveStatus();
  if (result.error && !result.data) {
    return <ErrorState error={result.error} retry={() => window.location.reload()} />;
  }
  if (!result.data) {
    return <Loading what={status === "retrying" ? "the reports (server unavailable, retrying)" : "the reports"} />;
  }
  const data = result.data.dashboard;
  const quiet =
    data.salesReport.winRate.won + data.salesReport.winRate.lost === 0 &&
    data.timeSeries.every((p) => p.count === 0) &&
    data.serviceReport.resolution.overall.count === 0;
  return (
    <>
      {quiet && (
        // An empty period says so, with the way to another (the demo's history, for one,
        // ends on its own "today").
        <div class="notice" role="status">
          No deal was closed, no order paid and no conversation closed in this period.{" "}
          {props.earlier.map((choice) => (
            <button key={choice} type="button" class="link" onClick={() => props.choose(choice)}>
              Show {choice.slice(5)}
            </button>
          ))}
        </div>
      )}
      <Charts data={data} />
    </>
  );
}

const MONTH = new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric", timeZone: "UTC" });

/** Open the records behind a number (a bar, a slice, a key figure). */
function open(drill: DrillDown | undefined, label: string): void {
  const href = drill ? drillHref(drill, label) : null;
  if (href) navigate(href);
}

interface DrillItem {
  drill: DrillDown;
  label: string;
  text: string;
}

/** The chart's drill-downs as links: the keyboard's (and a screen reader's) way to the
 * records a click on a bar opens. */
function DrillLinks(props: { items: DrillItem[] }) {
  const items = props.items;
  if (!items.length) return null;
  return (
    <p class="drills">
      <span>Records:</span>
      {items.map((item) => (
        <DrillLink key={item.label} drill={item.drill} label={item.label}>
          {item.text}
        </DrillLink>
      ))}
    </p>
  );
}

/** A group's drill-down, unless it is empty (a figure of nothing links nowhere). */
function some(group: { count: number; drillDown: DrillDown }): DrillDown | undefined {
  return group.count ? group.drillDown : undefined;
}

/** A figure that opens its records. */
function Figure(props: { drill?: DrillDown; label: string; children: ComponentChildren }) {
  return props.drill ? (
    <DrillLink drill={props.drill} label={props.label}>
      {props.children}
    </DrillLink>
  ) : (
    <>{props.children}</>
  );
}

function Charts({ data }: { data: DashboardData["dashboard"] }) {
  const sales = data.salesReport;
  const service = data.serviceReport;

  const funnel = useMemo<ChartConfiguration>(
    () => ({
      type: "bar",
      data: {
        labels: sales.stages.map((s) => s.stage.name),
        datasets: [
          { label: "Reached in the period", data: sales.stages.map((s) => s.reachedCount), backgroundColor: PALETTE[0] },
          { label: "Open now", data: sales.stages.map((s) => s.openCount), backgroundColor: PALETTE[2] },
        ],
      },
      options: { indexAxis: "y", maintainAspectRatio: false, animation: false, scales: { x: { beginAtZero: true } } },
    }),
    [sales.stages],
  );
  const reachedLabel = (name: string) => `deals created in the period that reached ${name}`;
  const openLabel = (name: string) => `open deals in ${name}`;

  const currencies = [...new Set(data.timeSeries.flatMap((p) => p.amount.map((a) => a.currency)))].sort();
  const revenue = useMemo<ChartConfiguration>(
    () => ({
      type: "bar",
      data: {
        labels: data.timeSeries.map((p) => MONTH.format(new Date(p.start))),
        datasets: currencies.map((currency, i) => ({
          label: currency,
          data: data.timeSeries.map((p) => Number(p.amount.find((a) => a.currency === currency)?.amount ?? 0)),
          backgroundColor: PALETTE[i % PALETTE.length],
        })),
      },
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true } } },
    }),
    [data.timeSeries],
  );
  const ordersLabel = (start: string) => `paid and fulfilled orders of ${MONTH.format(new Date(start))}`;

  const winRate = useMemo<ChartConfiguration>(
    () => ({
      type: "doughnut",
      data: {
        labels: ["Won", "Lost"],
        datasets: [{ data: [sales.winRate.won, sales.winRate.lost], backgroundColor: [PALETTE[1], PALETTE[3]] }],
      },
      options: { maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } } },
    }),
    [sales.winRate],
  );

  const channels = service.firstResponse.byChannel.map((c) => c.channel);
  const resolutionOf = (channel: string) => service.resolution.byChannel.find((c) => c.channel === channel);
  const toHours = (s: number | null | undefined) => (s == null ? null : Math.round((s / 3600) * 10) / 10);
  const times = useMemo<ChartConfiguration>(
    () => ({
      type: "bar",
      data: {
        labels: channels.map(humanize),
        datasets: [
          { label: "First response, median (h)", data: service.firstResponse.byChannel.map((c) => toHours(c.p50Seconds)), backgroundColor: PALETTE[0] },
          { label: "First response, 90th percentile (h)", data: service.firstResponse.byChannel.map((c) => toHours(c.p90Seconds)), backgroundColor: "#9bb3e8" },
          { label: "Resolution, median (h)", data: channels.map((c) => toHours(resolutionOf(c)?.p50Seconds)), backgroundColor: PALETTE[2] },
        ],
      },
      options: { maintainAspectRatio: false, animation: false, scales: { y: { beginAtZero: true } } },
    }),
    [service.firstResponse, service.resolution],
  );
  const answeredLabel = (channel: string) => `${humanize(channel).toLowerCase()} conversations first answered in the period`;
  const closedLabel = (channel: string) => `${humanize(channel).toLowerCase()} conversations closed in the period`;

  const backlogChart = useMemo<ChartConfiguration>(
    () => ({
      type: "bar",
      data: {
        labels: service.backlog.map((b) => b.label),
        datasets: [
          { label: "Open", data: service.backlog.map((b) => b.openCount), backgroundColor: PALETTE[0] },
          { label: "Pending", data: service.backlog.map((b) => b.pendingCount), backgroundColor: PALETTE[2] },
        ],
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      },
    }),
    [service.backlog],
  );
  const bandLabel = (label: string) => `open and pending conversations aged ${label}`;

  const rated = service.csat.byAgent.filter((a) => a.count > 0);
  const agentName = (a: { agent: { name: string } | null }) => a.agent?.name ?? "Unassigned";
  const csatChart = useMemo<ChartConfiguration>(
    () => ({
      type: "bar",
      data: {
        labels: rated.map((a) => `${agentName(a)} (${a.count})`),
        datasets: [
          { label: "Satisfied (4 or 5), %", data: rated.map((a) => Math.round((a.csat ?? 0) * 1000) / 10), backgroundColor: PALETTE[1] },
        ],
      },
      options: {
        indexAxis: "y",
        maintainAspectRatio: false,
        animation: false,
        scales: { x: { beginAtZero: true, max: 100 } },
        plugins: { legend: { display: false } },
      },
    }),
    [service.csat.byAgent],
  );
  const ratedLabel = (a: { agent: { name: string } | null }) => `conversations of ${agentName(a)} rated in the period`;

  const revenueTotal = currencies.map((currency) => ({
    currency,
    amount: String(data.timeSeries.reduce((sum, p) => sum + Number(p.amount.find((a) => a.currency === currency)?.amount ?? 0), 0)),
  }));
  const backlog = service.backlog.reduce((sum, b) => sum + b.count, 0);
  // The whole backlog: any of its bands (each band's drill-down is one age range).
  const backlogDrill: DrillDown | undefined = service.backlog.length
    ? { list: service.backlog[0].drillDown.list, filter: { or: service.backlog.map((b) => b.drillDown.filter) } }
    : undefined;
  return (
    <>
      <dl class="kpis" aria-label="Key figures">
        <div>
          <dt>Win rate</dt>
          <dd data-kpi="win-rate">
            <Figure drill={sales.winRate.won + sales.winRate.lost ? sales.winRate.drillDown : undefined} label="deals won or lost in the period">
              {percent(sales.winRate.rate)}
            </Figure>
          </dd>
        </div>
        <div>
          <dt>Revenue</dt>
          <dd data-kpi="revenue" class="money">
            <MoneyLines cells={revenueTotal} />
          </dd>
        </div>
        <div>
          <dt>Average deal won</dt>
          <dd class="money">
            <MoneyLines cells={sales.averageDealSize} label={(c) => `deals won in ${c.currency} in the period`} />
          </dd>
        </div>
        <div>
          <dt>Weighted pipeline</dt>
          <dd class="money">
            <MoneyLines cells={sales.weightedPipeline} label={(c) => `open deals in ${c.currency}`} />
          </dd>
        </div>
        <div>
          <dt>First response (median)</dt>
          <dd>
            <Figure drill={some(service.firstResponse.overall)} label="conversations first answered in the period">
              {hours(service.firstResponse.overall.p50Seconds)}
            </Figure>
          </dd>
        </div>
        <div>
          <dt>Resolution (median)</dt>
          <dd>
            <Figure drill={some(service.resolution.overall)} label="conversations closed in the period">
              {hours(service.resolution.overall.p50Seconds)}
            </Figure>
          </dd>
        </div>
        <div>
          <dt>CSAT</dt>
          <dd data-kpi="csat">
            <Figure drill={some(service.csat.overall)} label="conversations rated in the period">
              {percent(service.csat.overall.csat)}
            </Figure>
          </dd>
        </div>
        <div>
          <dt>Open backlog</dt>
          <dd data-kpi="backlog">
            <Figure drill={backlog ? backlogDrill : undefined} label="open and pending conversations">
              {backlog}
            </Figure>
          </dd>
        </div>
      </dl>
      <div class="charts">
        <section class="card" aria-labelledby="funnel-title">
          <h2 id="funnel-title">Sales funnel</h2>
          <ChartCanvas
            config={funnel}
            label={`Deals per stage: ${sales.stages.map((s) => `${s.stage.name} ${s.reachedCount} reached, ${s.openCount} open`).join("; ")}`}
            onPick={(dataset, i) => {
              const s = sales.stages[i];
              if (!s) return;
              if (dataset === 0) open(s.reachedDrillDown, reachedLabel(s.stage.name));
              else open(s.drillDown, openLabel(s.stage.name));
            }}
          />
          <DrillLinks
            items={sales.stages
              .filter((s) => s.openCount > 0)
              .map((s) => ({ drill: s.drillDown, label: openLabel(s.stage.name), text: `${s.stage.name} (${s.openCount} open)` }))}
          />
        </section>
        <section class="card" aria-labelledby="revenue-title">
          <h2 id="revenue-title">Revenue per month</h2>
          <ChartCanvas
            config={revenue}
            label={`Revenue per month: ${data.timeSeries.map((p) => `${MONTH.format(new Date(p.start))} ${money(p.amount)}`).join("; ")}`}
            onPick={(_, i) => {
              const p = data.timeSeries[i];
              if (p) open(p.drillDown, ordersLabel(p.start));
            }}
          />
          <DrillLinks
            items={data.timeSeries
              .filter((p) => p.count > 0)
              .map((p) => ({ drill: p.drillDown, label: ordersLabel(p.start), text: `${MONTH.format(new Date(p.start))} (${p.count})` }))}
          />
        </section>
        <section class="card" aria-labelledby="winrate-title">
          <h2 id="winrate-title">
            Win rate {percent(sales.winRate.rate)} ({sales.winRate.won} won, {sales.winRate.lost} lost)
          </h2>
          <ChartCanvas
            config={winRate}
            label={`${sales.winRate.won} deals won and ${sales.winRate.lost} lost in the period`}
            onPick={(_, i) =>
              i === 0
                ? open(sales.winRate.wonDrillDown, "deals won in the period")
                : open(sales.winRate.lostDrillDown, "deals lost in the period")
            }
          />
          <DrillLinks
            items={[
              { drill: sales.winRate.wonDrillDown, label: "deals won in the period", text: `${sales.winRate.won} won` },
              { drill: sales.winRate.lostDrillDown, label: "deals lost in the period", text: `${sales.winRate.lost} lost` },
            ]}
          />
        </section>
        <section class="card" aria-labelledby="service-title">
          <h2 id="service-title">Service times by channel</h2>
          {service.firstResponse.overall.count === 0 && service.resolution.overall.count === 0 ? (
            <Empty>No conversation was answered or closed in the period.</Empty>
          ) : (
            <>
              <ChartCanvas
                config={times}
                label={`First response median per channel: ${service.firstResponse.byChannel.map((c) => `${humanize(c.channel)} ${hours(c.p50Seconds)}`).join("; ")}`}
                onPick={(dataset, i) => {
                  const channel = channels[i];
                  if (channel === undefined) return;
                  if (dataset < 2) open(service.firstResponse.byChannel[i].drillDown, answeredLabel(channel));
                  else open(resolutionOf(channel)?.drillDown, closedLabel(channel));
                }}
              />
              <DrillLinks
                items={service.firstResponse.byChannel
                  .filter((c) => c.count > 0)
                  .map((c) => ({ drill: c.drillDown, label: answeredLabel(c.channel), text: `${humanize(c.channel)} (${c.count})` }))}
              />
            </>
          )}
        </section>
        <section class="card" aria-labelledby="backlog-title">
          <h2 id="backlog-title">Backlog by age ({backlog} open or pending)</h2>
          {backlog === 0 ? (
            <Empty>No open or pending conversation.</Empty>
          ) : (
            <>
              <ChartCanvas
                config={backlogChart}
                label={`Open and pending conversations by age: ${service.backlog.map((b) => `${b.label} ${b.openCount} open, ${b.pendingCount} pending`).join("; ")}`}
                onPick={(_, i) => {
                  const band = service.backlog[i];
                  if (band) open(band.drillDown, bandLabel(band.label));
                }}
              />
              <DrillLinks
                items={service.backlog
                  .filter((b) => b.count > 0)
                  .map((b) => ({ drill: b.drillDown, label: bandLabel(b.label), text: `${b.label} (${b.count})` }))}
              />
            </>
          )}
        </section>
        <section class="card" aria-labelledby="csat-title">
          <h2 id="csat-title">
            CSAT by agent {percent(service.csat.overall.csat)} ({service.csat.overall.count} ratings)
          </h2>
          {rated.length === 0 ? (
            <Empty>No conversation was rated in the period.</Empty>
          ) : (
            <>
              <ChartCanvas
                config={csatChart}
                height={Math.max(160, 40 + rated.length * 32)}
                label={`Share of ratings of 4 or 5 per agent: ${rated.map((a) => `${agentName(a)} ${percent(a.csat)} of ${a.count}`).join("; ")}`}
                onPick={(_, i) => {
                  const a = rated[i];
                  if (a) open(a.drillDown, ratedLabel(a));
                }}
              />
              <DrillLinks
                items={rated.map((a) => ({ drill: a.drillDown, label: ratedLabel(a), text: `${agentName(a)} (${a.count})` }))}
              />
            </>
          )}
        </section>
      </div>
    </>
  );
}
