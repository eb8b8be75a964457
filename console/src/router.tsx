// Client-side routes under /app (the server answers every /app path with the console's
// page, so a reload or a shared link opens the same view).
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

export const BASE = "/app";

function currentPath(): string {
  const path = window.location.pathname;
  if (!path.startsWith(BASE)) return "/";
  return path.slice(BASE.length).replace(/\/+$/, "") || "/";
}

export function navigate(path: string, replace = false): void {
  if (replace) window.history.replaceState(null, "", BASE + path);
  else window.history.pushState(null, "", BASE + path);
  window.dispatchEvent(new PopStateEvent("popstate"));
  window.scrollTo(0, 0);
}

export function usePath(): string {
  const [path, setPath] = useState(currentPath);
  useEffect(() => {
    const update = () => setPath(currentPath());
    window.addEventListener("popstate", update);
    return () => window.removeEventListener("popstate", update);
  }, []);
  return path;
}

export function Link(props: { href: string; class?: string; children: ComponentChildren }) {
  return (
    <a
      href={BASE + props.href}
      class={props.class}
      onClick={(event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
        event.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}
