"""Self-hosted GraphiQL explorer: the HTML page and its static asset route.

The browser assets (GraphiQL 4 UMD, React 18 UMD, graphql-ws UMD) come from npm,
pinned by package.json / package-lock.json, and are copied into ``STATIC_DIR`` by
``scripts/build_explorer_assets.py`` (``make setup``) under content-hashed names listed in
its ``manifest.json``, with Brotli and gzip copies made there once. Nothing is loaded from
a CDN, so the explorer works offline, subscriptions included. A hashed name never changes
content, so the assets are cached for a year (``immutable``); the page itself is never
cached and names the current files.
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Final

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.types import Receive, Scope, Send

__all__ = [
    "ASSET_FILES",
    "DEFAULT_STATIC_PREFIX",
    "MANIFEST",
    "STATIC_DIR",
    "HashedStaticFiles",
    "assets_available",
    "content_security_policy",
    "explorer_html",
    "explorer_response",
    "explorer_routes",
    "read_manifest",
    "security_headers",
    "wants_explorer",
]

STATIC_DIR: Final[Path] = Path(__file__).resolve().parent / "static" / "explorer"
DEFAULT_STATIC_PREFIX: Final = "/explorer-static"

# Written by scripts/build_explorer_assets.py: asset name -> its content-hashed file name.
MANIFEST: Final = "manifest.json"
# Precompressed copies beside each hashed file, in the order the server prefers them.
PRECOMPRESSED: Final[tuple[tuple[str, str], ...]] = (("br", ".br"), ("gzip", ".gz"))
IMMUTABLE: Final = "public, max-age=31536000, immutable"

# Keep in sync with ASSETS in scripts/build_explorer_assets.py. Order = load order:
# GraphiQL's UMD reads the React / ReactDOM globals when it runs.
ASSET_FILES: Final[tuple[str, ...]] = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphql-ws.min.js",
    "graphiql.min.js",
    "graphiql.min.css",
)

SETUP_HINT: Final = (
    "The GraphiQL explorer assets are not installed. Run <code>make setup</code> "
    "(or <code>python scripts/build_explorer_assets.py</code>) and reload this page. "
    "The GraphQL API itself works without them: POST queries to this URL."
)
ASSET_MISSING: Final = "Explorer assets not built: run `make setup`.\n"

# Shown as the Authorization value in a fresh Headers tab. The page's fetcher drops
# an Authorization header that still holds this placeholder, so `login` works before
# the user has pasted a token (a server would reject "Bearer <paste ...>").
TOKEN_PLACEHOLDER: Final = "Bearer <paste accessToken from login>"
DEFAULT_HEADERS: Final = json.dumps({"Authorization": TOKEN_PLACEHOLDER}, indent=2)

DEFAULT_QUERY: Final = """\
# crm_graphql explorer
#
# 1. Run "Login" (press the play button, pick Login)
#    and copy its accessToken.
# 2. In the Headers tab below, paste the token over
#    <paste accessToken from login>, keeping "Bearer ".
# 3. Run "Me". Subscriptions use the same headers: the
#    WebSocket sends them in its connection_init payload.
# In production the schema (Docs, completion) is only shown
# to logged-in users: after step 2, press "Re-fetch schema".

mutation Login {
  login(input: {email: "admin@demo.example", password: "demo-admin"}) {
    accessToken
    errors {
      code
      message
    }
  }
}

query Me {
  me {
    email
  }
}

# Search as the user types: every word a prefix, case and accents ignored; ranked hits
# with highlighted snippets (HTML-escaped, matches in <mark>).
query Search {
  search(query: "ais wil", first: 5) {
    edges {
      score
      highlights { field snippet }
      node {
        __typename
        ... on Customer { id name email }
        ... on Company { id name }
        ... on Deal { id title }
      }
    }
  }
}

# Typed custom fields: the definitions forms need. Once a key is defined, lists filter and
# sort by it: customers(filter: {customFields: [{key: "tier", in: ["gold"]}]},
# orderBy: [{customField: "tier"}]).
query CustomFields {
  customFieldDefinitions(entity: CUSTOMER) { key label type options required searchable }
}

