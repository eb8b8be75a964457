"""First load of the web console in headless Chromium against a running server
(docs/decisions/0027-web-console.md, 0028-console-inbox-dashboard.md,
0036-console-drill-downs-and-figures.md). Never part of `make test`: figures go in docs,
and each run writes them, with the machine's load average and the compressed size of the
built JavaScript, to bench/results/console-<time>.json and .md.

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

Logs in once (the tokens stay in the tab's sessionStorage), loads /app once to warm the
server and the browser's cache of the immutable bundles, then reloads it ``--runs``
times (``--empty-cache``: as a first visit, the bundles fetched again) and reports per
run: the browser's navigation timing (DOMContentLoaded, load) and the time until the
customers table (the page /app opens on) shows its first row (the page's first GraphQL
answer rendered), as median and worst; then opens /app/dashboard ``--runs`` times (its
chunk with the charting library loaded on demand) until every chart is drawn.

The JavaScript's size is read from the build (crm_graphql/static/console): the entry and
the chunks it imports statically are the first load, the ones it imports with
``import()`` load on demand; each raw, gzip -9 and Brotli 11 (the copies the server sends).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
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


ASSETS = Path(__file__).resolve().parent.parent / "crm_graphql" / "static" / "console"
RESULTS = Path(__file__).resolve().parent / "results"
JS_CHARTS_DRAWN = """
const canvases = Array.from(document.querySelectorAll('.charts canvas'));
return canvases.length >= 4 && canvases.every(c => c.width > 0 && c.toDataURL().length > 2000);
"""


def _report(label: str, values: list[float]) -> dict[str, float]:
    """Print a figure's median and worst; return them (ms)."""
    print(
        f"{label:>34}: median {statistics.median(values):7.0f} ms, "
        f"worst {max(values):7.0f} ms ({len(values)} runs)"
    )
    return {"median_ms": round(statistics.median(values), 1), "worst_ms": round(max(values), 1),
            "runs": len(values)}  # fmt: skip


def bundle_sizes(assets: Path = ASSETS) -> dict[str, Any]:
    """Raw, gzip and Brotli bytes of each built JavaScript file, and the sums of the first
    load (the entry and what it imports statically) and of the chunks loaded on demand."""
    manifest = json.loads((assets / "manifest.json").read_text())
    files = sorted(name for name in manifest.values() if name.endswith(".js"))

    def sizes(name: str) -> dict[str, int]:
        path = assets / name
        return {
            "raw": path.stat().st_size,
            "gzip": (assets / f"{name}.gz").stat().st_size,
            "brotli": (assets / f"{name}.br").stat().st_size,
        }

    first = {manifest["main.js"]}
    todo = [manifest["main.js"]]
    while todo:  # static imports, transitively
        text = (assets / todo.pop()).read_text()
        for name in re.findall(r'from\s*"\./([^"]+\.js)"', text):
            if name not in first:
                first.add(name)
                todo.append(name)
    per_file = {name: sizes(name) for name in files}

    def total(names: list[str]) -> dict[str, int]:
        return {k: sum(per_file[n][k] for n in names) for k in ("raw", "gzip", "brotli")}

    on_demand = [n for n in files if n not in first]
    return {
        "files": per_file,
        "first_load": sorted(first),
        "first_load_total": total(sorted(first)),
        "on_demand": on_demand,
        "all_total": total(files),
    }


def _print_bundles(bundles: dict[str, Any]) -> None:
    for name, size in bundles["files"].items():
        where = "first load" if name in bundles["first_load"] else "on demand"
        print(
            f"{name:>34}: {size['raw'] / 1000:6.1f} KB, gzip {size['gzip'] / 1000:5.1f} KB, "
            f"brotli {size['brotli'] / 1000:5.1f} KB ({where})"
        )
    for label, key in (("first load", "first_load_total"), ("everything", "all_total")):
        size = bundles[key]
        print(
            f"{'JavaScript, ' + label:>34}: gzip {size['gzip'] / 1000:5.1f} KB, "
            f"brotli {size['brotli'] / 1000:5.1f} KB"
        )


