// Charts with Chart.js (canvas), registered piece by piece so the bundle holds only the
// bar and doughnut charts the dashboard draws. Each chart has a text summary for screen
// readers (aria-label).
import {
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  type ChartConfiguration,
  DoughnutController,
  Legend,
  LinearScale,
  Tooltip,
} from "chart.js";
import { useEffect, useRef } from "preact/hooks";

Chart.register(ArcElement, BarController, BarElement, CategoryScale, DoughnutController, Legend, LinearScale, Tooltip);
Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
Chart.defaults.color = "#5b6474";

export const PALETTE = ["#2456c8", "#21a366", "#e08a00", "#b3261e", "#7b4bc4", "#0f8b8d"];

/** `config` with clicks on a bar or slice passed to `pick` (dataset, index), and a pointer
 * cursor over them; `pick` is read at each click, so a config need not change with it. */
function clickable(config: ChartConfiguration, pick: { current?: Pick }): ChartConfiguration {
  return {
    ...config,
    options: {
      ...config.options,
      onClick: (_event, elements) => {
        const hit = elements[0];
        if (hit && pick.current) pick.current(hit.datasetIndex, hit.index);
      },
      onHover: (event, elements) => {
        const target = event.native?.target as HTMLElement | undefined;
        if (target) target.style.cursor = elements.length && pick.current ? "pointer" : "default";
      },
    },
  } as ChartConfiguration;
}

/** Called with the dataset and the index of the bar or slice clicked. */
export type Pick = (dataset: number, index: number) => void;

/** A chart drawn from `config`; a new config updates the same chart (no flicker). With
 * `onPick`, clicking a bar or slice calls it (the dashboard's drill-downs). */
export function ChartCanvas(props: { config: ChartConfiguration; label: string; height?: number; onPick?: Pick }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  const pick = useRef<Pick | undefined>(props.onPick);
  pick.current = props.onPick;
  useEffect(() => {
    if (!canvas.current) return;
    const config = clickable(props.config, pick);
    if (!chart.current || (chart.current.config as { type?: string }).type !== config.type) {
      chart.current?.destroy();
      chart.current = new Chart(canvas.current, config);
      return;
    }
    chart.current.data = config.data;
    if (config.options) chart.current.options = config.options;
    chart.current.update();
  }, [props.config]);
  useEffect(() => () => chart.current?.destroy(), []);
  return (
    <div class="chart" style={{ height: `${props.height ?? 260}px` }}>
      <canvas ref={canvas} role="img" aria-label={props.label} />
    </div>
  );
}
