"""The web console at /app: its operations against the schema, its page and assets, and
its pages driven by a real headless Chromium against a uvicorn with demo data
(docs/decisions/0027-web-console.md)."""

from __future__ import annotations

import math
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from graphql import build_schema, parse, validate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql import demo
from crm_graphql.console import console_manifest
from crm_graphql.models import Role
from tests import support
from tests.browser import (
    TIMEOUT_S,
    chromium,
    click_when_settled,
    keep_screenshot,
    skip_without_browser,
)

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

ROOT = support.ROOT
OPERATIONS = sorted((ROOT / "console" / "src" / "operations").glob("*.graphql"))


def _check_operations(schema_file: Path) -> subprocess.CompletedProcess[str]:
    """The console build's operation check (console/build.mjs --check-only)."""
    return subprocess.run(
        support.node_command("console/build.mjs", "--check-only", "--schema", str(schema_file)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("path", OPERATIONS, ids=lambda p: p.name)
def test_console_operation_is_valid_against_the_schema(path: Path) -> None:
    """Each operation of the console is valid against schema.graphql and against the
    schema the server runs (so a change that breaks the console fails here even before
    schema.graphql is exported again)."""
    from crm_graphql.schema import schema

    document = parse(path.read_text())
    assert validate(build_schema((ROOT / "schema.graphql").read_text()), document) == []
    assert validate(schema._schema, document) == []


def test_console_build_rejects_an_operation_the_schema_no_longer_has(tmp_path: Path) -> None:
    """The build's check passes on schema.graphql and fails, naming the document, on a
    schema where a field the console reads is gone."""
    ok = _check_operations(ROOT / "schema.graphql")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{len(OPERATIONS)} operations valid" in ok.stdout

    schema_text = (ROOT / "schema.graphql").read_text()
    broken, removed = re.subn(
        r'\n  """Totals of what the customer has bought\."""\n  purchaseSummary: PurchaseSummary!\n',
        "\n",
        schema_text,
    )
    assert removed == 1
    (tmp_path / "schema.graphql").write_text(broken)
    failed = _check_operations(tmp_path / "schema.graphql")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "console/src/operations/Customer.graphql" in failed.stderr
    assert 'Cannot query field "purchaseSummary" on type "Customer"' in failed.stderr


def test_console_page_and_assets_are_served_with_the_explorer_policy(live_server: str) -> None:
    """Every /app path answers the console's page (routes live in the browser) with the
    explorer's security headers; its bundles are hashed, immutable and precompressed."""
    manifest = console_manifest()
    assert manifest is not None, "console not built: run make setup"
    for path in ("/app", "/app/", "/app/customers", "/app/customers/Q3VzdG9tZXI6MQ"):
        page = httpx.get(f"{live_server}{path}", timeout=TIMEOUT_S)
        assert page.status_code == 200, (path, page.status_code)
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self' 'nonce-" in csp and "unsafe-eval" not in csp
        assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text  # no inline script
        assert f'src="/app/assets/{manifest["main.js"]}"' in page.text

    script = httpx.get(
        f"{live_server}/app/assets/{manifest['main.js']}",
        headers={"Accept-Encoding": "br"},
        timeout=TIMEOUT_S,
    )
    assert script.status_code == 200
    assert script.headers["content-encoding"] == "br"
    assert "javascript" in script.headers["content-type"]
    assert "immutable" in script.headers["cache-control"]
    assert re.fullmatch(r"main\.[0-9a-f]{16}\.js", manifest["main.js"])
    # Only the built files: neither a guess nor the manifest itself.
    for name in ("main.js", "manifest.json", f"{manifest['main.js']}.br"):
        assert httpx.get(f"{live_server}/app/assets/{name}", timeout=TIMEOUT_S).status_code == 404


@pytest.fixture(scope="session")
async def console_logins(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[tuple[str, str, Role]]:
    """A demo workspace of its own for the live server: (email, password, role) of every
    demo user."""
    domain = f"console-{uuid.uuid4().hex[:8]}.example"
    async with sessionmaker() as session, session.begin():
        await demo.seed_demo(
            session, seed=15, workspace_name=f"Console {domain}", email_domain=domain
        )
    return demo.demo_logins(domain)


@pytest.fixture(scope="session")
def console_demo(console_logins: list[tuple[str, str, Role]]) -> dict[Role, tuple[str, str]]:
    """(email, password) of the first demo user of each role."""
    logins: dict[Role, tuple[str, str]] = {}
    for email, password, role in console_logins:
        logins.setdefault(role, (email, password))
    return logins


@pytest.fixture(scope="session")
def two_agents(console_logins: list[tuple[str, str, Role]]) -> list[tuple[str, str]]:
    """(email, password) of two different agents."""
    agents = [(email, password) for email, password, role in console_logins if role is Role.AGENT]
    assert len(agents) >= 2
    return agents[:2]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path / "chromium-profile", window=(1280, 800)) as driver:
        yield driver


RICH_CUSTOMERS = """{ customers(first: 100, orderBy: [{field: NAME}]) { nodes {
  name deals { totalCount } orders { totalCount } activities { totalCount }
  conversations { totalCount } } } }"""


def _api(base_url: str, login: tuple[str, str], query: str, variables: dict[str, Any]) -> Any:
    """Run a query as ``login`` over HTTP (what the page should show, from the API)."""
    token = httpx.post(
        f"{base_url}/graphql",
        json={
            "query": "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
            "variables": {"i": {"email": login[0], "password": login[1]}},
        },
        timeout=TIMEOUT_S,
    ).json()["data"]["login"]["accessToken"]
    body = httpx.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_S,
    ).json()
    assert not body.get("errors"), body
    return body["data"]


def _log_in(browser: WebDriver, base_url: str, login: tuple[str, str]) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT_S)
    browser.get(f"{base_url}/app/customers")
    wait.until(ec.visibility_of_element_located((By.ID, "login-email")))
    browser.find_element(By.ID, "login-email").send_keys(login[0])
    browser.find_element(By.ID, "login-password").send_keys(login[1])
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.customers tbody tr")))
    return wait


def _count_text(browser: WebDriver) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, "p.count").text)


def _no_csp_violations(browser: WebDriver) -> None:
    logs: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    console = [entry["message"] for entry in logs]
    assert not [m for m in console if "Content Security Policy" in m], console


