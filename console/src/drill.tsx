// Drill-downs: every number of the reports carries `drillDown { list filter }`, the root
// list and the filter (in the API's own JSON) that give the records behind it. A link
// opens that list's page with the filter in the URL's fragment (`#filter=…&label=…`): the
// fragment is never sent to the server, so the filter (ids, dates) stays out of its
// access log, while a reload or a shared link shows the same records.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

import { Link } from "./router";

export interface DrillDown {
  list: string;
  filter: Record<string, unknown>;
}

/** A page's drill-down filter and the words that say what it shows. */
export interface Drill {
  filter: Record<string, unknown>;
  label: string;
}

/** The console's page for each list a report drills into. */
const PAGES: Record<string, string> = {
  customers: "/customers",
  deals: "/deals",
  conversations: "/inbox",
  orders: "/orders",
};

/** The console path showing `drill`'s records, or null for a list it has no page for. */
export function drillHref(drill: DrillDown, label: string): string | null {
  const page = PAGES[drill.list];
  if (!page) return null;
  const fragment = new URLSearchParams({ filter: JSON.stringify(drill.filter), label });
  return `${page}#${fragment.toString()}`;
}

function readDrill(): Drill | null {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const text = params.get("filter");
  if (!text) return null;
  try {
    const filter: unknown = JSON.parse(text);
    if (!filter || typeof filter !== "object" || Array.isArray(filter)) return null;
    return { filter: filter as Record<string, unknown>, label: params.get("label") || "a report's records" };
  } catch {
    return null;
  }
}

/** The drill-down filter of the current URL (null: none), following navigation. */
export function useDrill(): Drill | null {
  const [drill, setDrill] = useState(readDrill);
  useEffect(() => {
    const update = () =>
      setDrill((current) => {
        const next = readDrill();
        return JSON.stringify(next) === JSON.stringify(current) ? current : next;
      });
    window.addEventListener("popstate", update);
    window.addEventListener("hashchange", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("hashchange", update);
    };
  }, []);
  return drill;
}

/** `filter` and `more` together (either may be absent). */
export function both(
  filter: Record<string, unknown> | null | undefined,
  more: Record<string, unknown> | null | undefined,
): Record<string, unknown> | null {
  if (filter && more) return { and: [filter, more] };
  return filter ?? more ?? null;
}

/** The line above a list narrowed by a drill-down: what it shows, and the way back. */
export function DrillBanner(props: { drill: Drill; clear: string; clearLabel: string }) {
  return (
    <p class="drill-banner" role="status">
      <span>
        Showing <strong>{props.drill.label}</strong>
      </span>
      <Link href={props.clear}>{props.clearLabel}</Link>
    </p>
  );
}

/** A link to a drill-down's records (plain text when the console has no page for them). */
export function DrillLink(props: { drill: DrillDown; label: string; children: ComponentChildren }) {
  const href = drillHref(props.drill, props.label);
  if (!href) return <>{props.children}</>;
  return (
    <Link href={href} class="drill">
      {props.children}
    </Link>
  );
}
