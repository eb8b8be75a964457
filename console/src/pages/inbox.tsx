// The agent inbox: the conversations the caller may see (virtualised, paged by cursor,
// unread counts, filters), kept current by the `inbox` subscription resumed by cursor; a
// chat pane per conversation (chat.tsx); who of the team is online (`presence`).
import { useClient, useQuery, useSubscription } from "@urql/preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";

import { resumable } from "../client";
import { type Drill, DrillBanner, both } from "../drill";
import InboxConversationsDocument from "../operations/InboxConversations.graphql";
import InboxEventsDocument from "../operations/InboxEvents.graphql";
import OnlineUsersDocument from "../operations/OnlineUsers.graphql";
import PresenceEventsDocument from "../operations/PresenceEvents.graphql";
import { useLiveConnection } from "../live";
import { navigate } from "../router";
import { canWrite, type SessionUser } from "../session";
import { useTeam } from "../team";
import { Empty, Loading, formatDateTime, humanize } from "../ui";
import { VirtualList } from "../virtual";
import { ChatPane } from "./chat";

const PAGE_SIZE = 50;
const ROW_HEIGHT = 76;
export const CHANNELS = ["CHAT", "EMAIL", "PHONE", "SOCIAL"] as const;
const STATUSES = ["OPEN", "PENDING", "CLOSED"] as const;

export interface Person {
  id: string;
  name: string;
}

export interface InboxConversation {
  id: string;
  channel: string;
  status: string;
  subject: string | null;
  version: number;
  lastMessageSeq: number;
  lastMessageAt: string | null;
  createdAt: string;
  unreadCount: number | null;
  customer: { id: string; name: string; email: string | null } | null;
  assignee: Person | null;
  lastMessage: { body: string; authorType: string } | null;
}

interface InboxEvent {
  cursor: string;
  type: string;
  conversation: Omit<InboxConversation, "unreadCount"> | null;
  message: { seq: number; authorType: string; author: { id: string } | null } | null;
  readBy: { id: string } | null;
  lastReadSeq: number | null;
}

interface ConversationsData {
  conversations: {
    totalCount: number;
    pageInfo: { hasNextPage: boolean; endCursor: string | null };
    nodes: InboxConversation[];
  };
}

export interface InboxFilters {
  view: "all" | "mine" | "unassigned";
  status: string;
  channel: string;
}

/** The API's ConversationFilter for the chosen filters. */
function conversationFilter(filters: InboxFilters, me: string): Record<string, unknown> | null {
  const filter: Record<string, unknown> = {};
  if (filters.view === "mine") filter.assigneeId = { eq: me };
  if (filters.view === "unassigned") filter.assigneeId = { isNull: true };
  if (filters.status) filter.status = { eq: filters.status };
  if (filters.channel) filter.channel = { eq: filters.channel };
  return Object.keys(filter).length ? filter : null;
}

/** The same filter on a conversation an event brought (live updates decide in the
 * browser whether it still belongs to the list shown). */
function matches(c: Omit<InboxConversation, "unreadCount">, filters: InboxFilters, me: string): boolean {
  if (filters.view === "mine" && c.assignee?.id !== me) return false;
  if (filters.view === "unassigned" && c.assignee) return false;
  if (filters.status && c.status !== filters.status) return false;
  if (filters.channel && c.channel !== filters.channel) return false;
  return true;
}

/** The list's order (the API's LAST_MESSAGE_AT, newest first). */
function sortKey(c: InboxConversation): string {
  return c.lastMessageAt ?? c.createdAt;
}

function byLatest(a: InboxConversation, b: InboxConversation): number {
  return sortKey(b).localeCompare(sortKey(a));
}

interface ListState {
  items: InboxConversation[];
  total: number;
  endCursor: string | null;
  hasNext: boolean;
  loading: boolean;
  error: string | null;
}

const EMPTY: ListState = { items: [], total: 0, endCursor: null, hasNext: false, loading: true, error: null };

/** The conversations of the filters (and of a report's drill-down, when one is given):
 * first page, more pages on demand, live changes. */
