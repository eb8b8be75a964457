// One conversation's chat: the history paged backwards by cursor, new messages live from
// `conversationEvents` resumed by cursor (a gap in `seq` is fetched, so none is lost and,
// kept by `seq`, none shows twice), sending with a client message id (shown at once as
// pending, confirmed by the API's answer; a retry after a failure cannot duplicate it),
// typing signals both ways, assignment and close / reopen.
import { useClient, useMutation, useSubscription } from "@urql/preact";
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { resumable } from "../client";
import AssignConversationDocument from "../operations/AssignConversation.graphql";
import ConversationEventsDocument from "../operations/ConversationEvents.graphql";
import ConversationMessagesDocument from "../operations/ConversationMessages.graphql";
import MarkConversationReadDocument from "../operations/MarkConversationRead.graphql";
import SendMessageDocument from "../operations/SendMessage.graphql";
import SetConversationStatusDocument from "../operations/SetConversationStatus.graphql";
import SetTypingDocument from "../operations/SetTyping.graphql";
import TypingEventsDocument from "../operations/TypingEvents.graphql";
import { useLiveConnection } from "../live";
import { Link } from "../router";
import type { SessionUser, UserError } from "../session";
import { formatDateTime, humanize } from "../ui";
import type { InboxConversation, Person } from "./inbox";

const HISTORY_PAGE = 50;
const GAP_PAGE = 100;
const TYPING_REPEAT_MS = 3_000; // the API: repeat within ~6 s while typing
const TYPING_EXPIRES_MS = 6_500;
const READ_DELAY_MS = 400;

interface Message {
  id: string;
  seq: number;
  authorType: string;
  body: string;
  clientMessageId: string | null;
  createdAt: string;
  author: Person | null;
}

interface Pending {
  clientMessageId: string;
  body: string;
  failed: string | null;
}

interface MessagesData {
  node: {
    id: string;
    lastMessageSeq: number;
    messages: { pageInfo: { hasNextPage: boolean; endCursor: string | null }; nodes: Message[] };
  } | null;
}

interface ConversationEvent {
  cursor: string;
  type: string;
  conversation: { id: string; status: string; version: number; assignee: Person | null } | null;
  message: Message | null;
}

type Payload<T> = { errors: UserError[] } & T;

/** A UUID for `clientMessageId` (randomUUID needs a secure context; this does not). */
function newClientMessageId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Messages by seq (a message received twice, live and replayed, is kept once). */
function merged(current: Map<number, Message>, more: Message[]): Map<number, Message> {
  const next = new Map(current);
  for (const m of more) next.set(m.seq, m);
  return next;
}

