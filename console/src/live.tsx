// The state of the subscription socket for the views: a header badge, and a reload of a
// live view's data whenever the socket (re)connects.
import { createContext } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";

import type { LiveConnection, LiveStatus } from "./client";

export const LiveContext = createContext<LiveConnection | null>(null);

export function useLiveConnection(): LiveConnection {
  const live = useContext(LiveContext);
  if (!live) throw new Error("LiveContext missing");
  return live;
}

export function useLiveStatus(): LiveStatus {
  const live = useLiveConnection();
  const [status, setStatus] = useState(live.status);
  useEffect(() => live.subscribe(() => setStatus(live.status)), [live]);
  return status;
}

/** Call `reload` whenever the socket connects after this view was shown: what happened
 * before its subscription was in place (or while the socket was down) came as no event. */
export function useReloadOnReconnect(reload: () => void): void {
  const live = useLiveConnection();
  const seen = useRef(live.epoch);
  const latest = useRef(reload);
  latest.current = reload;
  useEffect(
    () =>
      live.subscribe(() => {
        if (live.epoch !== seen.current) {
          seen.current = live.epoch;
          latest.current();
        }
      }),
    [live],
  );
}

const LABELS: Record<LiveStatus, string> = {
  idle: "",
  connecting: "Connecting…",
  live: "Live",
  retrying: "Server unavailable, retrying…",
};

export function LiveBadge() {
  const status = useLiveStatus();
  if (status === "idle") return null;
  return (
    <span class="live" data-status={status} role="status">
      {LABELS[status]}
    </span>
  );
}
