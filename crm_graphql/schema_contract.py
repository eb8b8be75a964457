"""The schema contract (docs/decisions/0030-schema-contract.md): against the schema of the
last release (``schema/released.graphql``), ``schema.graphql`` makes no breaking change that
``CHANGELOG.md`` does not list, in its ``## Unreleased`` section under ``### Breaking``, as

    - `FIELD_REMOVED` `Customer.phone`: deprecated in 0.1.0, use `phones`.

that is the change's kind as graphql-core's ``find_breaking_changes`` names it, the schema
coordinate it is about, and the release that deprecated it (the last release or an earlier
one). Where the released schema has the element (a field, argument, input field or enum
value), it must carry ``@deprecated`` there: clients were told before it went away.
``check`` returns the broken rules; ``crm-graphql check-schema`` and ``make test`` run it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from graphql import (
    BreakingChange,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
    find_breaking_changes,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema.graphql"
RELEASED_SCHEMA = ROOT / "schema" / "released.graphql"
CHANGELOG = ROOT / "CHANGELOG.md"

_ENTRY = re.compile(
    r"^- `(?P<kind>[A-Z_]+)` `(?P<coordinate>[^`]+)`: deprecated in "
    r"(?P<version>\d+\.\d+\.\d+)(?P<note>.*)$"
)
_RELEASE = re.compile(r"^## (?P<version>\d+\.\d+\.\d+)\b")


@dataclass(frozen=True)
class Entry:
    """One line of ``### Breaking`` under ``## Unreleased``."""

    kind: str
    coordinate: str
    deprecated_in: tuple[int, ...]
    line: str


@dataclass(frozen=True)
class Changelog:
    """What the contract reads of ``CHANGELOG.md``."""

    released: tuple[int, ...] | None  # the newest ``## x.y.z`` heading
    entries: tuple[Entry, ...]
    malformed: tuple[str, ...]


def read_changelog(text: str) -> Changelog:
    """The last release and the breaking changes listed for the next one."""
    released: tuple[int, ...] | None = None
    entries: list[Entry] = []
    malformed: list[str] = []
    section = subsection = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section, subsection = line[3:].strip(), ""
            release = _RELEASE.match(line)
            if release and released is None:
                released = _version(release["version"])
        elif line.startswith("### "):
            subsection = line[4:].strip()
        elif section == "Unreleased" and subsection == "Breaking" and line.startswith("- "):
            entry = _ENTRY.match(line.strip())
            if entry is None:
                malformed.append(line.strip())
            else:
                entries.append(
                    Entry(
                        entry["kind"],
                        entry["coordinate"],
                        _version(entry["version"]),
                        line.strip(),
                    )
                )
    return Changelog(released, tuple(entries), tuple(malformed))


def check(current_sdl: str, released_sdl: str, changelog_text: str) -> list[str]:
    """Every rule of the contract ``current_sdl`` breaks against ``released_sdl`` and the
    changelog (empty: the contract holds)."""
    try:
        released = build_schema(released_sdl)
        changes = find_breaking_changes(released, build_schema(current_sdl))
    except GraphQLError as error:
        return [f"Not a valid schema: {error.message}"]
    changelog = read_changelog(changelog_text)
    problems = [
        f"CHANGELOG.md: not in the form `- \\`KIND\\` \\`Coordinate\\`: deprecated in X.Y.Z`: "
        f"{line}"
        for line in changelog.malformed
    ]
    listed: set[Entry] = set()
    for change in changes:
        entry = next((e for e in changelog.entries if _lists(e, change)), None)
        if entry is None:
            problems.append(
                f"Breaking change not listed in CHANGELOG.md (## Unreleased, ### Breaking): "
                f"{change.type.name}: {change.description}"
            )
            continue
        listed.add(entry)
        if changelog.released is None or entry.deprecated_in > changelog.released:
            problems.append(
                f"{entry.coordinate}: deprecated in a version not released yet "
                f"(the last release is {_text(changelog.released)}): {entry.line}"
            )
        if _deprecation(released, entry.coordinate) == "":
            problems.append(
                f"{entry.coordinate} is not deprecated in the released schema: deprecate it "
                f"(@deprecated) in a release before removing or changing it"
            )
    for entry in changelog.entries:
        if entry not in listed:
            problems.append(
                f"CHANGELOG.md lists a breaking change the schema does not make (stale or "
                f"mistyped): {entry.line}"
            )
    return problems


def check_files(
    schema: Path = SCHEMA, released: Path = RELEASED_SCHEMA, changelog: Path = CHANGELOG
) -> list[str]:
    """``check`` on files (the repository's by default)."""
    return check(schema.read_text(), released.read_text(), changelog.read_text())


def _lists(entry: Entry, change: BreakingChange) -> bool:
    """``entry`` names ``change``: the same kind, and its coordinate is the one the
    change's description names (``Customer.phone`` is not ``Customer.phoneNumber``)."""
    if entry.kind != change.type.name:
        return False
    coordinate = re.escape(entry.coordinate)
    return re.search(rf"(?<![\w.@]){coordinate}(?![\w.(])", change.description) is not None


def _deprecation(schema: GraphQLSchema, coordinate: str) -> str | None:
    """The deprecation reason of the field, argument, input field or enum value at
    ``coordinate`` in ``schema``: ``""`` when it is there and not deprecated, None when
    the coordinate names no such element there (a type, or something new)."""
    match = re.fullmatch(r"(\w+)\.(\w+)(?:\((\w+):\))?", coordinate)
    if match is None:
        return None
    type_name, member, argument = match.groups()
    type_ = schema.get_type(type_name)
    if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
        field = type_.fields.get(member)
        if field is None:
            return None
        if argument is None:
            return field.deprecation_reason or ""
        arg = field.args.get(argument)
        return None if arg is None else arg.deprecation_reason or ""
    if isinstance(type_, GraphQLInputObjectType) and argument is None:
        input_field = type_.fields.get(member)
        return None if input_field is None else input_field.deprecation_reason or ""
    if isinstance(type_, GraphQLEnumType) and argument is None:
        value = type_.values.get(member)
        return None if value is None else value.deprecation_reason or ""
    return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _text(version: tuple[int, ...] | None) -> str:
    return "none" if version is None else ".".join(map(str, version))
