// Small shared pieces: loading, error and empty states, field errors, formats.
import type { CombinedError } from "@urql/core";
import type { ComponentChildren, InputHTMLAttributes } from "preact";

import type { UserError } from "./session";

export function Loading(props: { what: string }) {
  return (
    <p class="state" role="status" aria-live="polite">
      Loading {props.what}…
    </p>
  );
}

export function ErrorState(props: { error: CombinedError; retry: () => void }) {
  const offline = props.error.networkError !== undefined;
  return (
    <div class="state error" role="alert">
      <p>{offline ? "The server is unavailable." : props.error.graphQLErrors[0]?.message ?? props.error.message}</p>
      <button type="button" onClick={props.retry}>
        Retry
      </button>
    </div>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <p class="state empty">{props.children}</p>;
}

/** The message of the API's error about `field`, shown under that field. */
export function FieldError(props: { errors: UserError[]; field: string; id: string }) {
  const error = props.errors.find((e) => e.field === props.field);
  return error ? (
    <span class="field-error" id={props.id} role="alert">
      {error.message}
    </span>
  ) : null;
}

/** Errors that belong to no field of the form (or to a field it does not show). */
export function FormErrors(props: { errors: UserError[]; fields: string[] }) {
  const rest = props.errors.filter((e) => !e.field || !props.fields.includes(e.field));
  return rest.length ? (
    <div class="form-errors" role="alert">
      {rest.map((e) => (
        <p key={e.code + e.message}>{e.message}</p>
      ))}
    </div>
  ) : null;
}

export function formatMoney(amount: string, currency: string): string {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(Number(amount));
  } catch {
    return `${amount} ${currency}`;
  }
}

export function formatDate(value: string | null | undefined): string {
  if (!value) return "—";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium" }).format(new Date(value));
}

export function formatDateTime(value: string | null | undefined): string {
  if (!value) return "—";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(value),
  );
}

/** LIFECYCLE_STAGE -> Lifecycle stage */
export function humanize(value: string): string {
  const text = value.toLowerCase().replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A labelled input with the API's error about `field` under it (and named by it). */
export function TextField(props: {
  id: string;
  label: string;
  field: string;
  errors: UserError[];
  value: string;
  onInput: (value: string) => void;
  /** More attributes of the input, such as its type (text by default). */
  input?: InputHTMLAttributes<HTMLInputElement>;
}) {
  const errorId = `${props.id}-error`;
  return (
    <div class="field">
      <label for={props.id}>{props.label}</label>
      <input
        {...(props.input ?? { type: "text" })}
        id={props.id}
        value={props.value}
        onInput={(e) => props.onInput(e.currentTarget.value)}
        aria-describedby={errorId}
        aria-invalid={props.errors.some((e) => e.field === props.field) || undefined}
      />
      <FieldError errors={props.errors} field={props.field} id={errorId} />
    </div>
  );
}

/** Previous / Next by keyset cursor: `cursors` holds the `after` of each page seen. */
export function Pager(props: {
  cursors: (string | null)[];
  setCursors: (update: (cursors: (string | null)[]) => (string | null)[]) => void;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}) {
  const page = props.cursors.length;
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled={page === 1} onClick={() => props.setCursors((c) => c.slice(0, -1))}>
        Previous
      </button>
      <span>Page {page}</span>
      <button
        type="button"
        disabled={!props.pageInfo.hasNextPage}
        onClick={() => props.setCursors((c) => [...c, props.pageInfo.endCursor])}
      >
        Next
      </button>
    </nav>
  );
}

/** A form's Submit (disabled and saying "Saving…" while `busy`) and Cancel buttons. */
export function FormActions(props: { busy: boolean; submit: string; onCancel: () => void }) {
  return (
    <div class="actions">
      <button type="submit" class="primary" disabled={props.busy}>
        {props.busy ? "Saving…" : props.submit}
      </button>
      <button type="button" onClick={props.onCancel}>
        Cancel
      </button>
    </div>
  );
}

/** A mutation's payload, its errors shown by `setErrors`; with no answer (the server
 * unreachable, a GraphQL error), null and that failure shown as the form's error. */
export function answered<P extends { errors: UserError[] }>(
  payload: P | null | undefined,
  error: CombinedError | undefined,
  setErrors: (errors: UserError[]) => void,
  failed = "Not saved.",
): P | null {
  if (!payload) {
    setErrors([{ code: "NETWORK", field: null, message: error?.message ?? failed }]);
    return null;
  }
  setErrors(payload.errors);
  return payload;
}
