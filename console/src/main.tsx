import { render } from "preact";

import { App } from "./app";
import { createClient } from "./client";
import { SessionStore } from "./session";
import "./styles.css";

const store = new SessionStore();
render(<App store={store} client={createClient(store)} />, document.getElementById("console")!);
