"""First load of the web console in headless Chromium against a running server
(docs/decisions/0027-web-console.md, 0028-console-inbox-dashboard.md). Never part of
`make test`: figures go in docs.

    python -m bench.console_load --url http://127.0.0.1:8000 \\
        --email agent@demo.example --password demo-agent [--runs 10]
    python -m bench.console_load --url http://127.0.0.1:8000 \\
        --inbox postgresql://postgres@127.0.0.1:5432/crm [--runs 10]

With ``--inbox DATABASE_URL`` (the server's database) it first writes a workspace with an
agent, 1,000 conversations and a 5,000-message history (bench/console_inbox_data.py),
then measures the inbox as that agent: the page with the conversation list and the
newest messages of the long conversation shown, the list scrolled to its end (every page
of conversations loaded), older history pages, the `j` key moving to the next
conversation, and how many rows the DOM holds.

Logs in once (the tokens stay in the tab's sessionStorage), loads /app/customers once to
warm the server and the browser's cache of the immutable bundles, then reloads it
``--runs`` times (``--empty-cache``: as a first visit, the bundles fetched again) and reports per run: the browser's navigation timing (DOMContentLoaded,
load) and the time until the customers table shows its first row (the page's first
GraphQL answer rendered), as median and worst.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.browser import TIMEOUT_S, chromium

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

JS_NAVIGATION = """
const n = performance.getEntriesByType('navigation')[0];
return [n.domContentLoadedEventEnd, n.loadEventEnd];
"""


JS_SCROLL_TO_END = """
const [total, done] = [arguments[0], arguments[arguments.length - 1]];
const list = document.querySelector('.vlist');
const started = performance.now();
function step() {
  list.scrollTop = list.scrollHeight;
  const rows = list.querySelectorAll('li[aria-posinset]');
  const last = rows.length ? Number(rows[rows.length - 1].getAttribute('aria-posinset')) : 0;
  if (last >= total) return done([performance.now() - started, rows.length]);
  if (performance.now() - started > 120000) return done([-1, rows.length]);
  setTimeout(step, 5);
}
step();
"""
JS_NEXT_CONVERSATION = """
const done = arguments[arguments.length - 1];
const selected = () => document.querySelector('button.conversation.selected');
const before = selected()?.dataset.conversationId;
document.activeElement?.blur();
const started = performance.now();
window.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true}));
let moved = null;
function step() {
  const now = selected();
  if (moved === null && now && now.dataset.conversationId !== before) moved = performance.now() - started;
  const title = document.getElementById('chat-title')?.textContent;
  const shown = document.querySelectorAll('.messages li.message[data-seq]').length;
  if (moved !== null && now && title === now.querySelector('.who').textContent && shown > 0) {
    return done([moved, performance.now() - started]);
  }
  if (performance.now() - started > 30000) return done([-1, -1]);
  setTimeout(step, 2);
}
step();
"""
JS_OLDER_PAGE = """
const done = arguments[arguments.length - 1];
const box = document.querySelector('.messages');
const count = () => box.querySelectorAll('li.message[data-seq]').length;
const before = count();
const started = performance.now();
box.scrollTop = 0;
box.dispatchEvent(new Event('scroll'));
function step() {
  if (count() > before) return done([performance.now() - started, count()]);
  if (performance.now() - started > 30000) return done([-1, count()]);
  setTimeout(step, 2);
}
step();
"""


def _report(label: str, values: list[float]) -> None:
    print(
        f"{label:>34}: median {statistics.median(values):7.0f} ms, "
        f"worst {max(values):7.0f} ms ({len(values)} runs)"
    )


def _log_in(browser: WebDriver, wait: WebDriverWait[WebDriver], url: str, email: str,
            password: str) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{url}/app/customers")
    wait.until(ec.visibility_of_element_located((By.ID, "login-email")))
    browser.find_element(By.ID, "login-email").send_keys(email)
    browser.find_element(By.ID, "login-password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.customers, p.state.empty"))


def measure_inbox(url: str, database_url: str, runs: int) -> None:
    """Seed the inbox workspace, then time the inbox in Chromium (see the module doc)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from bench.console_inbox_data import seed_inbox
    from crm_graphql.db.engine import make_engine, make_sessionmaker
    from crm_graphql.global_ids import to_global_id

    async def seed() -> Any:
        engine = make_engine(database_url, pool_size=2)
        try:
            return await seed_inbox(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    started = time.perf_counter()
    data = asyncio.run(seed())
    print(
        f"seeded {data.conversations} conversations, one with {data.history} messages, "
        f"in {time.perf_counter() - started:.1f} s"
    )
    page = f"{url}/app/inbox/{to_global_id('Conversation', data.big_conversation_id)}"
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as browser:
        wait = WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.005)
        _log_in(browser, wait, url, data.email, data.password)
        browser.set_script_timeout(180)
        for run in range(runs + 1):  # the first run warms the server and the cache
            started = time.perf_counter()
            browser.get(page)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button.conversation"))
            list_ms = (time.perf_counter() - started) * 1000
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".messages li.message[data-seq]"))
            chat_ms = (time.perf_counter() - started) * 1000
            rows = len(browser.find_elements(By.CSS_SELECTOR, "button.conversation"))
            shown = len(browser.find_elements(By.CSS_SELECTOR, ".messages li.message"))
            older = [browser.execute_async_script(JS_OLDER_PAGE) for _ in range(5)]
            end_ms, end_rows = browser.execute_async_script(JS_SCROLL_TO_END, data.conversations)
            browser.execute_script("document.querySelector('.vlist').scrollTop = 0")
            keys = [browser.execute_async_script(JS_NEXT_CONVERSATION) for _ in range(5)]
            if run == 0:
                print(
                    f"DOM: {rows} conversation rows of {data.conversations}, {shown} messages "
                    f"of {data.history} at first, {older[-1][1]} after 5 older pages, "
                    f"{end_rows} rows with the whole list loaded"
                )
                continue
            for label, value in (
                ("inbox: conversation list shown", list_ms),
                ("inbox: newest messages shown", chat_ms),
                ("inbox: all 1,000 loaded by scrolling", end_ms),
            ):
                figures.setdefault(label, []).append(value)
            figures.setdefault("inbox: an older history page", []).extend(o[0] for o in older)
            figures.setdefault("inbox: j selects the next one", []).extend(k[0] for k in keys)
            figures.setdefault("inbox: j, its messages shown", []).extend(k[1] for k in keys)
    for label, values in figures.items():
        _report(label, values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--email", default="agent@demo.example")
    parser.add_argument("--password", default="demo-agent")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--empty-cache", action="store_true", help="clear the browser's cache before each run"
    )
    parser.add_argument(
        "--inbox",
        metavar="DATABASE_URL",
        help="seed 1,000 conversations and a 5,000-message history there, time the inbox",
    )
    args = parser.parse_args(argv)
    if args.inbox:
        measure_inbox(args.url, args.inbox, args.runs)
        return 0

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    first_row = (By.CSS_SELECTOR, "table.customers tbody tr")
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as browser:
        # Poll often: the default half second would dominate the figure.
        wait = WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.005)
        browser.get(f"{args.url}/app/customers")
        wait.until(ec.visibility_of_element_located((By.ID, "login-email")))
        browser.find_element(By.ID, "login-email").send_keys(args.email)
        browser.find_element(By.ID, "login-password").send_keys(args.password)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(ec.presence_of_element_located(first_row))
        rows: list[tuple[float, float, float]] = []
        for _ in range(args.runs):
            if args.empty_cache:
                browser.execute_cdp_cmd("Network.clearBrowserCache", {})
            started = time.perf_counter()
            browser.get(f"{args.url}/app/customers")
            wait.until(ec.presence_of_element_located(first_row))
            table_ms = (time.perf_counter() - started) * 1000
            dom_ms, load_ms = browser.execute_script(JS_NAVIGATION)
            rows.append((float(dom_ms), float(load_ms), table_ms))
    for label, index in (("DOMContentLoaded", 0), ("load", 1), ("table shown", 2)):
        values = [r[index] for r in rows]
        print(
            f"{label:>16}: median {statistics.median(values):6.0f} ms, "
            f"worst {max(values):6.0f} ms ({len(values)} runs)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
