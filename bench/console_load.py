"""First load of the web console in headless Chromium against a running server
(docs/decisions/0027-web-console.md). Never part of `make test`: figures go in docs.

    python -m bench.console_load --url http://127.0.0.1:8000 \\
        --email agent@demo.example --password demo-agent [--runs 10]

Logs in once (the tokens stay in the tab's sessionStorage), loads /app/customers once to
warm the server and the browser's cache of the immutable bundles, then reloads it
``--runs`` times (``--empty-cache``: as a first visit, the bundles fetched again) and reports per run: the browser's navigation timing (DOMContentLoaded,
load) and the time until the customers table shows its first row (the page's first
GraphQL answer rendered), as median and worst.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.browser import TIMEOUT_S, chromium

JS_NAVIGATION = """
const n = performance.getEntriesByType('navigation')[0];
return [n.domContentLoadedEventEnd, n.loadEventEnd];
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--email", default="agent@demo.example")
    parser.add_argument("--password", default="demo-agent")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--empty-cache", action="store_true", help="clear the browser's cache before each run"
    )
    args = parser.parse_args(argv)

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
