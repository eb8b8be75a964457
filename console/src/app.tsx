import type { Client } from "@urql/core";
import type { ComponentType } from "preact";
import { Provider } from "@urql/preact";
import { useEffect, useState } from "preact/hooks";

import type { LiveConnection } from "./client";
import { useDrill } from "./drill";
import { LiveBadge, LiveContext } from "./live";
import { CustomerPage } from "./pages/customer";
import { CustomersPage } from "./pages/customers";
import { DealsPage } from "./pages/deals";
import { DuplicatesPage } from "./pages/duplicates";
import { InboxPage } from "./pages/inbox";
import { LoginPage } from "./pages/login";
import { DealList, OrdersPage } from "./pages/records";
import { Link, usePath } from "./router";
import { canManage, canWrite, type Session, type SessionStore } from "./session";
import { Loading } from "./ui";

function useSession(store: SessionStore): [Session | null, string | null] {
  const [state, setState] = useState<[Session | null, string | null]>([store.current, null]);
  useEffect(() => store.subscribe((session, reason) => setState([session, reason])), [store]);
  return state;
}

/** The dashboard, loaded when first opened (it brings the charting library). */
function LazyDashboard() {
  const [page, setPage] = useState<{ Page: ComponentType } | null>(null);
  const [failed, setFailed] = useState(false);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    import("./pages/dashboard").then(
      (module) => setPage({ Page: module.DashboardPage }),
      () => setFailed(true),
    );
  }, [attempt]);
  if (page) return <page.Page />;
  if (failed) {
    return (
      <div class="state error" role="alert">
        <p>The dashboard could not be loaded.</p>
        <button type="button" onClick={() => { setFailed(false); setAttempt((n) => n + 1); }}>
          Retry
        </button>
      </div>
    );
  }
  return <Loading what="the dashboard" />;
}

function Route(props: { path: string; session: Session }) {
  const writable = canWrite(props.session.user.role);
  const manager = canManage(props.session.user.role);
  // A report's drill-down (the URL's fragment) narrows the list pages.
  const drill = useDrill();
  const customer = /^\/customers\/([^/]+)$/.exec(props.path);
  if (customer) return <CustomerPage id={decodeURIComponent(customer[1])} writable={writable} manager={manager} />;
  const board = /^\/deals(?:\/([^/]+))?$/.exec(props.path);
  if (board && drill && !board[1]) return <DealList drill={drill} />;
  if (board) return <DealsPage pipelineId={board[1] ? decodeURIComponent(board[1]) : null} writable={writable} />;
  const inbox = /^\/inbox(?:\/([^/]+))?$/.exec(props.path);
  if (inbox) {
    const id = inbox[1] ? decodeURIComponent(inbox[1]) : null;
    // Leaving a drill-down starts the inbox afresh (its default filters).
    return <InboxPage key={drill ? "drill" : "inbox"} conversationId={id} user={props.session.user} writable={writable} drill={drill} />;
  }
  if (props.path === "/dashboard") return <LazyDashboard />;
  if (props.path === "/" || props.path === "/customers") return <CustomersPage writable={writable} drill={drill} />;
  if (props.path === "/orders") return <OrdersPage drill={drill} />;
  if (props.path === "/duplicates") return <DuplicatesPage mergeable={manager} />;
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        <Link href="/customers">Go to the customers</Link>
      </p>
    </section>
  );
}

export function App(props: { store: SessionStore; live: LiveConnection; client: Client }) {
  const [session, reason] = useSession(props.store);
  const path = usePath();
  useEffect(() => {
    document.title = session ? "crm_graphql console" : "Log in · crm_graphql console";
  }, [session]);
  if (!session) return <LoginPage store={props.store} notice={reason} />;
  return (
    <LiveContext.Provider value={props.live}>
    <Provider value={props.client}>
      <header class="topbar">
        <Link href="/customers" class="brand">
          crm_graphql
        </Link>
        <nav aria-label="Main">
          <Link href="/customers" class={path.startsWith("/customers") || path === "/" ? "active" : undefined}>
            Customers
          </Link>
          <Link href="/deals" class={path.startsWith("/deals") ? "active" : undefined}>
            Deals
          </Link>
          <Link href="/inbox" class={path.startsWith("/inbox") ? "active" : undefined}>
            Inbox
          </Link>
          <Link href="/dashboard" class={path.startsWith("/dashboard") ? "active" : undefined}>
            Dashboard
          </Link>
          <Link href="/duplicates" class={path.startsWith("/duplicates") ? "active" : undefined}>
            Duplicates
          </Link>
        </nav>
        <div class="who">
          <LiveBadge />
          <span>{session.user.name}</span>
          <span class="role" data-role={session.user.role}>
            {session.user.role.toLowerCase()}
          </span>
          <button type="button" class="link" onClick={() => void props.store.logout()}>
            Log out
          </button>
        </div>
      </header>
      <main id="main">
        <Route path={path} session={session} />
      </main>
    </Provider>
    </LiveContext.Provider>
  );
}
