import { useState } from "preact/hooks";

import type { SessionStore, UserError } from "../session";
import { FormErrors, TextField } from "../ui";

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
        <TextField
          id="login-email"
          label="Email"
          input={{ type: "email", autoComplete: "username" }}
          field="email"
          errors={errors}
          value={email}
          onInput={setEmail}
        />
        <TextField
          id="login-password"
          label="Password"
          input={{ type: "password", autoComplete: "current-password" }}
          field="password"
          errors={errors}
          value={password}
          onInput={setPassword}
        />
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