function useConversationList(filters: InboxFilters, me: string, selectedId: string | null, drill: Drill | null) {
  const client = useClient();
  const live = useLiveConnection();
  const [state, setState] = useState<ListState>(EMPTY);
  const generation = useRef(0);
  const current = useRef({ filters, me, selectedId, state, drill });
  current.current = { filters, me, selectedId, state, drill };
  const filter = useMemo(() => both(drill?.filter, conversationFilter(filters, me)), [filters, me, drill]);

  const fetchPage = useCallback(
    async (after: string | null, gen: number) => {
      const result = await client
        .query<ConversationsData>(InboxConversationsDocument, { first: PAGE_SIZE, after, filter }, { requestPolicy: "network-only" })
        .toPromise();
      if (gen !== generation.current) return; // the filters changed meanwhile
      const page = result.data?.conversations;
      if (!page) {
        setState((s) => ({ ...s, loading: false, error: result.error?.networkError ? "The server is unavailable." : (result.error?.message ?? "Failed") }));
        return;
      }
      setState((s) => {
        const known = new Set(after ? s.items.map((c) => c.id) : []);
        const items = after ? [...s.items, ...page.nodes.filter((c) => !known.has(c.id))] : page.nodes;
        return {
          items,
          total: page.totalCount,
          endCursor: page.pageInfo.endCursor,
          hasNext: page.pageInfo.hasNextPage,
          loading: false,
          error: null,
        };
      });
    },
    [client, filter],
  );

  const reload = useCallback(() => {
    generation.current += 1;
    setState((s) => ({ ...s, loading: true }));
    void fetchPage(null, generation.current);
  }, [fetchPage]);

  useEffect(() => {
    generation.current += 1;
    setState(EMPTY);
    void fetchPage(null, generation.current);
  }, [fetchPage]);

  const loadMore = useCallback(() => {
    const s = current.current.state;
    if (s.loading || !s.hasNext) return;
    setState((x) => ({ ...x, loading: true }));
    void fetchPage(s.endCursor, generation.current);
  }, [fetchPage]);

  /** One conversation as the list query shows it (exact unread count), or null; with
   * `within`, only if it is one of `within`'s. */
  const fetchOne = useCallback(
    async (id: string, within?: Record<string, unknown> | null): Promise<InboxConversation | null> => {
      const result = await client
        .query<ConversationsData>(InboxConversationsDocument, { first: 1, filter: both({ id: { eq: id } }, within) }, { requestPolicy: "network-only" })
        .toPromise();
      return result.data?.conversations.nodes[0] ?? null;
    },
    [client],
  );

  const patch = useCallback((id: string, change: Partial<InboxConversation>) => {
    setState((s) => ({ ...s, items: s.items.map((c) => (c.id === id ? { ...c, ...change } : c)) }));
  }, []);

  const apply = useCallback(
    (event: InboxEvent) => {
      const { filters: f, me: user, selectedId: open, drill: narrowed } = current.current;
      const changed = event.conversation;
      if (!changed) return;
      if (narrowed) {
        // A drill-down's filter is the API's to judge: a conversation it does not hold
        // yet joins the list only if the API finds it within that filter.
        const held = current.current.state.items.some((c) => c.id === changed.id);
        if (!held) {
          void fetchOne(changed.id, filter).then((one) => {
            if (!one) return;
            setState((x) =>
              x.items.some((c) => c.id === one.id) ? x : { ...x, items: [...x.items, one].sort(byLatest), total: x.total + 1 },
            );
          });
          return;
        }
      }
      if (event.type === "conversation.read") {
        if (event.readBy?.id === user && event.lastReadSeq !== null && event.lastReadSeq >= changed.lastMessageSeq) {
          patch(changed.id, { unreadCount: 0 });
        }
        return;
      }
      const fromOther =
        event.type === "message.created" && event.message !== null && event.message.author?.id !== user;
      if (matches(changed, f, user) && !current.current.state.items.some((c) => c.id === changed.id)) {
        // New to this list: its own unread count comes with a query of it.
        void fetchOne(changed.id).then((one) => {
          if (!one) return;
          setState((x) => ({
            ...x,
            items: x.items.map((c) => (c.id === one.id ? { ...c, unreadCount: one.unreadCount } : c)),
          }));
        });
      }
      setState((s) => {
        const index = s.items.findIndex((c) => c.id === changed.id);
        const before = index >= 0 ? s.items[index] : null;
        if (!matches(changed, f, user)) {
          if (!before) return s;
          return { ...s, items: s.items.filter((c) => c.id !== changed.id), total: Math.max(0, s.total - 1) };
        }
        const unread =
          (before?.unreadCount ?? 0) + (fromOther && changed.id !== open ? 1 : 0);
        const next: InboxConversation = { ...changed, unreadCount: changed.id === open ? 0 : unread };
        const rest = s.items.filter((c) => c.id !== changed.id);
        // Beyond the pages loaded so far it comes with the next page instead.
        const last = rest[rest.length - 1];
        if (!before && s.hasNext && last && sortKey(next) < sortKey(last)) return s;
        const items = [...rest, next].sort(byLatest);
        return { ...s, items, total: before ? s.total : s.total + 1 };
      });
    },
    [fetchOne, patch, filter],
  );

  // Live: the inbox stream, resumed by cursor after a dropped connection. Until its
  // first event there is no cursor to resume from: a reconnection reloads the list.
  useEffect(() => {
    let cursorSeen = false;
    const stop = resumable<InboxEvent>(live, InboxEventsDocument, {}, "inbox", {
      event: (event) => {
        cursorSeen = true;
        apply(event);
      },
    });
    let epoch = live.epoch;
    const unlisten = live.subscribe(() => {
      if (live.epoch !== epoch) {
        const first = epoch === 0;
        epoch = live.epoch;
        if (!cursorSeen && !first) reload();
      }
    });
    return () => {
      stop();
      unlisten();
    };
  }, [live, apply, reload]);

  return { state, loadMore, reload, patch, fetchOne };
}

