import { render } from "preact";

import { App } from "./app";
import { LiveConnection, createClient } from "./client";
import { SessionStore } from "./session";
import "./styles.css";

// urql aborts a request whose result is no longer wanted (a one-shot query answered, a
// page left); the abort surfaces as an unhandled AbortError that means nothing.
window.addEventListener("unhandledrejection", (event) => {
  if ((event.reason as { name?: string } | null)?.name === "AbortError") event.preventDefault();
});

const store = new SessionStore();
const live = new LiveConnection();
render(<App store={store} live={live} client={createClient(store, live)} />, document.getElementById("console")!);