@pytest.mark.browser
@skip_without_browser
def test_agent_searches_customers_and_opens_one(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """An agent logs in, sees the customers, narrows them by typing, opens a customer's
    page with its sections, and logs a note that appears in the timeline."""
    from selenium.webdriver.common.by import By

    agent = console_demo[Role.AGENT]
    wait = _log_in(browser, live_server, agent)
    everyone = _api(live_server, agent, "{ customers { totalCount } }", {})["customers"]
    wait.until(lambda d: _count_text(d).startswith(f"{everyone['totalCount']} customers"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.customers tbody tr")
    assert len(rows) == 25  # one page
    assert browser.find_element(By.XPATH, "//button[normalize-space()='New customer']")
    keep_screenshot(browser, tmp_path / "console-customers.png")

    # Search as you type: part of the name of a customer with deals, orders and
    # activities narrows the table to what the API's filter gives.
    nodes = _api(live_server, agent, RICH_CUSTOMERS, {})["customers"]["nodes"]
    name = next(
        c["name"]
        for c in nodes
        if all(c[k]["totalCount"] for k in ("deals", "orders", "activities", "conversations"))
    )
    fragment = name.split()[-1][:5]
    expected = _api(
        live_server,
        agent,
        "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }",
        {"f": {"or": [{"name": {"contains": fragment}}, {"email": {"contains": fragment}}]}},
    )["customers"]["totalCount"]
    assert 0 < expected < everyone["totalCount"]
    browser.find_element(By.ID, "customer-search").send_keys(fragment)
    wait.until(lambda d: re.match(rf"{expected} customers?$", _count_text(d)))
    shown = browser.find_elements(By.CSS_SELECTOR, "table.customers tbody tr td:first-child a")
    assert len(shown) == min(expected, 25)
    assert name in [a.text for a in shown]

    # The customer's page.
    browser.find_element(By.LINK_TEXT, name).click()
    wait.until(lambda d: d.find_element(By.ID, "customer-title").text == name)
    assert re.search(r"/app/customers/[^/]+$", browser.current_url)
    for section in (
        "Contact",
        "Company",
        "Purchases",
        "Deals",
        "Orders",
        "Activity",
        "Conversations",
    ):
        assert browser.find_elements(
            By.XPATH, f"//h2[starts-with(normalize-space(), '{section}')]"
        ), section
    assert browser.find_elements(By.CSS_SELECTOR, "ol.timeline li")
    assert browser.find_elements(By.CSS_SELECTOR, "ul.conversations li")
    browser.set_window_size(1280, 1500)  # the whole page in the screenshot
    keep_screenshot(browser, tmp_path / "console-customer.png")
    browser.set_window_size(1280, 800)

    # Write: a note logged here shows in the timeline.
    subject = f"Called about renewal {uuid.uuid4().hex[:6]}"
    browser.find_element(By.ID, "note-subject").send_keys(subject)
    browser.find_element(By.XPATH, "//button[normalize-space()='Log note']").click()
    wait.until(lambda d: subject in d.find_element(By.CSS_SELECTOR, "ol.timeline").text)

    # A reload keeps the login (sessionStorage) and opens the same page.
    browser.refresh()
    wait.until(lambda d: d.find_elements(By.ID, "customer-title"))
    assert browser.find_element(By.ID, "customer-title").text == name
    _no_csp_violations(browser)


@pytest.mark.browser
@skip_without_browser
def test_viewer_sees_no_write_controls(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """A viewer reads the customers and a customer's page but is offered no control that
    writes (no New customer, no Save as segment, no note form); an agent on the same page
    is."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    wait = _log_in(browser, live_server, console_demo[Role.VIEWER])
    assert browser.find_element(By.CSS_SELECTOR, ".role").text == "viewer"
    assert not browser.find_elements(By.XPATH, "//button[normalize-space()='New customer']")
    keep_screenshot(browser, tmp_path / "console-viewer.png")
    # A filter set: still no Save as segment (saving is a writer's).
    Select(browser.find_element(By.ID, "customer-stage")).select_by_value("LEAD")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.customers tbody tr, .state.empty"))
    assert not browser.find_elements(By.XPATH, "//button[normalize-space()='Save as segment']")
    click_when_settled(browser, By.CSS_SELECTOR, "table.customers tbody tr td a")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "ol.timeline, .state.empty"))
    wait.until(lambda d: d.find_elements(By.ID, "timeline-title"))
    assert not browser.find_elements(By.ID, "note-subject")
    assert not browser.find_elements(By.CSS_SELECTOR, "main button.primary")

    # Logging out forgets the tokens: the login page again, also after a reload.
    browser.find_element(By.XPATH, "//button[normalize-space()='Log out']").click()
    wait.until(lambda d: d.find_elements(By.ID, "login-email"))
    browser.refresh()
    wait.until(lambda d: d.find_elements(By.ID, "login-email"))
    assert browser.execute_script("return sessionStorage.length") == 0


BOARD = """query($p: ID!) {
  deals(first: 100, filter: {pipelineId: {eq: $p}, status: {eq: OPEN}},
        orderBy: [{field: AMOUNT, direction: DESC}]) { nodes { id title version stage { id } } }
}"""
PIPELINES = "{ pipelines(first: 50) { nodes { id name stages { id name position } } } }"
# Drag a card onto a column the way a pointer does: dragstart, dragover, drop, dragend
# (synthetic events with a DataTransfer; chromedriver cannot drive HTML5 drag and drop).
JS_DRAG = """
const card = document.querySelector(`li[data-deal-id="${arguments[0]}"]`);
const column = document.querySelector(`section[data-stage-id="${arguments[1]}"]`);
const data = new DataTransfer();
const fire = (el, type) => el.dispatchEvent(
  new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
fire(card, 'dragstart');
fire(column, 'dragover');
fire(column, 'drop');
fire(card, 'dragend');
"""
# Installed before the page's scripts: a WebSocket that never connects, so the board
# hears of no change made elsewhere (the way a stale board comes about).
JS_NO_WEBSOCKET = (
    "window.WebSocket = function () { return {send() {}, close() {}, readyState: 0}; };"
)


def _open_board(browser: WebDriver, base_url: str, login: tuple[str, str]) -> Any:
    from selenium.webdriver.common.by import By

    wait = _log_in(browser, base_url, login)
    browser.find_element(By.LINK_TEXT, "Deals").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".board li.deal"))
    return wait


JS_COLUMN_OF = """
const cards = document.querySelectorAll(`li[data-deal-id="${arguments[0]}"]`);
return cards.length === 1 ? cards[0].closest('section[data-stage-id]').dataset.stageId : null;
"""


def _column_of(browser: WebDriver, deal_id: str) -> str | None:
    """The stage id of the column that shows the deal's card (None: not exactly one)."""
    column: str | None = browser.execute_script(JS_COLUMN_OF, deal_id)
    return column


@pytest.mark.browser
@skip_without_browser
def test_deal_moved_by_one_agent_appears_on_the_other_agents_board(
    live_server: str,
    two_agents: list[tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """Two agents in two browsers look at the same board; one drags a deal to another
    stage (moveDeal) and the other's board shows it there without a reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    agent, other_agent = two_agents
    pipeline = _api(live_server, agent, PIPELINES, {})["pipelines"]["nodes"][0]
    deal = _api(live_server, agent, BOARD, {"p": pipeline["id"]})["deals"]["nodes"][0]
    target = next(s["id"] for s in pipeline["stages"] if s["id"] != deal["stage"]["id"])

    with chromium(tmp_path / "second-profile", window=(1280, 800)) as other:
        wait = _open_board(browser, live_server, agent)
        other_wait = _open_board(other, live_server, other_agent)
        assert _column_of(other, deal["id"]) == deal["stage"]["id"]
        # Both boards subscribed (the header's badge says the socket is live).
        for driver in (browser, other):
            WebDriverWait(driver, TIMEOUT_S).until(
                lambda d: d.find_element(By.CSS_SELECTOR, ".live").text == "Live"
            )
        browser.execute_script(JS_DRAG, deal["id"], target)
        wait.until(lambda d: _column_of(d, deal["id"]) == target)
        other_wait.until(lambda d: _column_of(d, deal["id"]) == target)
    moved = _api(
        live_server,
        agent,
        "query($id: ID!) { node(id: $id) { ... on Deal { version stage { id } } } }",
        {"id": deal["id"]},
    )["node"]
    assert moved["stage"]["id"] == target and moved["version"] > deal["version"]
    keep_screenshot(browser, tmp_path / "console-deals.png")
    _no_csp_violations(browser)


@pytest.mark.browser
@skip_without_browser
def test_moving_a_deal_changed_elsewhere_shows_the_conflict(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
) -> None:
    """A board that did not hear of a change (its WebSocket never connects) moves a deal
    with the version it read: the API answers CONFLICT, the board says so and shows the
    deal where it is now."""
    from selenium.webdriver.common.by import By

    agent = console_demo[Role.AGENT]
    pipeline = _api(live_server, agent, PIPELINES, {})["pipelines"]["nodes"][0]
    deal = _api(live_server, agent, BOARD, {"p": pipeline["id"]})["deals"]["nodes"][1]
    others = [s["id"] for s in pipeline["stages"] if s["id"] != deal["stage"]["id"]]
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": JS_NO_WEBSOCKET})
    wait = _open_board(browser, live_server, agent)
    assert _column_of(browser, deal["id"]) == deal["stage"]["id"]

    moved = _api(
        live_server,
        console_demo[Role.MANAGER],
        "mutation($i: MoveDealInput!) { moveDeal(input: $i) { errors { code } } }",
        {"i": {"id": deal["id"], "stageId": others[0]}},
    )
    assert moved["moveDeal"]["errors"] == []
    browser.execute_script(JS_DRAG, deal["id"], others[1])
    wait.until(
        lambda d: "changed by someone else" in d.find_element(By.CSS_SELECTOR, ".notice").text
    )
    wait.until(lambda d: _column_of(d, deal["id"]) == others[0])


@pytest.mark.browser
@skip_without_browser
def test_viewer_board_has_no_move_controls(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
) -> None:
    """A viewer's cards are not draggable and have no Move control."""
    from selenium.webdriver.common.by import By

    _open_board(browser, live_server, console_demo[Role.VIEWER])
    cards = browser.find_elements(By.CSS_SELECTOR, ".board li.deal")
    assert cards and all(c.get_attribute("draggable") == "false" for c in cards)
    assert not browser.find_elements(By.CSS_SELECTOR, ".board .move select")


JS_SESSION = "return JSON.parse(sessionStorage.getItem('crm-console.session'))"


@pytest.mark.browser
@skip_without_browser
def test_access_token_is_refreshed_before_it_expires(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
) -> None:
    """A login whose access token expires within the minute is refreshed with
    `refreshToken` (new tokens, the old refresh token used up) and the pages keep
    working; the tokens never appear in the URL."""
    from selenium.webdriver.common.by import By

    wait = _log_in(browser, live_server, console_demo[Role.VIEWER])
    before = browser.execute_script(JS_SESSION)
    assert before["accessToken"] and before["refreshToken"]
    # As if the token had been issued 14 minutes ago: due for a refresh now.
    browser.execute_script(
        "const s = JSON.parse(sessionStorage.getItem('crm-console.session'));"
        "s.expiresAt = new Date(Date.now() + 30000).toISOString();"
        "sessionStorage.setItem('crm-console.session', JSON.stringify(s));"
    )
    browser.refresh()
    # Refresh tokens rotate; the access token is new too, though within the same second
    # as the login it may read the same (its claims have a resolution of one second).
    wait.until(lambda d: d.execute_script(JS_SESSION)["refreshToken"] != before["refreshToken"])
    after = browser.execute_script(JS_SESSION)
    assert after["accessToken"] and after["expiresAt"] >= before["expiresAt"]
    browser.find_element(By.LINK_TEXT, "Deals").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".board li.deal"))
    assert before["accessToken"] not in browser.current_url
    # The old refresh token was used up by the exchange.
    reused = httpx.post(
        f"{live_server}/graphql",
        json={
            "query": "mutation($i: RefreshTokenInput!) { refreshToken(input: $i) "
            "{ accessToken errors { code } } }",
            "variables": {"i": {"refreshToken": before["refreshToken"]}},
        },
        timeout=TIMEOUT_S,
    ).json()["data"]["refreshToken"]
    assert reused["accessToken"] is None and reused["errors"], reused


@pytest.mark.browser
@skip_without_browser
def test_new_customer_shows_the_api_errors_at_their_field(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """A wrong password is refused with the API's message; a customer without a name gets
    the API's validation error under the Name field; with a name it is created and its
    page opens."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    email, _ = console_demo[Role.AGENT]
    browser.get(f"{live_server}/app")
    wait = WebDriverWait(browser, TIMEOUT_S)
    wait.until(lambda d: d.find_elements(By.ID, "login-email"))
    browser.find_element(By.ID, "login-email").send_keys(email)
    browser.find_element(By.ID, "login-password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: "Invalid email or password" in d.find_element(By.TAG_NAME, "form").text)
    assert browser.find_elements(By.ID, "login-email")  # still the login page
    keep_screenshot(browser, tmp_path / "console-login.png")

    wait = _log_in(browser, live_server, console_demo[Role.AGENT])
    browser.find_element(By.XPATH, "//button[normalize-space()='New customer']").click()
    browser.find_element(By.XPATH, "//button[normalize-space()='Create customer']").click()
    wait.until(lambda d: d.find_elements(By.ID, "new-name-error"))
    assert "must not be blank" in browser.find_element(By.ID, "new-name-error").text
    name_input = browser.find_element(By.ID, "new-name")
    assert name_input.get_attribute("aria-describedby") == "new-name-error"
    assert name_input.get_attribute("aria-invalid") == "true"
    keep_screenshot(browser, tmp_path / "console-new-customer.png")

    name = f"Console Created {uuid.uuid4().hex[:6]}"
    name_input.send_keys(name)
    browser.find_element(By.ID, "new-email").send_keys("created@example.com")
    browser.find_element(By.XPATH, "//button[normalize-space()='Create customer']").click()
    wait.until(lambda d: d.find_elements(By.ID, "customer-title"))
    assert browser.find_element(By.ID, "customer-title").text == name
    assert "created@example.com" in browser.find_element(By.CSS_SELECTOR, ".cards").text


SEGMENT_SIZES = "{ segments(first: 50) { nodes { id customers { totalCount } } } }"


@pytest.mark.browser
@skip_without_browser
def test_customer_filters_sorting_and_paging_match_the_api(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
) -> None:
    """The stage, owner, tag and segment filters narrow the table to the API's count for
    the same filter; a click on Name sorts by name (again: descending); Next and Previous page by
    cursor through the API's order."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    login = console_demo[Role.MANAGER]
    wait = _log_in(browser, live_server, login)

    def count(filter_: dict[str, Any]) -> int:
        query = "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }"
        return int(_api(live_server, login, query, {"f": filter_})["customers"]["totalCount"])

    def shown_count(expected: int) -> None:
        wait.until(lambda d: re.match(rf"{expected} customers?$", _count_text(d)))

    stage = {"lifecycleStage": {"eq": "CUSTOMER"}}
    Select(browser.find_element(By.ID, "customer-stage")).select_by_value("CUSTOMER")
    shown_count(count({"and": [stage]}))
    owner = _api(
        live_server, login, "{ users(first: 1, orderBy: [{field: NAME}]) { nodes { id } } }", {}
    )
    owner_id = owner["users"]["nodes"][0]["id"]
    Select(browser.find_element(By.ID, "customer-owner")).select_by_value(owner_id)
    shown_count(count({"and": [stage, {"ownerId": {"eq": owner_id}}]}))
    Select(browser.find_element(By.ID, "customer-owner")).select_by_value("")
    browser.find_element(By.ID, "customer-tag").send_keys("champion")
    shown_count(count({"and": [stage, {"tags": {"contains": ["champion"]}}]}))
    # Typed away key by key (WebDriver's clear() fires no input event).
    browser.find_element(By.ID, "customer-tag").send_keys(Keys.BACKSPACE * len("champion"))
    Select(browser.find_element(By.ID, "customer-stage")).select_by_value("")
    total = count({})
    shown_count(total)

    # A segment (saved or built-in): the API's members of it.
    segments = _api(live_server, login, SEGMENT_SIZES, {})["segments"]["nodes"]
    segment = next(s for s in segments if 0 < s["customers"]["totalCount"] < total)
    Select(browser.find_element(By.ID, "customer-segment")).select_by_value(segment["id"])
    shown_count(segment["customers"]["totalCount"])
    Select(browser.find_element(By.ID, "customer-segment")).select_by_value("")
    shown_count(total)

    def first_names() -> list[str]:
        # In one script: rows re-render while the table changes (no stale elements).
        names: list[str] = browser.execute_script(
            "return Array.from(document.querySelectorAll("
            "'table.customers tbody td:first-child a'), a => a.textContent)"
        )
        return names

    def api_names(direction: str, after: str | None = None) -> tuple[list[str], str]:
        query = """query($d: OrderDirection!, $a: String) {
          customers(first: 25, after: $a, orderBy: [{field: NAME, direction: $d}]) {
            nodes { name } pageInfo { endCursor } } }"""
        page = _api(live_server, login, query, {"d": direction, "a": after})["customers"]
        return [n["name"] for n in page["nodes"]], page["pageInfo"]["endCursor"]

    ascending, cursor = api_names("ASC")
    browser.find_element(By.XPATH, "//th//button[starts-with(normalize-space(), 'Name')]").click()
    wait.until(lambda d: first_names() == ascending)
    header = browser.find_element(
        By.XPATH, "//th[.//button[starts-with(normalize-space(), 'Name')]]"
    )
    assert header.get_attribute("aria-sort") == "ascending"

    second_page, _ = api_names("ASC", cursor)
    browser.find_element(By.XPATH, "//button[normalize-space()='Next']").click()
    wait.until(lambda d: first_names() == second_page)
    assert "Page 2" in browser.find_element(By.CSS_SELECTOR, ".pager").text
    browser.find_element(By.XPATH, "//button[normalize-space()='Previous']").click()
    wait.until(lambda d: first_names() == ascending)

    descending, _ = api_names("DESC")
    browser.find_element(By.XPATH, "//th//button[starts-with(normalize-space(), 'Name')]").click()
    wait.until(lambda d: first_names() == descending)


SEGMENTS = "{ segments(first: 100) { nodes { id name builtIn filter customers { totalCount } } } }"


@pytest.mark.browser
@skip_without_browser
def test_customer_filters_saved_as_a_segment(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """*Save as segment* saves the table's filters with `createSegment` (a missing name is
    shown at its field); the new segment is then chosen and lists the same customers. The
    segment choice offers the saved segments and the built-in RFM ones apart."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    login = console_demo[Role.AGENT]
    wait = _log_in(browser, live_server, login)
    groups = browser.execute_script(
        "return Array.from(document.querySelectorAll('#customer-segment optgroup'),"
        " g => [g.label, g.children.length])"
    )
    segments = _api(live_server, login, SEGMENTS, {})["segments"]["nodes"]
    built_in = sum(1 for s in segments if s["builtIn"])
    assert ["RFM segments", built_in] in groups

    Select(browser.find_element(By.ID, "customer-stage")).select_by_value("CUSTOMER")
    stage = {"lifecycleStage": {"eq": "CUSTOMER"}}
    query = "query($f: CustomerFilter) { customers(filter: $f) { totalCount } }"
    expected = _api(live_server, login, query, {"f": stage})["customers"]["totalCount"]
    wait.until(lambda d: re.match(rf"{expected} customers?$", _count_text(d)))
    browser.find_element(By.XPATH, "//button[normalize-space()='Save as segment']").click()
    browser.find_element(By.XPATH, "//button[normalize-space()='Save segment']").click()
    wait.until(lambda d: d.find_elements(By.ID, "segment-name-error"))
    assert browser.find_element(By.ID, "segment-name").get_attribute("aria-invalid") == "true"
    keep_screenshot(browser, tmp_path / "console-save-segment.png")

    name = f"Customers {uuid.uuid4().hex[:6]}"
    browser.find_element(By.ID, "segment-name").send_keys(name)
    browser.find_element(By.XPATH, "//button[normalize-space()='Save segment']").click()
    wait.until(lambda d: name in d.find_element(By.CSS_SELECTOR, "p.notice").text)
    saved = next(
        s for s in _api(live_server, login, SEGMENTS, {})["segments"]["nodes"] if s["name"] == name
    )
    assert saved["filter"] == {"and": [stage]} and not saved["builtIn"]
    assert saved["customers"]["totalCount"] == expected
    # The new segment is the filter now; the stage it holds is cleared.
    wait.until(
        lambda d: (
            Select(d.find_element(By.ID, "customer-segment")).first_selected_option.text == name
        )
    )
    assert Select(browser.find_element(By.ID, "customer-stage")).first_selected_option.text == (
        "Any stage"
    )
    wait.until(lambda d: re.match(rf"{expected} customers?$", _count_text(d)))


async def test_console_answers_503_until_built_then_serves_the_build(tmp_path: Path) -> None:
    """Before the build /app says to run make setup (503); once a build is in place it is
    served without a restart."""
    from starlette.applications import Starlette

    from crm_graphql.console import console_routes

    app = Starlette(routes=console_routes(tmp_path))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        missing = await http.get("/app/customers")
        assert missing.status_code == 503
        assert "make setup" in missing.text
        assert "frame-ancestors 'none'" in missing.headers["content-security-policy"]

        (tmp_path / "main.0123456789abcdef.js").write_text("export {};\n")
        (tmp_path / "main.0123456789abcdef.css").write_text("body {}\n")
        (tmp_path / "manifest.json").write_text(
            '{"main.js": "main.0123456789abcdef.js", "main.css": "main.0123456789abcdef.css"}'
        )
        page = await http.get("/app/customers")
        assert page.status_code == 200
        assert 'src="/app/assets/main.0123456789abcdef.js"' in page.text
        asset = await http.get("/app/assets/main.0123456789abcdef.js")
        assert asset.status_code == 200 and asset.text == "export {};\n"


# ---------------------------------------------------------------------------- inbox

START_CONVERSATION = """mutation($i: StartConversationInput!) {
  startConversation(input: $i) { conversation { id } errors { code field message } } }"""
SEND_MESSAGE = """mutation($i: SendMessageInput!) {
  sendMessage(input: $i) { message { seq body clientMessageId } errors { code message } } }"""
MESSAGES = """query($id: ID!) { node(id: $id) { ... on Conversation {
  lastMessageSeq messages(first: 100) { nodes { seq body clientMessageId } } } } }"""
JS_SHOWN_MESSAGES = """
return Array.from(document.querySelectorAll('.messages li.message[data-seq]'),
  li => [Number(li.dataset.seq), li.querySelector('.body').textContent]);
"""
# Installed before the page's scripts: every WebSocket the page opens is kept in
# window.__crmSockets, and while `block` is set new ones go to a path the server refuses
# (the way a network outage looks to the page: the socket drops and reconnecting fails).
JS_SOCKET_CONTROL = """
window.__crmSockets = {open: [], block: false};
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    super(window.__crmSockets.block ? url + '-unreachable' : url, protocols);
    window.__crmSockets.open.push(this);
  }
};
"""
JS_DROP_SOCKETS = """
window.__crmSockets.block = true;
for (const socket of window.__crmSockets.open) socket.close(3000, 'test: connection dropped');
"""


def _me(base_url: str, login: tuple[str, str]) -> dict[str, str]:
    me: dict[str, str] = _api(base_url, login, "{ me { id name } }", {})["me"]
    return me


def _new_conversation(base_url: str, login: tuple[str, str], subject: str) -> str:
    """A conversation of its own for a test: started by ``login`` with a customer of the
    demo workspace, open, unassigned, with a first message."""
    customer = _api(
        base_url, login, "{ customers(first: 1, orderBy: [{field: NAME}]) { nodes { id } } }", {}
    )["customers"]["nodes"][0]
    started = _api(
        base_url,
        login,
        START_CONVERSATION,
        {
            "i": {
                "customerId": customer["id"],
                "channel": "CHAT",
                "subject": subject,
                "body": f"Opening message of {subject}",
            }
        },
    )["startConversation"]
    assert started["errors"] == [], started
    conversation_id: str = started["conversation"]["id"]
    return conversation_id


def _send(base_url: str, login: tuple[str, str], conversation_id: str, body: str) -> None:
    sent = _api(
        base_url, login, SEND_MESSAGE, {"i": {"conversationId": conversation_id, "body": body}}
    )["sendMessage"]
    assert sent["errors"] == [], sent


def _api_messages(base_url: str, login: tuple[str, str], conversation_id: str) -> list[Any]:
    node = _api(base_url, login, MESSAGES, {"id": conversation_id})["node"]
    messages: list[Any] = node["messages"]["nodes"]
    assert [m["seq"] for m in messages] == list(range(1, node["lastMessageSeq"] + 1))
    return messages


def _shown_messages(browser: WebDriver) -> list[tuple[int, str]]:
    return [(int(seq), str(body)) for seq, body in browser.execute_script(JS_SHOWN_MESSAGES)]


def _open_inbox(
    browser: WebDriver, base_url: str, login: tuple[str, str], conversation_id: str
) -> Any:
    """Log in and open the conversation in the inbox; wait until its history shows and
    the socket is live."""
    from selenium.webdriver.common.by import By

    wait = _log_in(browser, base_url, login)
    browser.find_element(By.LINK_TEXT, "Inbox").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button.conversation"))
    browser.get(f"{base_url}/app/inbox/{conversation_id}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".messages li.message[data-seq]"))
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".live").text == "Live")
    return wait


@pytest.mark.browser
@skip_without_browser
def test_message_sent_by_one_agent_appears_live_for_the_other(
    live_server: str,
    two_agents: list[tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """Two agents in two browsers open the same conversation: each sees the other online;
    one types and the other sees "… is typing"; one sends (Enter) and both see the
    message once, confirmed with its seq, sent with a client message id; the other's
    inbox row shows it as the latest message."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    agent, other_agent = two_agents
    me, other_me = _me(live_server, agent), _me(live_server, other_agent)
    subject = f"Live chat {uuid.uuid4().hex[:6]}"
    conversation_id = _new_conversation(live_server, agent, subject)

    with chromium(tmp_path / "second-profile", window=(1280, 800)) as other:
        wait = _open_inbox(browser, live_server, agent, conversation_id)
        other_wait = _open_inbox(other, live_server, other_agent, conversation_id)
        # Presence: each sees the other online.
        wait.until(lambda d: other_me["name"] in d.find_element(By.CSS_SELECTOR, ".online").text)
        other_wait.until(lambda d: me["name"] in d.find_element(By.CSS_SELECTOR, ".online").text)

        composer = browser.find_element(By.ID, "composer")
        composer.send_keys("Hello from ")
        other_wait.until(
            lambda d: f"{me['name']} is typing" in d.find_element(By.CSS_SELECTOR, ".typing").text
        )
        body = f"Hello from the console {uuid.uuid4().hex[:6]}"
        composer.send_keys(body.removeprefix("Hello from ") + Keys.ENTER)
        for waiting in (wait, other_wait):
            waiting.until(lambda d: body in [b for _, b in _shown_messages(d)])
        # Sending ends the typing signal.
        other_wait.until(lambda d: "typing" not in d.find_element(By.CSS_SELECTOR, ".typing").text)
        assert not browser.find_elements(By.CSS_SELECTOR, "li.message.pending")
        keep_screenshot(browser, tmp_path / "console-inbox.png")

        messages = _api_messages(live_server, agent, conversation_id)
        sent = [m for m in messages if m["body"] == body]
        assert len(sent) == 1 and re.fullmatch(r"[0-9a-f-]{36}", sent[0]["clientMessageId"])
        expected = [(m["seq"], m["body"]) for m in messages]
        for driver in (browser, other):
            assert _shown_messages(driver) == expected
        row = other.find_element(
            By.CSS_SELECTOR, f'button[data-conversation-id="{conversation_id}"]'
        )
        other_wait.until(lambda d: body in row.find_element(By.CSS_SELECTOR, ".preview").text)
    _no_csp_violations(browser)


@pytest.mark.browser
@skip_without_browser
def test_inbox_resumes_by_cursor_after_a_dropped_connection(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """The page's socket drops and cannot reconnect for a while; messages posted through
    the API meanwhile all show once it is back, in seq order, none lost and none twice,
    and the inbox row shows the latest."""
    from selenium.webdriver.common.by import By

    agent, manager = console_demo[Role.AGENT], console_demo[Role.MANAGER]
    conversation_id = _new_conversation(live_server, manager, f"Outage {uuid.uuid4().hex[:6]}")
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": JS_SOCKET_CONTROL})
    wait = _open_inbox(browser, live_server, agent, conversation_id)
    # One message live first: from then on the page holds a cursor of the stream.
    _send(live_server, manager, conversation_id, "Before the outage")
    wait.until(lambda d: "Before the outage" in [b for _, b in _shown_messages(d)])

    browser.execute_script(JS_DROP_SOCKETS)
    wait.until(lambda d: "retrying" in d.find_element(By.CSS_SELECTOR, ".live").text)
    keep_screenshot(browser, tmp_path / "console-inbox-retrying.png")
    during = [f"While the agent was offline {n}" for n in range(1, 6)]
    for body in during:
        _send(live_server, manager, conversation_id, body)
    assert "retrying" in browser.find_element(By.CSS_SELECTOR, ".live").text
    browser.execute_script("window.__crmSockets.block = false;")

    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".live").text == "Live")
    wait.until(lambda d: during[-1] in [b for _, b in _shown_messages(d)])
    expected = [(m["seq"], m["body"]) for m in _api_messages(live_server, agent, conversation_id)]
    assert _shown_messages(browser) == expected
    row = browser.find_element(By.CSS_SELECTOR, f'button[data-conversation-id="{conversation_id}"]')
    wait.until(lambda d: during[-1] in row.find_element(By.CSS_SELECTOR, ".preview").text)
    # Still live after the outage, and still exactly once each.
    _send(live_server, manager, conversation_id, "After the outage")
    wait.until(lambda d: "After the outage" in [b for _, b in _shown_messages(d)])
    expected = [(m["seq"], m["body"]) for m in _api_messages(live_server, agent, conversation_id)]
    assert _shown_messages(browser) == expected


@pytest.mark.browser
@skip_without_browser
def test_a_send_that_failed_is_retried_with_the_same_client_message_id(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
) -> None:
    """Sent while the network is down, a message stays in the chat as pending with the
    reason and a Retry; the retry, once the network is back, sends the same client message
    id, and the message is there once."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    agent = console_demo[Role.AGENT]
    conversation_id = _new_conversation(live_server, agent, f"Retry {uuid.uuid4().hex[:6]}")
    wait = _open_inbox(browser, live_server, agent, conversation_id)
    conditions = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, **conditions})
    body = f"Sent while offline {uuid.uuid4().hex[:6]}"
    browser.find_element(By.ID, "composer").send_keys(body + Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.message.pending.failed"))
    pending = browser.find_element(By.CSS_SELECTOR, "li.message.pending.failed")
    assert body in pending.text and "Retry" in pending.text
    client_id = pending.get_attribute("data-client-id")
    assert body not in [m["body"] for m in _api_messages(live_server, agent, conversation_id)]

    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, **conditions})
    pending.find_element(By.XPATH, ".//button[normalize-space()='Retry']").click()
    wait.until(lambda d: body in [b for _, b in _shown_messages(d)])
    assert not browser.find_elements(By.CSS_SELECTOR, "li.message.pending")
    sent = [m for m in _api_messages(live_server, agent, conversation_id) if m["body"] == body]
    assert [m["clientMessageId"] for m in sent] == [client_id]


@pytest.mark.browser
@skip_without_browser
def test_inbox_assign_close_filters_and_keyboard(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
) -> None:
    """An agent assigns a conversation to themselves (it then shows under Mine, not
    under Unassigned), moves through the list with j/k, focuses the reply with r, and
    closes it with c (it leaves the list of open conversations); the API agrees."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    agent = console_demo[Role.AGENT]
    me = _me(live_server, agent)
    conversation_id = _new_conversation(live_server, agent, f"Assign {uuid.uuid4().hex[:6]}")
    wait = _open_inbox(browser, live_server, agent, conversation_id)
    row = f'button[data-conversation-id="{conversation_id}"]'

    Select(browser.find_element(By.ID, "inbox-view")).select_by_value("unassigned")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    browser.find_element(By.XPATH, "//button[normalize-space()='Assign to me']").click()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))  # no longer unassigned
    Select(browser.find_element(By.ID, "inbox-view")).select_by_value("mine")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    assert me["name"] in browser.find_element(By.CSS_SELECTOR, ".chat-head .assignee").text

    # Keyboard: j / k move the selection, r focuses the reply box, c closes.
    Select(browser.find_element(By.ID, "inbox-view")).select_by_value("all")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "button.conversation")) > 1)
    body = browser.find_element(By.TAG_NAME, "body")
    browser.execute_script("document.activeElement.blur()")
    body.send_keys("j")
    wait.until(lambda d: conversation_id not in d.current_url)
    body.send_keys("k")
    wait.until(lambda d: d.current_url.endswith(conversation_id))
    body.send_keys("r")
    assert browser.switch_to.active_element.get_attribute("id") == "composer"
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    body.send_keys("c")
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))  # the list shows open ones
    state = _api(
        live_server,
        agent,
        "query($id: ID!) { node(id: $id) { ... on Conversation { status assignee { id } } } }",
        {"id": conversation_id},
    )["node"]
    assert state == {"status": "CLOSED", "assignee": {"id": me["id"]}}