export function ChatPane(props: {
  id: string;
  /** Its row (header: customer, status, assignee); null until known, while the history
   * already loads. */
  conversation: InboxConversation | null;
  user: SessionUser;
  writable: boolean;
  team: { id: string; name: string }[];
  online: Set<string>;
  onChange: (id: string, change: Partial<InboxConversation>) => void;
}) {
  const { id, conversation: c } = props;
  const client = useClient();
  const live = useLiveConnection();
  const [messages, setMessages] = useState<Map<number, Message>>(new Map());
  const [older, setOlder] = useState<{ cursor: string | null; more: boolean; loading: boolean }>({ cursor: null, more: false, loading: true });
  const [pending, setPending] = useState<Pending[]>([]);
  const [notice, setNotice] = useState<string | null>(null);
  const maxSeq = useRef(0);
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true); // keep the view at the newest message
  const keepFromBottom = useRef<number | null>(null);

  const add = useCallback((more: Message[]) => {
    if (!more.length) return;
    setMessages((current) => merged(current, more));
    for (const m of more) maxSeq.current = Math.max(maxSeq.current, m.seq);
    const confirmed = new Set(more.map((m) => m.clientMessageId).filter(Boolean));
    setPending((p) => p.filter((x) => !confirmed.has(x.clientMessageId)));
  }, []);

  const fetchMessages = useCallback(
    (variables: Record<string, unknown>) =>
      client.query<MessagesData>(ConversationMessagesDocument, { id, ...variables }, { requestPolicy: "network-only" }).toPromise(),
    [client, id],
  );

  /** Everything after the newest message held (a gap, or what happened while the
   * socket was down before any event gave a cursor). */
  const filling = useRef(false);
  const firstPage = useRef<Promise<void> | null>(null);
  const fillGap = useCallback(async () => {
    if (filling.current) return;
    filling.current = true;
    try {
      // After the newest page only: before it, "after the newest held" is everything.
      await firstPage.current;
      let after: string | null = null;
      for (;;) {
        const result = await fetchMessages({
          first: GAP_PAGE,
          after,
          filter: { seq: { gt: maxSeq.current } },
          orderBy: [{ field: "SEQ", direction: "ASC" }],
        });
        const page = result.data?.node?.messages;
        if (!page) return;
        add(page.nodes);
        if (!page.pageInfo.hasNextPage) return;
        after = page.pageInfo.endCursor;
      }
    } finally {
      filling.current = false;
    }
  }, [fetchMessages, add]);

  const loadOlder = useCallback(async () => {
    setOlder((o) => ({ ...o, loading: true }));
    const el = scroller.current;
    keepFromBottom.current = el ? el.scrollHeight - el.scrollTop : null;
    const result = await fetchMessages({
      first: HISTORY_PAGE,
      after: older.cursor,
      orderBy: [{ field: "SEQ", direction: "DESC" }],
    });
    const page = result.data?.node?.messages;
    if (!page) {
      setOlder((o) => ({ ...o, loading: false }));
      return;
    }
    add(page.nodes);
    setOlder({ cursor: page.pageInfo.endCursor, more: page.pageInfo.hasNextPage, loading: false });
  }, [fetchMessages, add, older.cursor]);

  // The newest page first, then older pages when scrolled to the top.
  useEffect(() => {
    firstPage.current = (async () => {
      const result = await fetchMessages({ first: HISTORY_PAGE, orderBy: [{ field: "SEQ", direction: "DESC" }] });
      const page = result.data?.node?.messages;
      if (!page) {
        setOlder({ cursor: null, more: false, loading: false });
        setNotice(result.error?.message ?? "The conversation could not be loaded.");
        return;
      }
      add(page.nodes);
      setOlder({ cursor: page.pageInfo.endCursor, more: page.pageInfo.hasNextPage, loading: false });
    })();
  }, [fetchMessages, add]);

  // Live, resumed by cursor; before the first event a reconnection fetches what is past
  // the newest message held, and so does any gap in `seq`.
  useEffect(() => {
    let cursorSeen = false;
    const stop = resumable<ConversationEvent>(
      live,
      ConversationEventsDocument,
      { conversationId: id },
      "conversationEvents",
      {
        event: (event) => {
          cursorSeen = true;
          if (event.conversation) {
            const { status, version, assignee } = event.conversation;
            props.onChange(id, { status, version, assignee });
          }
          const m = event.message;
          if (m) {
            const gap = maxSeq.current > 0 && m.seq > maxSeq.current + 1;
            add([m]);
            if (gap) void fillGap();
            props.onChange(id, {
              lastMessageSeq: Math.max(m.seq, maxSeq.current),
              lastMessageAt: m.createdAt,
              lastMessage: { body: m.body, authorType: m.authorType },
            });
          }
        },
        error: (message) => setNotice(message),
      },
    );
    let epoch = live.epoch;
    const unlisten = live.subscribe(() => {
      if (live.epoch !== epoch) {
        epoch = live.epoch;
        if (!cursorSeen) void fillGap();
      }
    });
    return () => {
      stop();
      unlisten();
    };
    // props.onChange is stable (useCallback in the page).
  }, [live, id, add, fillGap]);

  // Read receipts: up to the newest message shown, while the tab is visible.
  const [, markRead] = useMutation(MarkConversationReadDocument);
  const newest = maxSeq.current;
  useEffect(() => {
    if (!newest) return;
    const timer = window.setTimeout(() => {
      if (document.visibilityState !== "visible") return;
      void markRead({ input: { id, upToSeq: newest } });
      props.onChange(id, { unreadCount: 0 });
    }, READ_DELAY_MS);
    return () => window.clearTimeout(timer);
  }, [newest, id]);

  // Scrolling: stay at the bottom for new messages; keep the place when older ones load.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (keepFromBottom.current !== null) {
      el.scrollTop = el.scrollHeight - keepFromBottom.current;
      keepFromBottom.current = null;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [messages, pending]);

  function onScroll() {
    const el = scroller.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 80 && older.more && !older.loading) void loadOlder();
  }

  // Typing, both ways.
  const [typing, setTyping] = useState<Record<string, { name: string; until: number }>>({});
  useSubscription<{ typing: { isTyping: boolean; user: Person | null } }>(
    { query: TypingEventsDocument, variables: { conversationId: id } },
    (_, event) => {
      const who = event.typing.user;
      if (who && who.id !== props.user.id) {
        setTyping((t) => {
          const next = { ...t };
          if (event.typing.isTyping) next[who.id] = { name: who.name, until: Date.now() + TYPING_EXPIRES_MS };
          else delete next[who.id];
          return next;
        });
      }
      return event;
    },
  );
  const typingNames = Object.values(typing).map((t) => t.name);
  useEffect(() => {
    const entries = Object.values(typing);
    if (!entries.length) return;
    const soonest = Math.min(...entries.map((t) => t.until));
    const timer = window.setTimeout(
      () => setTyping((t) => Object.fromEntries(Object.entries(t).filter(([, v]) => v.until > Date.now()))),
      Math.max(50, soonest - Date.now()),
    );
    return () => window.clearTimeout(timer);
  }, [typing]);

  const [, sendTyping] = useMutation(SetTypingDocument);
  const typingSent = useRef(0);
  function signalTyping(isTyping: boolean) {
    const now = Date.now();
    if (isTyping && now - typingSent.current < TYPING_REPEAT_MS) return;
    if (!isTyping && typingSent.current === 0) return;
    typingSent.current = isTyping ? now : 0;
    void sendTyping({ input: { conversationId: id, isTyping } });
  }

  // Sending.
  const [draft, setDraft] = useState("");
  const [, sendMessage] = useMutation<{ sendMessage: Payload<{ message: Message | null }> }>(SendMessageDocument);
  async function attempt(item: Pending) {
    setPending((p) => p.map((x) => (x.clientMessageId === item.clientMessageId ? { ...x, failed: null } : x)));
    const result = await sendMessage({
      input: { conversationId: id, body: item.body, clientMessageId: item.clientMessageId },
    });
    const payload = result.data?.sendMessage;
    if (payload?.message) {
      add([payload.message]);
      return;
    }
    const reason = payload?.errors[0]?.message ?? (result.error?.networkError ? "Not sent: the server is unavailable." : (result.error?.message ?? "Not sent."));
    setPending((p) => p.map((x) => (x.clientMessageId === item.clientMessageId ? { ...x, failed: reason } : x)));
  }
  function send(event: Event) {
    event.preventDefault();
    const body = draft.trim();
    if (!body) return;
    const item = { clientMessageId: newClientMessageId(), body, failed: null };
    setPending((p) => [...p, item]);
    setDraft("");
    stick.current = true;
    signalTyping(false);
    void attempt(item);
  }

  // Assignment and status.
  const [, assign] = useMutation<{ assignConversation: Payload<{ conversation: { id: string; version: number; assignee: Person | null } | null }> }>(AssignConversationDocument);
  const [, setStatus] = useMutation<{ setConversationStatus: Payload<{ conversation: { id: string; version: number; status: string } | null }> }>(SetConversationStatusDocument);
  async function assignTo(assigneeId: string | null) {
    const result = await assign({ input: { id, assigneeId } });
    const payload = result.data?.assignConversation;
    if (payload?.conversation) props.onChange(id, payload.conversation);
    setNotice(payload?.errors[0]?.message ?? (result.error ? result.error.message : null));
  }
  async function changeStatus(status: string) {
    const result = await setStatus({ input: { id, status } });
    const payload = result.data?.setConversationStatus;
    if (payload?.conversation) props.onChange(id, payload.conversation);
    setNotice(payload?.errors[0]?.message ?? (result.error ? result.error.message : null));
  }

  const shown = [...messages.values()].sort((a, b) => a.seq - b.seq);
  const confirmedIds = new Set(shown.map((m) => m.clientMessageId));
  const waiting = pending.filter((p) => !confirmedIds.has(p.clientMessageId));
  const assignee = c?.assignee ?? null;
  return (
    <article class="chat" aria-labelledby="chat-title">
      {c ? (
      <header class="chat-head">
        <div>
          <h2 id="chat-title">
            {c.customer ? <Link href={`/customers/${encodeURIComponent(c.customer.id)}`}>{c.customer.name}</Link> : "Unknown customer"}
          </h2>
          <p class="meta">
            {humanize(c.channel)} · <span class="status" data-status={c.status}>{humanize(c.status)}</span>
            {c.subject ? ` · ${c.subject}` : ""} ·{" "}
            <span class="assignee">
              {assignee ? (
                <>
                  <span class={props.online.has(assignee.id) ? "dot on" : "dot"} aria-hidden="true" />
                  {assignee.name}
                  {props.online.has(assignee.id) ? " (online)" : ""}
                </>
              ) : (
                "Unassigned"
              )}
            </span>
          </p>
        </div>
        {props.writable && (
          <div class="chat-actions">
            <label class="inline">
              <span class="visually-hidden">Assign to</span>
              <select id="assign-conversation" value={assignee?.id ?? ""} onChange={(e) => void assignTo(e.currentTarget.value || null)}>
                <option value="">Unassigned</option>
                {props.team.map((u) => (
                  <option key={u.id} value={u.id}>
                    {u.name}
                    {props.online.has(u.id) ? " · online" : ""}
                  </option>
                ))}
              </select>
            </label>
            {assignee?.id !== props.user.id && (
              <button type="button" onClick={() => void assignTo(props.user.id)}>
                Assign to me
              </button>
            )}
            {c.status === "CLOSED" ? (
              <button type="button" onClick={() => void changeStatus("OPEN")}>
                Reopen
              </button>
            ) : (
              <button type="button" id="close-conversation" onClick={() => void changeStatus("CLOSED")}>
                Close
              </button>
            )}
          </div>
        )}
      </header>
      ) : (
        <header class="chat-head">
          <h2 id="chat-title">Loading the conversation…</h2>
        </header>
      )}
      {notice && (
        <p class="notice" role="alert">
          {notice}
        </p>
      )}
      <div class="messages" ref={scroller} onScroll={onScroll} tabIndex={0} aria-label="Messages">
        {older.more ? (
          <p class="state">
            <button type="button" class="link" disabled={older.loading} onClick={() => void loadOlder()}>
              {older.loading ? "Loading older messages…" : "Load older messages"}
            </button>
          </p>
        ) : (
          !older.loading && <p class="state">Start of the conversation</p>
        )}
        <ol aria-live="polite">
          {shown.map((m) => (
            <li key={m.seq} class={`message ${m.authorType.toLowerCase()}${m.author?.id === props.user.id ? " mine" : ""}`} data-seq={m.seq}>
              <p class="body">{m.body}</p>
              <p class="meta">
                {m.author?.name ?? humanize(m.authorType)} · <time dateTime={m.createdAt}>{formatDateTime(m.createdAt)}</time>
              </p>
            </li>
          ))}
          {waiting.map((p) => (
            <li key={p.clientMessageId} class={p.failed ? "message agent mine pending failed" : "message agent mine pending"} data-client-id={p.clientMessageId}>
              <p class="body">{p.body}</p>
              <p class="meta">
                {p.failed ? (
                  <>
                    {p.failed}{" "}
                    <button type="button" class="link" onClick={() => void attempt(p)}>
                      Retry
                    </button>
                  </>
                ) : (
                  "Sending…"
                )}
              </p>
            </li>
          ))}
        </ol>
      </div>
      <p class="typing" aria-live="polite">
        {typingNames.length ? `${typingNames.join(", ")} ${typingNames.length === 1 ? "is" : "are"} typing…` : " "}
      </p>
      {props.writable ? (
        <form class="composer" onSubmit={send}>
          <label for="composer" class="visually-hidden">
            Reply
          </label>
          <textarea
            id="composer"
            rows={2}
            placeholder="Write a reply (Enter sends, Shift+Enter for a new line)"
            value={draft}
            onInput={(e) => {
              setDraft(e.currentTarget.value);
              signalTyping(e.currentTarget.value.length > 0);
            }}
            onBlur={() => signalTyping(false)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) send(e);
              if (e.key === "Escape") e.currentTarget.blur();
            }}
          />
          <button type="submit" class="primary" disabled={!draft.trim()}>
            Send
          </button>
        </form>
      ) : (
        <p class="state">Read only: your role cannot reply.</p>
      )}
    </article>
  );
}
