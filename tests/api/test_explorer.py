"""The self-hosted GraphiQL explorer, driven by a real headless Chromium
(tests/browser.py: what it needs, and when a missing browser skips or fails)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser import TIMEOUT_S, chromium, keep_screenshot, skip_without_browser

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver


# GraphiQL 4 uses CodeMirror 5, which exposes its editor object on the wrapper element.
JS_EDITORS_READY = """
return !!(document.querySelector('.graphiql-query-editor .CodeMirror')
          && document.querySelector('.graphiql-execute-button'));
"""
JS_SET_QUERY = """
document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(arguments[0]);
"""
# Variables and headers editors share one tool section and the inactive one is hidden
# (class "hidden" = visibility: hidden), so take the visible one once Headers is active.
JS_SET_HEADERS = """
var editors = Array.from(document.querySelectorAll('.graphiql-editor-tool .CodeMirror'));
var visible = editors.filter(function (el) {
  return el.offsetParent !== null && getComputedStyle(el).visibility === 'visible';
});
if (visible.length !== 1) {
  throw new Error('expected one visible headers editor, got ' + visible.length);
}
visible[0].CodeMirror.setValue(arguments[0]);
"""
JS_RESULT = """
var el = document.querySelector('.graphiql-response .CodeMirror');
return el ? el.CodeMirror.getValue() : '';
"""
JS_RESOURCE_URLS = (
    "return performance.getEntriesByType('resource').map(function (e) { return e.name; });"
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium that uses only the system binaries (no driver download)."""
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def _click(wait: Any, by: str, selector: str) -> None:
    """Click an element once it is there (GraphiQL re-renders: retried while stale)."""

    def attempt(driver: WebDriver) -> bool:
        driver.find_element(by, selector).click()
        return True

    wait.until(attempt)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _oldest_writer(database_url: str) -> str | None:
    """What holds live events back, if anything: the oldest open transaction that wrote
    in the database (``events.oldest_writer``), asked from a loop of its own (a sync
    test's)."""
    import asyncio

    import asyncpg

    from crm_graphql.services import events
    from tests import support

    async def ask() -> str | None:
        conn = await asyncpg.connect(support.asyncpg_dsn(database_url))
        try:
            return await events.oldest_writer(conn)
        finally:
            await conn.close()

    return asyncio.run(ask())


def _login(base_url: str, email: str, password: str) -> str:
    # json.dumps gives a valid GraphQL string literal (same escapes), so no variable
    # types need to be assumed about the login input.
    credentials = f"email: {json.dumps(email)}, password: {json.dumps(password)}"
    query = (
        f"mutation {{ login(input: {{{credentials}}}) "
        "{ accessToken errors { code message } } }"
    )
    response = httpx.post(f"{base_url}/graphql", json={"query": query}, timeout=TIMEOUT_S)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body
    payload = body["data"]["login"]
    assert payload["accessToken"], payload
    return str(payload["accessToken"])


def test_explorer_page_headers(live_server: str) -> None:
    """The page and its assets are served with the security headers (no browser needed)."""
    response = httpx.get(
        f"{live_server}/graphql", headers={"Accept": "text/html"}, timeout=TIMEOUT_S
    )
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>crm_graphql explorer</title>" in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    script = re.search(r'src="(/explorer-static/graphiql\.min\.[0-9a-f]{16}\.js)"', response.text)
    assert script, response.text
    asset = httpx.get(f"{live_server}{script[1]}", timeout=TIMEOUT_S)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]