@pytest.mark.browser
@skip_without_browser
def test_viewer_inbox_is_read_only(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
) -> None:
    """A viewer reads the conversation but gets no reply box, no assignment and no
    close control."""
    from selenium.webdriver.common.by import By

    conversation_id = _new_conversation(
        live_server, console_demo[Role.AGENT], f"Viewer {uuid.uuid4().hex[:6]}"
    )
    _open_inbox(browser, live_server, console_demo[Role.VIEWER], conversation_id)
    assert _shown_messages(browser)
    for selector in ("#composer", "#assign-conversation", "#close-conversation", ".chat-actions"):
        assert not browser.find_elements(By.CSS_SELECTOR, selector), selector
    assert "Read only" in browser.find_element(By.CSS_SELECTOR, ".chat").text


def _new_customer(base_url: str, login: tuple[str, str], name: str) -> str:
    created = _api(
        base_url,
        login,
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        {"i": {"name": name}},
    )["createCustomer"]["customer"]
    customer_id: str = created["id"]
    return customer_id


def _open_customer(
    browser: WebDriver, base_url: str, login: tuple[str, str], customer_id: str, name: str
) -> Any:
    """Log in as ``login`` and open the customer's page."""
    from selenium.webdriver.common.by import By

    wait = _log_in(browser, base_url, login)
    browser.get(f"{base_url}/app/customers/{customer_id}")
    wait.until(lambda d: d.find_element(By.ID, "customer-title").text == name)
    return wait


