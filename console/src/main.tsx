import { render } from "preact";

import { App } from "./app";
import { LiveConnection, createClient } from "./client";
import { SessionStore } from "./session";
import "./styles.css";

const store = new SessionStore();
const live = new LiveConnection();
render(<App store={store} live={live} client={createClient(store, live)} />, document.getElementById("console")!);
