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

/** A chart drawn from `config`; a new config updates the same chart (no flicker). */
export function ChartCanvas(props: { config: ChartConfiguration; label: string; height?: number }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    if (!canvas.current) return;
    if (!chart.current || (chart.current.config as { type?: string }).type !== props.config.type) {
      chart.current?.destroy();
      chart.current = new Chart(canvas.current, props.config);
      return;
    }
    chart.current.data = props.config.data;
    if (props.config.options) chart.current.options = props.config.options;
    chart.current.update();
  }, [props.config]);
  useEffect(() => () => chart.current?.destroy(), []);
  return (
    <div class="chart" style={{ height: `${props.height ?? 260}px` }}>
      <canvas ref={canvas} role="img" aria-label={props.label} />
    </div>
  );
}