def write_results(result: dict[str, Any], directory: Path = RESULTS) -> Path:
    """bench/results/console-<time>.json and a markdown table beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"console-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    load = result["machine"]
    lines = [
        f"# Console load, {stamp}",
        "",
        f"Load average at start {' / '.join(f'{x:.2f}' for x in load['loadavg_at_start'])}, "
        f"at end {' / '.join(f'{x:.2f}' for x in load['loadavg_at_end'])} "
        f"({load['cpus']} CPUs).",
        "",
        "| figure | median | worst | runs |",
        "|---|---|---|---|",
    ]
    for label, figure in result["figures"].items():
        lines.append(
            f"| {label} | {figure['median_ms']:.0f} ms | {figure['worst_ms']:.0f} ms "
            f"| {figure['runs']} |"
        )
    if result.get("bundles"):
        first = result["bundles"]["first_load_total"]
        every = result["bundles"]["all_total"]
        lines += [
            "",
            f"JavaScript: first load gzip {first['gzip'] / 1000:.1f} KB, Brotli "
            f"{first['brotli'] / 1000:.1f} KB; with the chunks loaded on demand gzip "
            f"{every['gzip'] / 1000:.1f} KB, Brotli {every['brotli'] / 1000:.1f} KB.",
        ]
    for note in result.get("notes", []):
        lines += ["", note]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return path


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


def measure_inbox(url: str, database_url: str, runs: int) -> tuple[dict[str, Any], list[str]]:
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
    notes = [
        f"Inbox: seeded {data.conversations} conversations, one with {data.history} messages, "
        f"in {time.perf_counter() - started:.1f} s."
    ]
    print(notes[0])
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
                notes.append(
                    f"DOM: {rows} conversation rows of {data.conversations}, {shown} messages "
                    f"of {data.history} at first, {older[-1][1]} after 5 older pages, "
                    f"{end_rows} rows with the whole list loaded."
                )
                print(notes[-1])
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
    return {label: _report(label, values) for label, values in figures.items()}, notes


def measure_first_load(args: argparse.Namespace) -> dict[str, Any]:
    """/app reloaded ``args.runs`` times in a logged-in tab, then the dashboard opened."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    first_row = (By.CSS_SELECTOR, "table.customers tbody tr")
    rows: list[tuple[float, float, float]] = []
    dashboard: list[float] = []
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as browser:
        # Poll often: the default half second would dominate the figure.
        wait = WebDriverWait(browser, TIMEOUT_S, poll_frequency=0.005)
        _log_in(browser, wait, args.url, args.email, args.password)
        browser.get(f"{args.url}/app")  # warm: the server's first answers, the cache
        wait.until(ec.presence_of_element_located(first_row))
        for _ in range(args.runs):
            if args.empty_cache:
                browser.execute_cdp_cmd("Network.clearBrowserCache", {})
            started = time.perf_counter()
            browser.get(f"{args.url}/app")
            wait.until(ec.presence_of_element_located(first_row))
            table_ms = (time.perf_counter() - started) * 1000
            dom_ms, load_ms = browser.execute_script(JS_NAVIGATION)
            rows.append((float(dom_ms), float(load_ms), table_ms))
        for _ in range(args.runs):
            if args.empty_cache:
                browser.execute_cdp_cmd("Network.clearBrowserCache", {})
            started = time.perf_counter()
            browser.get(f"{args.url}/app/dashboard")
            wait.until(lambda d: d.execute_script(JS_CHARTS_DRAWN))
            dashboard.append((time.perf_counter() - started) * 1000)
    figures = {}
    for label, index in (
        ("/app: DOMContentLoaded", 0),
        ("/app: load", 1),
        ("/app: table shown", 2),
    ):
        figures[label] = _report(label, [r[index] for r in rows])
    figures["/app/dashboard: charts drawn"] = _report("/app/dashboard: charts drawn", dashboard)
    return figures


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
    parser.add_argument("--no-write", action="store_true", help="print only (no bench/results)")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "machine": {"loadavg_at_start": os.getloadavg(), "cpus": os.cpu_count()},
        "url": args.url,
        "runs": args.runs,
        "empty_cache": args.empty_cache,
        "bundles": bundle_sizes() if (ASSETS / "manifest.json").is_file() else None,
    }
    if result["bundles"]:
        _print_bundles(result["bundles"])
    if args.inbox:
        result["figures"], result["notes"] = measure_inbox(args.url, args.inbox, args.runs)
    else:
        result["figures"] = measure_first_load(args)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    print(
        "load average: at start "
        + " / ".join(f"{x:.2f}" for x in result["machine"]["loadavg_at_start"])
        + ", at end "
        + " / ".join(f"{x:.2f}" for x in result["machine"]["loadavg_at_end"])
    )
    if not args.no_write:
        print(f"written: {write_results(result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