# Sales and service reports for a period; every number has a drillDown (the list filter
# that gives its rows). $pipeline: an id from `pipelines`.
query Reports($pipeline: ID!) {
  salesReport(pipelineId: $pipeline, from: "2026-01-01", to: "2026-12-31", timeZone: "UTC") {
    stages {
      stage { name } openCount reachedCount conversionToNext
      weightedValue { currency amount }
    }
    winRate { won lost rate }
    averageCycleTime { averageDays }
    forecast { month owner { email } currency amount weightedAmount }
  }
  serviceReport(from: "2026-01-01", to: "2026-12-31", timeZone: "UTC") {
    volume { channel status count }
    firstResponse { byChannel { channel count p50Seconds p90Seconds } }
    resolution { byAgent { agent { email } p50Seconds p90Seconds } }
    backlog { label count drillDown { list filter } }
    csat { byAgent { agent { email } count csat averageScore } }
  }
}

# Segments: built-in RFM segments and saved filters; the
# customers of one ("champions" here), with their scores.
query Segments {
  segments(first: 20) {
    nodes { id name builtIn shared }
  }
  customers(segmentId: "U2VnbWVudDo5ZWFmN2ExOS0yZTM1LTU4OTMtODZjNy1hYTJlMGMxMzJjN2I", first: 10) {
    totalCount
    nodes {
      name
      rfm { recency frequency segment lifetimeValue { amount currency } }
    }
  }
  customerCohorts(from: "2026-01-01", to: "2026-06-30", timeZone: "UTC") {
    month
    customers
    cells { monthsSince share }
  }
}

query Dashboard {
  openDealsByStage: dealsAggregate(filter: {status: {eq: OPEN}}, groupBy: [{field: STAGE}]) {
    count
    amount { sum { amount currency } }
    groups {
      stage { name }
      count
      amount { sum { amount currency } avg { amount currency } }
      drillDown { list filter }
    }
  }
  revenuePerMonth: timeSeries(
    metric: REVENUE, interval: MONTH, timeZone: "Europe/Berlin"
    from: "2025-01-01T00:00:00Z", to: "2026-01-01T00:00:00Z"
  ) {
    start count amount { amount currency }
  }
}

# The same panels, live: sent at once, then again whenever the numbers change (at most
# once a second). Run it and create a deal in another tab.
subscription LiveDashboard {
  dashboard {
    openDealsByStage: dealsAggregate(filter: {status: {eq: OPEN}}, groupBy: [{field: STAGE}]) {
      count
      groups { stage { name } count amount { sum { amount currency } } }
    }
    openConversations: conversationsAggregate(filter: {status: {eq: OPEN}}) { count }
  }
}

query NextBestOffer {
  customers(first: 3) {
    nodes {
      name
      recommendations(first: 3) {
        product {
          name
        }
        score
        reason
      }
      churnRisk {
        level
        reasons
      }
    }
  }
}
"""

# The inline init script (runs under a per-response CSP nonce). Reads its settings from
# the JSON block above it, so no value is ever interpolated into JavaScript source.
_INIT_JS: Final = """\
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("crm-explorer-config").textContent);
  var httpUrl = new URL(config.graphqlPath, window.location.href).href;
  // Same host and path; ws: for an http page, wss: for an https page.
  var wsUrl = httpUrl.replace(/^http/, "ws");

  function effectiveHeaders(headers) {
    var out = {};
    Object.keys(headers || {}).forEach(function (name) {
      var value = headers[name];
      if (name.toLowerCase() === "authorization" && value === config.tokenPlaceholder) return;
      out[name] = value;
    });
    return out;
  }

  // WebSocket auth: browsers cannot set headers on a WebSocket handshake, so the
  // headers of the Headers tab are sent as the connection_init payload instead
  // (flat, e.g. {"Authorization": "Bearer ..."}, as GraphiQL itself does for
  // subscriptionUrl). One lazy graphql-ws client per distinct header set: editing the
  // headers (or running a tab with other headers) opens a new, re-authenticated
  // socket, while subscriptions already running keep theirs. Lazy clients close
  // their socket once no subscription uses it.
  var fetchers = new Map();
  function fetcherFor(headers) {
    var key = JSON.stringify(headers);
    var fetcher = fetchers.get(key);
    if (!fetcher) {
      var wsClient = graphqlWs.createClient({
        url: wsUrl,
        lazy: true,
        connectionParams: function () { return headers; }
      });
      fetcher = GraphiQL.createFetcher({
        url: httpUrl,
        subscriptionUrl: wsUrl,
        wsClient: wsClient
      });
      fetchers.set(key, fetcher);
    }
    return fetcher;
  }

  function fetcher(params, opts) {
    var headers = effectiveHeaders(opts && opts.headers);
    return fetcherFor(headers)(params, Object.assign({}, opts, { headers: headers }));
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: config.defaultQuery,
      defaultHeaders: config.defaultHeaders,
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: "headers",
      // Tokens must not outlive the tab in localStorage.
      shouldPersistHeaders: false
    })
  );
})();
"""

_PAGE: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>crm_graphql explorer</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql">Loading the explorer&hellip;</div>
{scripts}
<script id="crm-explorer-config" type="application/json">{config}</script>
<script{nonce_attr}>
{init_js}</script>
</body>
</html>
"""