@pytest.mark.browser
@skip_without_browser
def test_explorer_runs_authenticated_query_offline(
    live_server: str, live_admin: tuple[str, str], browser: WebDriver
) -> None:
    """Log in over HTTP, then run `me` from GraphiQL with the token in the Headers tab."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    email, password = live_admin
    token = _login(live_server, email, password)
    # React re-renders the toolbar when editor contents change, so a found button can
    # go stale before the click lands: find and click again until it sticks.
    wait = WebDriverWait(browser, TIMEOUT_S, ignored_exceptions=(StaleElementReferenceException,))

    def click(by: str, selector: str) -> None:
        _click(wait, by, selector)

    browser.get(f"{live_server}/graphql")
    wait.until(lambda d: d.execute_script(JS_EDITORS_READY))

    browser.execute_script(JS_SET_QUERY, "{ me { email } }")
    click(By.XPATH, "//button[normalize-space()='Headers']")
    browser.execute_script(JS_SET_HEADERS, json.dumps({"Authorization": f"Bearer {token}"}))
    click(By.CSS_SELECTOR, ".graphiql-execute-button")

    wait.until(lambda d: email in d.execute_script(JS_RESULT))
    result = json.loads(browser.execute_script(JS_RESULT))
    assert result["data"]["me"]["email"] == email, result
    assert not result.get("errors"), result

    # Offline: every asset and request (schema introspection, the query) went to the
    # live server; nothing to a CDN.
    urls: list[str] = browser.execute_script(JS_RESOURCE_URLS)
    assert any(re.search(r"/explorer-static/graphiql\.min\.[0-9a-f]{16}\.js$", u) for u in urls)
    foreign = [u for u in urls if not u.startswith("data:") and _origin(u) != _origin(live_server)]
    assert foreign == [], foreign

    logs: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    console = [entry["message"] for entry in logs]
    assert not [m for m in console if "Content Security Policy" in m], console


@pytest.mark.browser
@skip_without_browser
def test_explorer_runs_a_subscription(
    live_server: str, live_admin: tuple[str, str], browser: WebDriver, settings: Any
) -> None:
    """A subscription started in GraphiQL (over its WebSocket, authenticated by the
    Headers tab) shows an activity logged afterwards through the API."""
    import time

    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    email, password = live_admin
    token = _login(live_server, email, password)
    wait = WebDriverWait(browser, TIMEOUT_S, ignored_exceptions=(StaleElementReferenceException,))

    def click(by: str, selector: str) -> None:
        _click(wait, by, selector)

    browser.get(f"{live_server}/graphql")
    wait.until(lambda d: d.execute_script(JS_EDITORS_READY))
    browser.execute_script(
        JS_SET_QUERY, "subscription { activityFeed { type activity { subject } } }"
    )
    click(By.XPATH, "//button[normalize-space()='Headers']")
    browser.execute_script(JS_SET_HEADERS, json.dumps({"Authorization": f"Bearer {token}"}))
    click(By.CSS_SELECTOR, ".graphiql-execute-button")
    time.sleep(1.5)  # the socket is open and the subscription registered

    headers = {"Authorization": f"Bearer {token}"}
    customer = httpx.post(
        f"{live_server}/graphql",
        json={
            "query": 'mutation { createCustomer(input: {name: "Explorer"}) { customer { id } } }'
        },
        headers=headers,
        timeout=TIMEOUT_S,
    ).json()["data"]["createCustomer"]["customer"]["id"]
    # The subscription starts at the head of the stream once the server has registered
    # it, which a loaded machine may take longer than the pause above to do: an activity
    # logged before that is (rightly) not sent. Log another until one shows.
    short = WebDriverWait(browser, 5, ignored_exceptions=(StaleElementReferenceException,))
    # A CI run with two workers at load 10 took over 30 s to see one (0 lost: the socket
    # had not registered yet); the retries are cheap, the deadline generous.
    deadline = time.monotonic() + 3 * TIMEOUT_S
    while True:
        logged = httpx.post(
            f"{live_server}/graphql",
            json={
                "query": 'mutation($c: ID!) { createActivity(input: {type: NOTE, subject: "Seen live in GraphiQL", customerId: $c}) { errors { code } } }',
                "variables": {"c": customer},
            },
            headers=headers,
            timeout=TIMEOUT_S,
        ).json()
        assert logged["data"]["createActivity"]["errors"] == [], logged
        try:
            short.until(lambda d: "Seen live in GraphiQL" in d.execute_script(JS_RESULT))
            break
        except TimeoutException:
            # What the answer pane shows tells a refused or failed subscription (an error
            # there) from one that runs and receives nothing.
            if time.monotonic() >= deadline:
                pane = browser.execute_script(JS_RESULT)
                holder = _oldest_writer(settings.database_url)
                pytest.fail(f"no activity reached the explorer: {pane!r}; held by: {holder}")


def test_the_default_document_has_an_example_of_each_insight_feature() -> None:
    """Search, custom fields, segments, cohorts, aggregates, time series, both reports and
    the next best offer and the live dashboard each appear in a valid operation of the
    explorer's first page."""
    from graphql import parse, validate

    from crm_graphql.explorer import DEFAULT_QUERY
    from crm_graphql.schema import schema

    document = parse(DEFAULT_QUERY)
    assert validate(schema._schema, document) == []
    for field in (
        "search",
        "customFieldDefinitions",
        "segments",
        "customerCohorts",
        "dealsAggregate",
        "timeSeries",
        "salesReport",
        "serviceReport",
        "recommendations",
        "churnRisk",
        "dashboard",
    ):
        assert f"{field}(" in DEFAULT_QUERY or f"{field} {{" in DEFAULT_QUERY, field