/** Ids of the users online now: `onlineUsers`, then `presence` changes (read again on
 * every reconnection: presence events have no cursor). */
function useOnline(): Set<string> {
  const live = useLiveConnection();
  const [online, reexecute] = useQuery<{ onlineUsers: { id: string }[] }>({ query: OnlineUsersDocument, requestPolicy: "network-only" });
  const [changes, setChanges] = useState<Record<string, boolean>>({});
  useSubscription<{ presence: { status: string; user: { id: string } | null } }>({ query: PresenceEventsDocument }, (_, event) => {
    const id = event.presence.user?.id;
    if (id) setChanges((c) => ({ ...c, [id]: event.presence.status === "ONLINE" }));
    return event;
  });
  useEffect(() => {
    let epoch = live.epoch;
    return live.subscribe(() => {
      if (live.epoch !== epoch) {
        epoch = live.epoch;
        setChanges({});
        reexecute({ requestPolicy: "network-only" });
      }
    });
  }, [live, reexecute]);
  return useMemo(() => {
    const ids = new Set((online.data?.onlineUsers ?? []).map((u) => u.id));
    for (const [id, on] of Object.entries(changes)) {
      if (on) ids.add(id);
      else ids.delete(id);
    }
    return ids;
  }, [online.data, changes]);
}

function isTypingTarget(target: EventTarget | null): boolean {
  const element = target as HTMLElement | null;
  return !!element && (element.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(element.tagName));
}

