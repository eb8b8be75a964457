// The login of this browser tab: tokens from the `login` mutation, kept in memory and in
// sessionStorage (gone with the tab, never in a URL or localStorage), the access token
// refreshed with `refreshToken` a minute before it expires. The same API and rules as
// any other client.
import LoginDocument from "./operations/Login.graphql";
import LogoutDocument from "./operations/Logout.graphql";
import RefreshTokenDocument from "./operations/RefreshToken.graphql";

export const GRAPHQL_PATH = "/graphql";
const STORAGE_KEY = "crm-console.session";
const REFRESH_BEFORE_MS = 60_000;
const RETRY_MS = 5_000;

export type Role = "ADMIN" | "MANAGER" | "AGENT" | "VIEWER";

export interface SessionUser {
  id: string;
  name: string;
  email: string;
  role: Role;
}

export interface Session {
  accessToken: string;
  refreshToken: string;
  expiresAt: string;
  user: SessionUser;
}

export interface UserError {
  code: string;
  field: string | null;
  message: string;
}

interface AuthPayload {
  accessToken: string | null;
  refreshToken: string | null;
  expiresAt: string | null;
  user: SessionUser | null;
  errors: UserError[];
}

/** Roles that may change records; a viewer only reads. */
export function canWrite(role: Role): boolean {
  return role !== "VIEWER";
}

/** Roles that may take the manager's actions (archive a customer, ...); the API decides
 * the same (services/policy.py, MANAGERS). */
export function canManage(role: Role): boolean {
  return role === "ADMIN" || role === "MANAGER";
}

/** POST one operation without the client's exchanges (login and refresh must not loop
 * through the auth handling they serve). */
async function post<T>(query: string, variables: Record<string, unknown>, token?: string): Promise<T> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(GRAPHQL_PATH, {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
  if (!body.data) throw new Error(body.errors?.[0]?.message ?? `HTTP ${response.status}`);
  return body.data;
}

function toSession(payload: AuthPayload): Session | null {
  const { accessToken, refreshToken, expiresAt, user } = payload;
  if (!accessToken || !refreshToken || !expiresAt || !user) return null;
  return { accessToken, refreshToken, expiresAt, user };
}

function load(): Session | null {
  try {
    const text = sessionStorage.getItem(STORAGE_KEY);
    return text ? (JSON.parse(text) as Session) : null;
  } catch {
    return null;
  }
}

type Listener = (session: Session | null, reason: string | null) => void;

export class SessionStore {
  current: Session | null = load();
  private listeners = new Set<Listener>();
  private timer: number | undefined;
  private refreshing: Promise<boolean> | null = null;

  constructor() {
    if (this.current) this.schedule();
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Log in; resolves to the API's errors (empty on success). */
  async login(email: string, password: string): Promise<UserError[]> {
    const data = await post<{ login: AuthPayload }>(LoginDocument, { input: { email, password } });
    const session = toSession(data.login);
    if (session) this.set(session, null);
    return data.login.errors;
  }

  /** Revoke this login's refresh token on the server, then forget the tokens. */
  async logout(): Promise<void> {
    const session = this.current;
    this.set(null, null);
    if (session) {
      try {
        await post(LogoutDocument, { input: { refreshToken: session.refreshToken } }, session.accessToken);
      } catch {
        // The tokens are forgotten here either way; the access token expires on its own.
      }
    }
  }

  /** Exchange the refresh token now (once at a time). False when the login has ended. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.exchange().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async exchange(): Promise<boolean> {
    const session = this.current;
    if (!session) return false;
    let data: { refreshToken: AuthPayload };
    try {
      data = await post(RefreshTokenDocument, { input: { refreshToken: session.refreshToken } });
    } catch {
      // Server unreachable: keep the tokens and try again shortly.
      this.timer = window.setTimeout(() => void this.refresh(), RETRY_MS);
      return false;
    }
    const next = toSession(data.refreshToken);
    if (next) {
      this.set(next, null);
      return true;
    }
    this.set(null, "Your session has ended. Please log in again.");
    return false;
  }

  private set(session: Session | null, reason: string | null): void {
    this.current = session;
    window.clearTimeout(this.timer);
    if (session) {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
      this.schedule();
    } else {
      sessionStorage.removeItem(STORAGE_KEY);
    }
    for (const listener of this.listeners) listener(session, reason);
  }

  private schedule(): void {
    if (!this.current) return;
    const due = Date.parse(this.current.expiresAt) - REFRESH_BEFORE_MS - Date.now();
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.refresh(), Math.max(0, due));
  }
}