@pytest.mark.browser
@skip_without_browser
def test_agent_sees_no_manager_actions(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """On a customer's page an agent may edit but is offered no Archive (a manager's
    action); a manager is, and archiving takes the customer off the list."""
    from selenium.webdriver.common.by import By

    agent, manager = console_demo[Role.AGENT], console_demo[Role.MANAGER]
    name = f"Archivable {uuid.uuid4().hex[:6]}"
    customer_id = _new_customer(live_server, manager, name)

    wait = _open_customer(browser, live_server, agent, customer_id, name)
    assert browser.find_elements(By.XPATH, "//button[normalize-space()='Edit']")
    assert not browser.find_elements(
        By.XPATH, "//button[starts-with(normalize-space(), 'Archive')]"
    )

    browser.find_element(By.XPATH, "//button[normalize-space()='Log out']").click()
    wait = _open_customer(browser, live_server, manager, customer_id, name)
    browser.find_element(By.XPATH, "//button[normalize-space()='Archive']").click()
    browser.find_element(By.XPATH, f"//button[normalize-space()='Archive {name}']").click()
    wait.until(lambda d: d.current_url.endswith("/app/customers"))
    archived = _api(
        live_server,
        manager,
        "query($id: ID!) { node(id: $id) { ... on Customer { archivedAt } } }",
        {"id": customer_id},
    )["node"]
    assert archived["archivedAt"]


@pytest.mark.browser
@skip_without_browser
def test_edit_customer_shows_the_api_errors_at_their_field(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """Editing a customer: a blank name gets the API's error under Name; a valid change
    is saved (with the version read) and the page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    agent = console_demo[Role.AGENT]
    name = f"Editable {uuid.uuid4().hex[:6]}"
    customer_id = _new_customer(live_server, agent, name)
    wait = _open_customer(browser, live_server, agent, customer_id, name)
    browser.find_element(By.XPATH, "//button[normalize-space()='Edit']").click()
    name_input = browser.find_element(By.ID, "edit-name")
    name_input.send_keys(Keys.BACKSPACE * len(name))
    browser.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
    wait.until(lambda d: d.find_elements(By.ID, "edit-name-error"))
    assert "must not be blank" in browser.find_element(By.ID, "edit-name-error").text
    assert name_input.get_attribute("aria-invalid") == "true"
    keep_screenshot(browser, tmp_path / "console-customer-edit.png")

    renamed = f"{name} Renamed"
    name_input.send_keys(renamed)
    browser.find_element(By.ID, "edit-tags").send_keys("vip, console")
    browser.find_element(By.XPATH, "//button[normalize-space()='Save']").click()
    wait.until(lambda d: d.find_element(By.ID, "customer-title").text == renamed)
    saved = _api(
        live_server,
        agent,
        "query($id: ID!) { node(id: $id) { ... on Customer { name tags version } } }",
        {"id": customer_id},
    )["node"]
    assert saved["name"] == renamed and sorted(saved["tags"]) == ["console", "vip"]
    assert saved["version"] > 1


# ------------------------------------------------------------------------ dashboard

SALES_REPORT = """query($p: ID!, $from: Date!, $to: Date!, $tz: String) {
  salesReport(pipelineId: $p, from: $from, to: $to, timeZone: $tz) {
    winRate { won lost } stages { stage { id name } reachedCount } } }"""
JS_WIN_RATE_TITLE = "return document.getElementById('winrate-title')?.textContent ?? ''"
JS_CANVASES_DRAWN = """
return Array.from(document.querySelectorAll('.charts canvas'),
  c => c.width > 0 && c.height > 0 && c.toDataURL().length > 2000);
"""
JS_TODAY = "const d = new Date(); return [d.getFullYear(), d.getMonth() + 1, d.getDate()]"


@pytest.mark.browser
@skip_without_browser
def test_dashboard_charts_the_reports_and_updates_live(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """The dashboard draws the funnel, revenue, win rate and service charts from the
    API's reports for the chosen period; a deal won elsewhere updates the win rate
    without a reload (the `dashboard` subscription)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    manager = console_demo[Role.MANAGER]
    wait = _log_in(browser, live_server, manager)
    browser.find_element(By.LINK_TEXT, "Dashboard").click()
    wait.until(lambda d: d.find_elements(By.ID, "winrate-title"))
    pipeline = _api(live_server, manager, PIPELINES, {})["pipelines"]["nodes"][0]
    zone = browser.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone")

    def win_rate_shown(won: int, lost: int) -> None:
        wait.until(lambda d: f"({won} won, {lost} lost)" in d.execute_script(JS_WIN_RATE_TITLE))

    # The demo's history is the year before its base time (2026-01-01).
    Select(browser.find_element(By.ID, "dashboard-period")).select_by_value("year:2025")
    year_2025 = {"p": pipeline["id"], "from": "2025-01-01", "to": "2025-12-31", "tz": zone}
    report = _api(live_server, manager, SALES_REPORT, year_2025)["salesReport"]
    assert report["winRate"]["won"] and report["winRate"]["lost"]
    win_rate_shown(report["winRate"]["won"], report["winRate"]["lost"])
    # funnel, revenue, win rate, service times, backlog and CSAT (the demo rates conversations)
    wait.until(lambda d: d.execute_script(JS_CANVASES_DRAWN) == [True] * 6)
    funnel = browser.find_element(By.CSS_SELECTOR, "#funnel-title ~ .chart canvas")
    first = report["stages"][0]
    assert f"{first['stage']['name']} {first['reachedCount']} reached" in (
        funnel.get_attribute("aria-label") or ""
    )
    browser.set_window_size(1280, 1560)  # the whole page in the screenshot
    keep_screenshot(browser, tmp_path / "console-dashboard.png")
    browser.set_window_size(1280, 800)

    # Live: the last 12 months count a deal won now, as soon as it is.
    Select(browser.find_element(By.ID, "dashboard-period")).select_by_value("last12")
    year, month, day = browser.execute_script(JS_TODAY)
    start_year, start_month = (year, month - 11) if month == 12 else (year - 1, month + 1)
    last12 = {
        "p": pipeline["id"],
        "from": f"{start_year}-{start_month:02d}-01",
        "to": f"{year}-{month:02d}-{day:02d}",
        "tz": zone,
    }
    before = _api(live_server, manager, SALES_REPORT, last12)["salesReport"]["winRate"]
    win_rate_shown(before["won"], before["lost"])
    deal = _api(live_server, manager, BOARD, {"p": pipeline["id"]})["deals"]["nodes"][-1]
    won = _api(
        live_server,
        manager,
        "mutation($i: UpdateDealInput!) { updateDeal(input: $i) { errors { code } } }",
        {"i": {"id": deal["id"], "status": "WON"}},
    )
    assert won["updateDeal"]["errors"] == []
    win_rate_shown(before["won"] + 1, before["lost"])
    _no_csp_violations(browser)


DRILL_REPORTS = """query($p: ID!, $from: Date!, $to: Date!, $tz: String) {
  salesReport(pipelineId: $p, from: $from, to: $to, timeZone: $tz) {
    winRate { won wonDrillDown { list filter } } }
  serviceReport(from: $from, to: $to, timeZone: $tz) {
    backlog { label count drillDown { list filter } }
    csat { overall { count } byAgent { agent { name } count csat } } } }"""
DRILLED_DEALS = """query($f: DealFilter) { deals(first: 100, filter: $f) { nodes { id } } }"""
JS_RECORD_IDS = (
    "return Array.from(document.querySelectorAll('table.records tbody tr'), r => r.dataset.id)"
)
OLD_CONVERSATION = """{ conversations(first: 1,
  filter: {createdAt: {lt: "2026-01-01T00:00:00Z"}, status: {eq: CLOSED}}) { nodes { id } } }"""
JS_KPI = "return document.querySelector(`[data-kpi='${arguments[0]}']`)?.textContent ?? ''"


@pytest.mark.browser
@skip_without_browser
def test_dashboard_backlog_csat_and_drill_downs_open_the_records(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """The backlog and CSAT charts show the service report's figures; a click on the win
    rate's Won slice opens exactly the deals of its drill-down, and the youngest backlog
    band's link opens the inbox narrowed to that band's conversations (the count the
    report gives), where a conversation started meanwhile joins live (the API judges it
    within the drill-down's filter)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    manager = console_demo[Role.MANAGER]
    _new_conversation(live_server, manager, f"Backlog {uuid.uuid4().hex[:6]}")  # under 1 hour
    wait = _log_in(browser, live_server, manager)
    browser.find_element(By.LINK_TEXT, "Dashboard").click()
    wait.until(lambda d: d.find_elements(By.ID, "winrate-title"))
    Select(browser.find_element(By.ID, "dashboard-period")).select_by_value("year:2025")
    pipeline = _api(live_server, manager, PIPELINES, {})["pipelines"]["nodes"][0]
    zone = browser.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone")
    year = {"p": pipeline["id"], "from": "2025-01-01", "to": "2025-12-31", "tz": zone}
    reports = _api(live_server, manager, DRILL_REPORTS, year)
    won = reports["salesReport"]["winRate"]
    service = reports["serviceReport"]
    wait.until(lambda d: f"({won['won']} won," in d.execute_script(JS_WIN_RATE_TITLE))
    wait.until(lambda d: d.execute_script(JS_CANVASES_DRAWN) == [True] * 6)

    backlog = sum(band["count"] for band in service["backlog"])
    assert backlog > 0 and browser.execute_script(JS_KPI, "backlog") == str(backlog)
    csat = browser.find_element(By.CSS_SELECTOR, "#csat-title ~ .chart canvas")
    label = csat.get_attribute("aria-label") or ""
    rated = [a for a in service["csat"]["byAgent"] if a["count"]]
    assert rated and service["csat"]["overall"]["count"] == sum(a["count"] for a in rated)
    for agent in rated:
        name = agent["agent"]["name"] if agent["agent"] else "Unassigned"
        shown = math.floor(agent["csat"] * 100 + 0.5)  # JavaScript's Math.round
        assert f"{name} {shown}% of {agent['count']}" in label

    # A click on the doughnut's Won slice (it starts at the top and runs clockwise).
    doughnut = browser.find_element(By.CSS_SELECTOR, "#winrate-title ~ .chart canvas")
    size = doughnut.size
    legend = 32  # the legend under the doughnut
    radius = min(size["width"], size["height"] - legend) / 2
    ActionChains(browser).move_to_element_with_offset(
        doughnut, 6, int(-legend / 2 - 0.75 * radius)
    ).click().perform()
    expected = _api(live_server, manager, DRILLED_DEALS, {"f": won["wonDrillDown"]["filter"]})
    wanted = sorted(d["id"] for d in expected["deals"]["nodes"])
    assert len(wanted) == won["won"]
    wait.until(
        lambda d: (
            "/app/deals" in d.current_url and d.find_elements(By.CSS_SELECTOR, ".drill-banner")
        )
    )
    noun = "deal" if len(wanted) == 1 else "deals"
    wait.until(lambda d: _count_text(d) == f"{len(wanted)} {noun}")
    shown = browser.execute_script(JS_RECORD_IDS)
    assert len(shown) == min(25, len(wanted)) and set(shown) <= set(wanted)
    assert "deals won in the period" in browser.find_element(By.CSS_SELECTOR, ".drill-banner").text
    keep_screenshot(browser, tmp_path / "console-drill-deals.png")

    # Back on the dashboard, a backlog band's link: the inbox holds that band only.
    browser.back()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#backlog-title ~ .drills a"))
    band = service["backlog"][0]
    assert band["count"] >= 1
    link = browser.find_element(By.PARTIAL_LINK_TEXT, f"{band['label']} ({band['count']})")
    link.click()
    wait.until(lambda d: "/app/inbox" in d.current_url)
    noun = "conversation" if band["count"] == 1 else "conversations"
    wait.until(lambda d: _count_text(d) == f"{band['count']} {noun}")
    assert band["label"] in browser.find_element(By.CSS_SELECTOR, ".drill-banner").text
    # A message in an old conversation (outside the band) does not bring it in; a
    # conversation started now (inside it) joins.
    old = _api(live_server, manager, OLD_CONVERSATION, {})["conversations"]["nodes"][0]["id"]
    _send(live_server, manager, old, "Still there?")
    joined = _new_conversation(live_server, manager, f"Joins {uuid.uuid4().hex[:6]}")
    wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"button[data-conversation-id='{joined}']")
    )
    time.sleep(1)  # the old conversation's event came first: its answer has had time
    assert _count_text(browser) == f"{band['count'] + 1} conversations"
    assert not browser.find_elements(By.CSS_SELECTOR, f"button[data-conversation-id='{old}']")
    # The filter rides in the fragment: the server never sees it.
    assert "#filter=" in browser.current_url and "?" not in browser.current_url
    browser.find_element(By.LINK_TEXT, "Show the whole inbox").click()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".drill-banner"))
    _no_csp_violations(browser)


CREATE_CUSTOMER = """mutation($i: CreateCustomerInput!) {
  createCustomer(input: $i) { customer { id } errors { message } } }"""


@pytest.mark.browser
@skip_without_browser
def test_manager_merges_a_likely_duplicate_and_a_viewer_only_reviews(
    live_server: str,
    console_demo: dict[Role, tuple[str, str]],
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    """The duplicates page lists the pairs ``duplicateCandidates`` finds; a manager merges
    one (it leaves the list, the customer page of the survivor stays); a viewer sees the
    same pairs without a merge button."""
    from selenium.webdriver.common.by import By

    manager = console_demo[Role.MANAGER]
    tag = uuid.uuid4().hex[:6]
    ids = [
        _api(live_server, manager, CREATE_CUSTOMER, {"i": input})["createCustomer"]["customer"][
            "id"
        ]
        for input in (
            {"name": f"Imogen Duplicate {tag}", "phone": "+44 20 7946 0999"},
            {"name": f"Imogen Duplicate {tag}", "phone": "0044 (0)20 7946 0999"},
            # a second pair, left for the viewer
            {"name": f"Otto Twice {tag}", "email": f"otto.{tag}@example.com"},
            {"name": f"Otto Twice {tag}", "email": f"otto.{tag}+news@example.com"},
        )
    ]
    wanted = _api(
        live_server, manager, "{ duplicateCandidates(first: 100) { candidates { score } } }", {}
    )["duplicateCandidates"]["candidates"]
    assert wanted

    wait = _log_in(browser, live_server, manager)
    browser.find_element(By.LINK_TEXT, "Duplicates").click()
    pair = f"tr[data-pair='{ids[0]} {ids[1]}']"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, pair))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.duplicates tbody tr")
    assert len(rows) == min(len(wanted), 20)
    row = browser.find_element(By.CSS_SELECTOR, pair)
    assert "Phone" in row.text and "100%" in row.text
    keep_screenshot(browser, tmp_path / "console-duplicates.png")
    row.find_element(By.XPATH, ".//button[normalize-space()='Merge']").click()
    wait.until(lambda d: "was merged into" in d.find_element(By.CSS_SELECTOR, "p.notice").text)
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, pair))
    merged = _api(
        live_server,
        manager,
        "query($id: ID!) { node(id: $id) { ... on Customer { mergedInto { id } } } }",
        {"id": ids[1]},
    )
    assert merged["node"]["mergedInto"]["id"] == ids[0]
    _no_csp_violations(browser)

    browser.find_element(By.XPATH, "//button[normalize-space()='Log out']").click()
    wait = _log_in(browser, live_server, console_demo[Role.VIEWER])
    browser.get(f"{live_server}/app/duplicates")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-pair='{ids[2]} {ids[3]}']"))
    assert "Email" in browser.find_element(By.CSS_SELECTOR, "table.duplicates tbody").text
    assert not browser.find_elements(By.XPATH, "//button[normalize-space()='Merge']")
    keep_screenshot(browser, tmp_path / "console-duplicates-viewer.png")
