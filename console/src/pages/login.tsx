import { useState } from "preact/hooks";

import type { SessionStore, UserError } from "../session";
import { FieldError, FormErrors } from "../ui";

export function LoginPage(props: { store: SessionStore; notice: string | null }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<UserError[]>([]);
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      setErrors(await props.store.login(email, password));
    } catch {
      setFailure("The server is unavailable. Try again in a moment.");
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="login">
      <form onSubmit={submit} aria-labelledby="login-title" noValidate>
        <h1 id="login-title">Log in to the console</h1>
        {props.notice && <p class="notice">{props.notice}</p>}
        <label for="login-email">Email</label>
        <input
          id="login-email"
          name="email"
          type="email"
          autoComplete="username"
          required
          value={email}
          onInput={(e) => setEmail(e.currentTarget.value)}
          aria-describedby="login-email-error"
        />
        <FieldError errors={errors} field="email" id="login-email-error" />
        <label for="login-password">Password</label>
        <input
          id="login-password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
          aria-describedby="login-password-error"
        />
        <FieldError errors={errors} field="password" id="login-password-error" />
        <FormErrors errors={errors} fields={["email", "password"]} />
        {failure && (
          <p class="form-errors" role="alert">
            {failure}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}