_MISSING_PAGE: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crm_graphql explorer</title>
<link rel="icon" href="data:,">
<style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40em; margin: 4em auto; }}</style>
</head>
<body>
<h1>crm_graphql explorer</h1>
<p>{hint}</p>
</body>
</html>
"""

# Host header values we are willing to echo into the CSP (host, IPv4, [IPv6], port).
_SAFE_NETLOC = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def read_manifest(
    directory: Path, names: tuple[str, ...], *, chunks: bool = False
) -> dict[str, str] | None:
    """The ``manifest.json`` of ``directory`` (name -> hashed file name) when it names
    exactly ``names`` (with ``chunks``: at least, the rest being chunks the bundles load)
    and every file is there, else None (a build missing or half done)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    if not (set(names) <= set(manifest) if chunks else set(manifest) == set(names)):
        return None
    if not all(isinstance(v, str) and (directory / v).is_file() for v in manifest.values()):
        return None
    return manifest


def asset_manifest(directory: Path | None = None) -> dict[str, str] | None:
    """Asset name -> hashed file name, when every asset has been built into
    ``directory`` (read per call: `make setup` needs no restart)."""
    return read_manifest(STATIC_DIR if directory is None else directory, ASSET_FILES)


def assets_available(directory: Path | None = None) -> bool:
    """True when every explorer asset has been built into ``directory``."""
    return asset_manifest(directory) is not None


def _json_for_script(value: object) -> str:
    # Inside <script> only "</" (and "<!--") can end or confuse the element; escaping
    # "<", ">" and "&" as JSON \u escapes keeps the JSON valid and inert.
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def explorer_html(
    *,
    graphql_path: str = "/graphql",
    static_prefix: str = DEFAULT_STATIC_PREFIX,
    nonce: str = "",
    manifest: dict[str, str] | None = None,
) -> str:
    """The GraphiQL page; ``nonce`` must match the response's CSP ``script-src``;
    ``manifest`` names the built (hashed) asset files (``asset_manifest()``)."""
    files = manifest if manifest is not None else asset_manifest() or {}
    prefix = static_prefix.rstrip("/")

    def url(name: str) -> str:
        return escape(f"{prefix}/{files.get(name, name)}", quote=True)

    scripts = "\n".join(
        f'<script src="{url(name)}"></script>' for name in ASSET_FILES if name.endswith(".js")
    )
    config = {
        "graphqlPath": graphql_path,
        "defaultQuery": DEFAULT_QUERY,
        "defaultHeaders": DEFAULT_HEADERS,
        "tokenPlaceholder": TOKEN_PLACEHOLDER,
    }
    return _PAGE.format(
        css=url("graphiql.min.css"),
        scripts=scripts,
        config=_json_for_script(config),
        nonce_attr=f' nonce="{escape(nonce, quote=True)}"' if nonce else "",
        init_js=_INIT_JS,
    )


