// The dashboard: a pipeline's sales funnel and win rate (`salesReport`), revenue per
// month (`timeSeries`), service times, backlog and CSAT (`serviceReport`), all in one
// `dashboard` subscription: the answer comes at once and again whenever the data under
// it changes (at most once a second), so the charts are live without polling.
import type { ChartConfiguration } from "chart.js";
import { useQuery, useSubscription } from "@urql/preact";
import { useMemo, useState } from "preact/hooks";

import { ChartCanvas, PALETTE } from "../chart";
import DashboardLiveDocument from "../operations/DashboardLive.graphql";
import PipelinesDocument from "../operations/Pipelines.graphql";
import { useLiveStatus } from "../live";
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
}

interface DashboardData {
  dashboard: {
    salesReport: {
      stages: { stage: { id: string; name: string }; openCount: number; reachedCount: number; conversionToNext: number | null }[];
      winRate: { won: number; lost: number; rate: number | null };
      averageDealSize: Money[];
      weightedPipeline: Money[];
      averageCycleTime: { averageDays: number | null; count: number };
    };
    timeSeries: { start: string; count: number; amount: Money[] }[];
    serviceReport: {
      firstResponse: { overall: Times; byChannel: (Times & { channel: string })[] };
      resolution: { overall: Times; byChannel: (Times & { channel: string })[] };
      backlog: { label: string; count: number }[];
      csat: { overall: { count: number; csat: number | null; averageScore: number | null } };
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

/** Amounts per currency, one per line (currencies never add up). */
function MoneyLines(props: { cells: Money[] }) {
  if (!props.cells.length) return <>—</>;
  return (
    <>
      {props.cells.map((c) => (
        <span key={c.currency} class="line">
          {formatMoney(c.amount, c.currency)}
        </span>
      ))}
    </>
  );
}

export function DashboardPage() {
  const [pipelines, reloadPipelines] = useQuery<PipelinesData>({ query: PipelinesDocument });
  const [pipelineId, setPipelineId] = useState<string | null>(null);
  const [choice, setChoice] = useState("last12");
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
      <Reports pipelineId={pipeline.id} {...period(choice)} />
    </section>
  );
}

function Reports(props: { pipelineId: string; from: string; to: string }) {
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
  return <Charts data={result.data.dashboard} />;
}

const MONTH = new Intl.DateTimeFormat(undefined, { month: "short", year: "numeric", timeZone: "UTC" });

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

  const revenueTotal = currencies.map((currency) => ({
    currency,
    amount: String(data.timeSeries.reduce((sum, p) => sum + Number(p.amount.find((a) => a.currency === currency)?.amount ?? 0), 0)),
  }));
  const backlog = service.backlog.reduce((sum, b) => sum + b.count, 0);
  return (
    <>
      <dl class="kpis" aria-label="Key figures">
        <div>
          <dt>Win rate</dt>
          <dd data-kpi="win-rate">{percent(sales.winRate.rate)}</dd>
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
            <MoneyLines cells={sales.averageDealSize} />
          </dd>
        </div>
        <div>
          <dt>Weighted pipeline</dt>
          <dd class="money">
            <MoneyLines cells={sales.weightedPipeline} />
          </dd>
        </div>
        <div>
          <dt>First response (median)</dt>
          <dd>{hours(service.firstResponse.overall.p50Seconds)}</dd>
        </div>
        <div>
          <dt>Resolution (median)</dt>
          <dd>{hours(service.resolution.overall.p50Seconds)}</dd>
        </div>
        <div>
          <dt>CSAT</dt>
          <dd>{percent(service.csat.overall.csat)}</dd>
        </div>
        <div>
          <dt>Open backlog</dt>
          <dd data-kpi="backlog">{backlog}</dd>
        </div>
      </dl>
      <div class="charts">
        <section class="card" aria-labelledby="funnel-title">
          <h2 id="funnel-title">Sales funnel</h2>
          <ChartCanvas
            config={funnel}
            label={`Deals per stage: ${sales.stages.map((s) => `${s.stage.name} ${s.reachedCount} reached, ${s.openCount} open`).join("; ")}`}
          />
        </section>
        <section class="card" aria-labelledby="revenue-title">
          <h2 id="revenue-title">Revenue per month</h2>
          <ChartCanvas
            config={revenue}
            label={`Revenue per month: ${data.timeSeries.map((p) => `${MONTH.format(new Date(p.start))} ${money(p.amount)}`).join("; ")}`}
          />
        </section>
        <section class="card" aria-labelledby="winrate-title">
          <h2 id="winrate-title">
            Win rate {percent(sales.winRate.rate)} ({sales.winRate.won} won, {sales.winRate.lost} lost)
          </h2>
          <ChartCanvas config={winRate} label={`${sales.winRate.won} deals won and ${sales.winRate.lost} lost in the period`} />
        </section>
        <section class="card" aria-labelledby="service-title">
          <h2 id="service-title">Service times by channel</h2>
          {service.firstResponse.overall.count === 0 && service.resolution.overall.count === 0 ? (
            <Empty>No conversation was answered or closed in the period.</Empty>
          ) : (
          <ChartCanvas
            config={times}
            label={`First response median per channel: ${service.firstResponse.byChannel.map((c) => `${humanize(c.channel)} ${hours(c.p50Seconds)}`).join("; ")}`}
          />
          )}
        </section>
      </div>
    </>
  );
}
