"""The web console at ``/app``: its page and its built assets.

The console is a TypeScript app in ``console/`` that talks to the server only through
the public GraphQL API. ``make setup`` builds it (``scripts/build_console_assets.py``
runs ``console/build.mjs``) into ``STATIC_DIR``: content-hashed ``main.<hash>.js`` and
``main.<hash>.css``, the chunks ``main.js`` imports (pages loaded on demand, such as the
dashboard with its charting library), with Brotli and gzip copies, and ``manifest.json``
naming them all. The
server sends the page for every path under ``/app`` (the app routes in the browser, so a
reload or a link opens the same view) and the assets under ``/app/assets``, immutable.
The page carries the explorer's security headers and Content-Security-Policy; it has no
inline script.
"""

from __future__ import annotations

import secrets
from html import escape
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from crm_graphql.explorer import (
    HashedStaticFiles,
    content_security_policy,
    read_manifest,
    security_headers,
)

__all__ = ["ASSET_FILES", "STATIC_DIR", "console_manifest", "console_routes"]

STATIC_DIR: Final[Path] = Path(__file__).resolve().parent / "static" / "console"
PREFIX: Final = "/app"
ASSETS_PREFIX: Final = f"{PREFIX}/assets"
# Written by console/build.mjs: bundle name -> its content-hashed file name.
ASSET_FILES: Final[tuple[str, ...]] = ("main.js", "main.css")

_PAGE: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>crm_graphql console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
<script type="module" src="{js}"></script>
</head>
<body>
<div id="console"><noscript>The console needs JavaScript.</noscript></div>
</body>
</html>
"""

_MISSING_PAGE: Final = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crm_graphql console</title>
<link rel="icon" href="data:,">
</head>
<body>
<h1>crm_graphql console</h1>
<p>The console is not built. Run <code>make setup</code> (or
<code>python scripts/build_console_assets.py</code>) and reload this page.</p>
</body>
</html>
"""


def console_manifest(directory: Path = STATIC_DIR) -> dict[str, str] | None:
    """Bundle name -> hashed file name, when the build is complete in ``directory``
    (read per request: `make setup` needs no restart)."""
    return read_manifest(directory, ASSET_FILES, chunks=True)


def console_page(request: Request, directory: Path = STATIC_DIR) -> Response:
    """The console's page for any path under /app (503 with a hint before the build)."""
    manifest = console_manifest(directory)
    if manifest is None:
        csp = "default-src 'none'; frame-ancestors 'none'"
        return HTMLResponse(_MISSING_PAGE, status_code=503, headers=security_headers(csp))
    # The page has no inline script; the nonce only keeps the policy the explorer's.
    nonce = secrets.token_urlsafe(18)
    html = _PAGE.format(
        css=escape(f"{ASSETS_PREFIX}/{manifest['main.css']}", quote=True),
        js=escape(f"{ASSETS_PREFIX}/{manifest['main.js']}", quote=True),
    )
    headers = security_headers(content_security_policy(request, nonce))
    return HTMLResponse(html, headers=headers)


def console_routes(directory: Path = STATIC_DIR) -> list[BaseRoute]:
    """The console's assets (built into ``directory``), then its page for /app and every
    path below it."""

    async def page(request: Request) -> Response:
        return console_page(request, directory)

    return [
        Mount(ASSETS_PREFIX, app=HashedStaticFiles(directory, console_manifest)),
        Route(PREFIX, page, methods=["GET", "HEAD"]),
        Route(PREFIX + "/{path:path}", page, methods=["GET", "HEAD"]),
    ]