def content_security_policy(request: Request, nonce: str) -> str:
    """The explorer's (and the web console's) policy: scripts from this origin or with
    ``nonce`` only, connections to this origin (HTTP and WebSocket) only."""
    connect = ["'self'"]
    netloc = request.url.netloc
    if _SAFE_NETLOC.match(netloc):
        # 'self' covers same-host ws:/wss: in current browsers (CSP 3); older ones
        # need the WebSocket origin spelled out. Both schemes: behind a TLS proxy the
        # app may see http while the browser uses wss.
        connect += [f"ws://{netloc}", f"wss://{netloc}"]
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'nonce-{nonce}'",
            # GraphiQL / CodeMirror set inline styles; no nonce here, or browsers
            # would ignore 'unsafe-inline'.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src " + " ".join(connect),
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(csp: str) -> dict[str, str]:
    """Headers of an HTML page of the server: ``csp``, no sniffing, framing or referrer."""
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        # The page carries a fresh nonce each time; caching it would reuse one.
        "Cache-Control": "no-store",
    }


def wants_explorer(request: Request) -> bool:
    """True for a browser navigation: GET/HEAD whose Accept includes text/html."""
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def explorer_response(
    request: Request,
    *,
    graphql_path: str | None = None,
    static_prefix: str = DEFAULT_STATIC_PREFIX,
) -> HTMLResponse:
    """The explorer page (or a "run make setup" page, 503) with security headers.

    ``graphql_path`` defaults to the path the page was requested at, i.e. the page
    queries the endpoint it is served from.
    """
    manifest = asset_manifest()
    if manifest is None:
        csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
        return HTMLResponse(
            _MISSING_PAGE.format(hint=SETUP_HINT),
            status_code=503,
            headers=security_headers(csp),
        )
    nonce = secrets.token_urlsafe(18)
    html = explorer_html(
        graphql_path=graphql_path or request.url.path,
        static_prefix=static_prefix,
        nonce=nonce,
        manifest=manifest,
    )
    return HTMLResponse(html, headers=security_headers(content_security_policy(request, nonce)))


def _accepted_encodings(headers: Headers) -> set[str]:
    """Content codings ``Accept-Encoding`` allows (``q=0`` excluded)."""
    accepted = set()
    for item in headers.get("accept-encoding", "").split(","):
        coding, _, parameters = item.partition(";")
        refused = parameters.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000")
        if coding.strip() and not refused:
            accepted.add(coding.strip().lower())
    return accepted


class HashedStaticFiles:
    """The built assets of ``directory``, by hashed name only (the files ``manifest``
    lists: no other path of the folder can be asked for), cached as immutable, sent as
    the precompressed copy the client accepts. Also serves the web console's assets
    (crm_graphql/console.py)."""

    def __init__(
        self,
        directory: Path,
        manifest: Callable[[Path], dict[str, str] | None] = asset_manifest,
    ) -> None:
        self._directory = directory
        self._manifest = manifest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        await self._response(scope)(scope, receive, send)

    def _response(self, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse("Method Not Allowed", 405, {"Allow": "GET, HEAD"})
        manifest = self._manifest(self._directory)
        if manifest is None:
            # Checked per request (not at import) so `make setup` needs no restart.
            return PlainTextResponse(ASSET_MISSING, status_code=404)
        name = scope["path"].rsplit("/", 1)[-1]
        if name not in manifest.values():
            return PlainTextResponse("Not Found", status_code=404)
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {
            "Cache-Control": IMMUTABLE,
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
        }
        accepted = _accepted_encodings(Headers(scope=scope))
        for coding, suffix in PRECOMPRESSED:
            compressed = self._directory / f"{name}{suffix}"
            if coding in accepted and compressed.is_file():
                headers["Content-Encoding"] = coding
                return FileResponse(compressed, headers=headers, media_type=media_type)
        return FileResponse(self._directory / name, headers=headers, media_type=media_type)


def explorer_routes(*, static_prefix: str = DEFAULT_STATIC_PREFIX) -> list[BaseRoute]:
    """Routes serving the explorer's static assets under ``static_prefix``."""
    return [Mount(static_prefix, app=HashedStaticFiles(STATIC_DIR), name="explorer-static")]