export function InboxPage(props: { conversationId: string | null; user: SessionUser; writable: boolean; drill?: Drill | null }) {
  const drill = props.drill ?? null;
  // A drill-down shows its conversations whatever their status; the filters narrow it further.
  const [filters, setFilters] = useState<InboxFilters>({ view: "all", status: drill ? "" : "OPEN", channel: "" });
  const me = props.user.id;
  const { state, loadMore, reload, patch, fetchOne } = useConversationList(filters, me, props.conversationId, drill);
  const online = useOnline();
  const team = useTeam().filter((u) => canWrite(u.role));

  // The open conversation: from the list, else (a shared link, another filter) fetched.
  const listed = state.items.find((c) => c.id === props.conversationId) ?? null;
  const [fetched, setFetched] = useState<InboxConversation | null>(null);
  useEffect(() => {
    setFetched(null);
    if (props.conversationId && !listed) {
      void fetchOne(props.conversationId).then(setFetched);
    }
    // Only when another conversation is opened (not when the list changes).
  }, [props.conversationId]);
  const selected = listed ?? (fetched?.id === props.conversationId ? fetched : null);
  const selectedIndex = state.items.findIndex((c) => c.id === props.conversationId);

  // The drill-down (the URL's fragment) stays while conversations are opened.
  const open = (id: string) => navigate(`/inbox/${encodeURIComponent(id)}${window.location.hash}`, true);
  const change = useCallback(
    (id: string, update: Partial<InboxConversation>) => {
      patch(id, update);
      setFetched((f) => (f && f.id === id ? { ...f, ...update } : f));
    },
    [patch],
  );

  // Keyboard: j / k next and previous conversation, r reply, c close (not while typing).
  useEffect(() => {
    function onKey(event: KeyboardEvent) {
      if (event.ctrlKey || event.metaKey || event.altKey || isTypingTarget(event.target)) return;
      const items = state.items;
      if (event.key === "j" || event.key === "k") {
        if (!items.length) return;
        const step = event.key === "j" ? 1 : -1;
        const index = selectedIndex < 0 ? 0 : Math.min(items.length - 1, Math.max(0, selectedIndex + step));
        open(items[index].id);
        event.preventDefault();
      } else if (event.key === "r") {
        const composer = document.getElementById("composer");
        if (composer) {
          composer.focus();
          event.preventDefault();
        }
      } else if (event.key === "c") {
        document.getElementById("close-conversation")?.click();
      }
    }
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [state.items, selectedIndex]);

  const others = team.filter((u) => u.id !== me && online.has(u.id));
  return (
    <section class="inbox" aria-labelledby="inbox-title">
      <div class="inbox-list">
        <div class="page-head">
          <h1 id="inbox-title">Inbox</h1>
          <p class="online" aria-live="polite">
            {others.length ? (
              <>
                <span class="dot on" aria-hidden="true" /> Online: {others.map((u) => u.name).join(", ")}
              </>
            ) : (
              "No one else online"
            )}
          </p>
        </div>
        {drill && <DrillBanner drill={drill} clear="/inbox" clearLabel="Show the whole inbox" />}
        <form class="filters compact" onSubmit={(e) => e.preventDefault()} aria-label="Filter conversations">
          <div class="field">
            <label for="inbox-view">Show</label>
            <select id="inbox-view" value={filters.view} onChange={(e) => setFilters({ ...filters, view: e.currentTarget.value as InboxFilters["view"] })}>
              <option value="all">All</option>
              <option value="mine">Mine</option>
              <option value="unassigned">Unassigned</option>
            </select>
          </div>
          <div class="field">
            <label for="inbox-status">Status</label>
            <select id="inbox-status" value={filters.status} onChange={(e) => setFilters({ ...filters, status: e.currentTarget.value })}>
              <option value="">Any</option>
              {STATUSES.map((s) => (
                <option key={s} value={s}>
                  {humanize(s)}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="inbox-channel">Channel</label>
            <select id="inbox-channel" value={filters.channel} onChange={(e) => setFilters({ ...filters, channel: e.currentTarget.value })}>
              <option value="">Any</option>
              {CHANNELS.map((c) => (
                <option key={c} value={c}>
                  {humanize(c)}
                </option>
              ))}
            </select>
          </div>
        </form>
        <p class="count" aria-live="polite">
          {state.total === 1 ? "1 conversation" : `${state.total} conversations`}
          {state.loading && state.items.length ? " · loading…" : ""}
        </p>
        {state.error && !state.items.length ? (
          <div class="state error" role="alert">
            <p>{state.error}</p>
            <button type="button" onClick={reload}>
              Retry
            </button>
          </div>
        ) : state.loading && !state.items.length ? (
          <Loading what="conversations" />
        ) : !state.items.length ? (
          <Empty>No conversations match these filters.</Empty>
        ) : (
          <VirtualList
            items={state.items}
            rowHeight={ROW_HEIGHT}
            keyOf={(c) => c.id}
            label="Conversations"
            class="conversation-list"
            onNearEnd={state.hasNext ? loadMore : undefined}
            focusIndex={selectedIndex}
            render={(c) => (
              <ConversationRow conversation={c} selected={c.id === props.conversationId} online={online} onOpen={() => open(c.id)} />
            )}
          />
        )}
        <p class="hint">
          Keys: <kbd>j</kbd>/<kbd>k</kbd> next/previous, <kbd>r</kbd> reply, <kbd>c</kbd> close
        </p>
      </div>
      <div class="inbox-chat">
        {props.conversationId ? (
          <ChatPane
            key={props.conversationId}
            id={props.conversationId}
            conversation={selected}
            user={props.user}
            writable={props.writable}
            team={team}
            online={online}
            onChange={change}
          />
        ) : (
          <Empty>Pick a conversation.</Empty>
        )}
      </div>
    </section>
  );
}

function ConversationRow(props: { conversation: InboxConversation; selected: boolean; online: Set<string>; onOpen: () => void }) {
  const c = props.conversation;
  const unread = c.unreadCount ?? 0;
  return (
    <button
      type="button"
      class={props.selected ? "conversation selected" : "conversation"}
      aria-current={props.selected ? "true" : undefined}
      data-conversation-id={c.id}
      onClick={props.onOpen}
    >
      <span class="line">
        <span class="who">{c.customer?.name ?? "Unknown customer"}</span>
        <span class="when">{formatDateTime(c.lastMessageAt)}</span>
      </span>
      <span class="line">
        <span class="preview">{c.lastMessage?.body ?? c.subject ?? "No messages yet"}</span>
        {unread > 0 && (
          <span class="unread" aria-label={`${unread} unread`}>
            {unread}
          </span>
        )}
      </span>
      <span class="line meta">
        <span>
          {humanize(c.channel)} · <span class="status" data-status={c.status}>{humanize(c.status)}</span>
        </span>
        <span>
          {c.assignee ? (
            <>
              <span class={props.online.has(c.assignee.id) ? "dot on" : "dot"} aria-hidden="true" />
              {c.assignee.name}
            </>
          ) : (
            "Unassigned"
          )}
        </span>
      </span>
    </button>
  );
}