@pytest.mark.browser
@skip_without_browser
def test_explorer_shows_a_live_dashboard_that_follows_a_write(
    live_server: str, live_admin: tuple[str, str], browser: WebDriver, tmp_path: Path
) -> None:
    """The explorer's LiveDashboard example, run in GraphiQL: its answer shows at once and
    again, with the new count, when a deal is created through the API. The screenshot is
    kept under ``CRM_SCREENSHOTS`` when that is set (to look at)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from crm_graphql.explorer import DEFAULT_QUERY

    email, password = live_admin
    token = _login(live_server, email, password)
    headers = {"Authorization": f"Bearer {token}"}
    wait = WebDriverWait(browser, TIMEOUT_S, ignored_exceptions=(StaleElementReferenceException,))

    def click(by: str, selector: str) -> None:
        _click(wait, by, selector)

    def gql(query: str) -> Any:
        body = httpx.post(
            f"{live_server}/graphql", json={"query": query}, headers=headers, timeout=TIMEOUT_S
        ).json()
        assert not body.get("errors"), body
        return body["data"]

    example = "subscription LiveDashboard" + DEFAULT_QUERY.split("subscription LiveDashboard")[1]
    example = example.split("\nquery ", 1)[0]
    browser.get(f"{live_server}/graphql")
    wait.until(lambda d: d.execute_script(JS_EDITORS_READY))
    browser.execute_script(JS_SET_QUERY, example)
    click(By.XPATH, "//button[normalize-space()='Headers']")
    browser.execute_script(JS_SET_HEADERS, json.dumps(headers))
    click(By.CSS_SELECTOR, ".graphiql-execute-button")
    wait.until(lambda d: '"openDealsByStage"' in d.execute_script(JS_RESULT))
    before = gql("{ dealsAggregate(filter: {status: {eq: OPEN}}) { count } }")
    count = before["dealsAggregate"]["count"]
    pipeline = gql(
        'mutation { createPipeline(input: {name: "Explorer", stages: [{name: "Lead"}]}) '
        "{ pipeline { id } } }"
    )["createPipeline"]["pipeline"]["id"]
    gql(
        f'mutation {{ createDeal(input: {{pipelineId: "{pipeline}", title: "Live", '
        'currency: "EUR", amount: "1200"}) { deal { id } } }'
    )
    wait.until(lambda d: f'"count": {count + 1}' in d.execute_script(JS_RESULT))
    keep_screenshot(browser, tmp_path / "explorer-live-dashboard.png")
