"""The layers of DESIGN.md as imports: what a package may not import (checked on the
source, the way a reviewer would read it, including imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "crm_graphql"

# package -> modules it must not import (prefixes)
FORBIDDEN = {
    # The schema declares the API: it names types and calls resolvers, never storage.
    "schema": ("crm_graphql.models",),
    # The live path is one subsystem under the API: publish-after-commit, streams,
    # fan-out groups and verdicts. It is handed the GraphQL context class and the
    # credentials check (realtime/connections.py), never reaches into resolvers.
    "realtime": ("crm_graphql.resolvers",),
    # Services decide; they are called by the API and never call back into it.
    "services": ("crm_graphql.resolvers", "crm_graphql.schema", "crm_graphql.compiled"),
    # Storage is the services' query building (scoped by the services' actor and policy);
    # models sit under both.
    "storage": ("crm_graphql.resolvers", "crm_graphql.schema", "crm_graphql.compiled"),
    "models": (
        "crm_graphql.resolvers",
        "crm_graphql.schema",
        "crm_graphql.compiled",
        "crm_graphql.services",
    ),
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_packages_import_only_what_their_layer_may() -> None:
    broken = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((PACKAGE / package).rglob("*.py"))
        assert files, package
        assert any(_imports(path) for path in files), package  # the reader reads imports
        for path in files:
            for name in sorted(_imports(path)):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    broken.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert broken == []
