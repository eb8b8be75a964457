"""The schema contract (decision 0030): every element of the schema is described, and no
breaking change against the released schema passes unless CHANGELOG.md lists it with its
deprecation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    build_schema,
    print_schema,
)

from crm_graphql import schema_contract
from crm_graphql.schema import schema
from crm_graphql.schema.descriptions import CONNECTION_ARGUMENTS, FILTER_COMBINATORS
from crm_graphql.services import rfm
from tests import support

GRAPHQL = schema._schema  # the graphql-core schema Strawberry serves and prints


def _undescribed() -> list[str]:
    missing = []
    for name, type_ in GRAPHQL.type_map.items():
        if name.startswith("__"):
            continue
        if not type_.description:
            missing.append(name)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in type_.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [
                    f"{name}.{field_name}({arg}:)"
                    for arg, argument in field.args.items()
                    if not argument.description
                ]
        elif isinstance(type_, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, field in type_.fields.items() if not field.description]
        elif isinstance(type_, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in type_.values.items() if not value.description]
    return missing


def test_every_type_field_argument_input_field_and_enum_value_is_described() -> None:
    """The explorer's documentation comes from descriptions."""
    assert _undescribed() == []


def _descriptions() -> list[tuple[str, str]]:
    found = []
    for name, type_ in GRAPHQL.type_map.items():
        if name.startswith("__"):
            continue
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in type_.fields.items():
                found.append((field_name, field.description or ""))
                found += [(a, arg.description or "") for a, arg in field.args.items()]
        elif isinstance(type_, GraphQLInputObjectType):
            found += [(f, field.description or "") for f, field in type_.fields.items()]
        elif isinstance(type_, GraphQLEnumType):
            found += [(v, value.description or "") for v, value in type_.values.items()]
    return found


def _words(text: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|_", " ", text)
    return re.findall(r"[a-z0-9]+", spaced.lower())


def test_no_description_only_repeats_its_name() -> None:
    """``name: "Name."`` tells a reader nothing."""
    echoes = [
        (name, text)
        for name, text in _descriptions()
        if _words(text) in (_words(name), ["the", *_words(name)])
    ]
    assert echoes == []


def _input_field(type_name: str, field: str) -> str | None:
    type_ = GRAPHQL.get_type(type_name)
    assert isinstance(type_, GraphQLInputObjectType)
    return type_.fields[field].description


def _object_field(type_name: str, field: str) -> str:
    type_ = GRAPHQL.get_type(type_name)
    assert isinstance(type_, GraphQLObjectType)
    description = type_.fields[field].description
    assert description
    return description


def _enum_value(type_name: str, value: str) -> str | None:
    type_ = GRAPHQL.get_type(type_name)
    assert isinstance(type_, GraphQLEnumType)
    return type_.values[value].description


def test_list_and_mutation_inputs_take_the_description_of_the_field_they_are_about() -> None:
    email = _object_field("Customer", "email")
    assert _input_field("CustomerFilter", "email") == f"Conditions on `email`: {email}"
    assert _enum_value("CustomerOrderField", "EMAIL") == f"Order by `email`: {email}"
    assert _input_field("CreateCustomerInput", "email") == email
    assert _input_field("UpdateCustomerInput", "email") == email
    owner = _object_field("Deal", "owner")
    assert _input_field("DealFilter", "ownerId") == f"Conditions on the ID of `owner`: {owner}"
    assert _enum_value("DealGroupField", "OWNER") == f"Group by `owner`: {owner}"
    assert _input_field("CreateDealInput", "ownerId") == f"ID of `owner`: {owner}"
    # a description written at the declaration wins over the derived one
    assert _input_field("CustomerFilter", "customFields") != _object_field(
        "Customer", "customFields"
    )


def test_shared_arguments_and_operators_are_declared_once() -> None:
    for type_name, field in (
        ("Query", "customers"),
        ("Customer", "deals"),
        ("Segment", "customers"),
    ):
        type_ = GRAPHQL.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType)
        args = type_.fields[field].args
        for name, text in CONNECTION_ARGUMENTS.items():
            if name in args:
                assert args[name].description == text
    for filter_type in ("CustomerFilter", "DealFilter", "MessageFilter"):
        for name, text in FILTER_COMBINATORS.items():
            assert _input_field(filter_type, name) == text
    # EnumFilter is one generic declaration: every enum's filter says the same
    assert _input_field("LifecycleStageEnumFilter", "notIn") == _input_field(
        "ChannelEnumFilter", "notIn"
    )
    query = GRAPHQL.get_type("Query")
    assert isinstance(query, GraphQLObjectType)
    filter_type = GRAPHQL.get_type("CustomerFilter")
    assert query.fields["customers"].args["filter"].description == filter_type.description


def test_rfm_segments_say_the_scores_that_make_them() -> None:
    for segment, (r_low, r_high), (fm_low, fm_high) in rfm.SEGMENT_MAP:
        text = _enum_value("RfmSegment", segment.name)
        assert text is not None
        r = str(r_low) if r_low == r_high else f"{r_low}-{r_high}"
        fm = str(fm_low) if fm_low == fm_high else f"{fm_low}-{fm_high}"
        assert text.endswith(f"Recency {r}, frequency and monetary {fm}.")


# ------------------------------------------------------------------ breaking changes

RELEASED = schema_contract.RELEASED_SCHEMA.read_text()
CHANGELOG_HEAD = "# Changelog\n\n## Unreleased\n\n### Breaking\n\n"
CHANGELOG_TAIL = "\n### Added\n\n- Something.\n\n## 0.2.0 (2026-12-01)\n\n## 0.1.0\n"


def _changelog(*entries: str) -> str:
    return CHANGELOG_HEAD + "".join(f"{entry}\n" for entry in entries) + CHANGELOG_TAIL


def _edit(sdl: str, type_name: str, *, drop: str = "", deprecate: str = "") -> str:
    """``sdl`` with the field (or enum value) ``drop`` of ``type_name`` removed, or
    ``deprecate`` marked ``@deprecated``."""
    edited = build_schema(sdl)
    type_ = edited.get_type(type_name)
    assert isinstance(type_, GraphQLObjectType | GraphQLEnumType)
    members = type_.fields if isinstance(type_, GraphQLObjectType) else type_.values
    if drop:
        del members[drop]
    if deprecate:
        members[deprecate].deprecation_reason = "Going away."
    return print_schema(edited)


def test_the_repository_keeps_the_contract() -> None:
    """schema.graphql against schema/released.graphql and CHANGELOG.md."""
    assert schema_contract.check_files() == []
    # the released schema is a schema of this code base: only descriptions and additions
    # separate them, never a type the server does not know
    assert (support.ROOT / "schema" / "released.graphql").exists()


def test_a_field_removed_without_an_entry_is_caught() -> None:
    released = _edit(RELEASED, "Customer", deprecate="phone")
    current = _edit(RELEASED, "Customer", drop="phone")
    problems = schema_contract.check(current, released, _changelog())
    assert problems == [
        "Breaking change not listed in CHANGELOG.md (## Unreleased, ### Breaking): "
        "FIELD_REMOVED: Field Customer.phone was removed."
    ]


def test_an_entry_with_its_deprecation_lets_the_removal_pass() -> None:
    released = _edit(RELEASED, "Customer", deprecate="phone")
    current = _edit(RELEASED, "Customer", drop="phone")
    entry = "- `FIELD_REMOVED` `Customer.phone`: deprecated in 0.2.0, use `phones`."
    assert schema_contract.check(current, released, _changelog(entry)) == []


def test_an_enum_value_removed_needs_its_own_entry() -> None:
    released = _edit(RELEASED, "LifecycleStage", deprecate="EVANGELIST")
    current = _edit(RELEASED, "LifecycleStage", drop="EVANGELIST")
    assert len(schema_contract.check(current, released, _changelog())) == 1
    # an entry for another element does not cover it
    other = "- `VALUE_REMOVED_FROM_ENUM` `LifecycleStage.EVANGELISTS`: deprecated in 0.1.0."
    problems = schema_contract.check(current, released, _changelog(other))
    assert any("not listed" in p and "LifecycleStage.EVANGELIST" in p for p in problems)
    entry = "- `VALUE_REMOVED_FROM_ENUM` `LifecycleStage.EVANGELIST`: deprecated in 0.1.0."
    assert schema_contract.check(current, released, _changelog(entry)) == []


def test_an_entry_does_not_excuse_removing_what_was_never_deprecated() -> None:
    current = _edit(RELEASED, "Customer", drop="phone")
    entry = "- `FIELD_REMOVED` `Customer.phone`: deprecated in 0.2.0."
    assert schema_contract.check(current, RELEASED, _changelog(entry)) == [
        "Customer.phone is not deprecated in the released schema: deprecate it "
        "(@deprecated) in a release before removing or changing it"
    ]


def test_an_entry_must_name_a_released_deprecation_and_be_well_formed() -> None:
    released = _edit(RELEASED, "Customer", deprecate="phone")
    current = _edit(RELEASED, "Customer", drop="phone")
    future = "- `FIELD_REMOVED` `Customer.phone`: deprecated in 0.3.0."
    problems = schema_contract.check(current, released, _changelog(future))
    assert problems == [
        "Customer.phone: deprecated in a version not released yet (the last release is "
        f"0.2.0): {future}"
    ]
    sloppy = "- Removed Customer.phone"
    problems = schema_contract.check(current, released, _changelog(sloppy))
    assert problems[0].startswith("CHANGELOG.md: not in the form") and len(problems) == 2


def test_a_stale_entry_fails() -> None:
    entry = "- `FIELD_REMOVED` `Customer.phone`: deprecated in 0.1.0."
    assert schema_contract.check(RELEASED, RELEASED, _changelog(entry)) == [
        "CHANGELOG.md lists a breaking change the schema does not make (stale or mistyped): "
        + entry
    ]


def test_additions_and_new_descriptions_are_not_breaking() -> None:
    current = RELEASED.replace(
        "type Customer implements Node {\n",
        'type Customer implements Node {\n  """Something new."""\n  loyaltyTier: String\n\n',
    )
    assert current != RELEASED
    assert schema_contract.check(current, RELEASED, _changelog()) == []


@pytest.mark.parametrize("listed", [False, True])
def test_check_schema_command(tmp_path: Path, listed: bool) -> None:
    released = tmp_path / "released.graphql"
    current = tmp_path / "schema.graphql"
    changelog = tmp_path / "CHANGELOG.md"
    released.write_text(_edit(RELEASED, "Customer", deprecate="phone"))
    current.write_text(_edit(RELEASED, "Customer", drop="phone"))
    entry = "- `FIELD_REMOVED` `Customer.phone`: deprecated in 0.1.0."
    changelog.write_text(_changelog(entry) if listed else _changelog())
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "crm_graphql.cli",
            "check-schema",
            "--schema",
            str(current),
            "--released",
            str(released),
            "--changelog",
            str(changelog),
        ],
        capture_output=True,
        text=True,
        cwd=support.ROOT,
    )
    assert run.returncode == (0 if listed else 1), run.stderr
    assert ("Field Customer.phone was removed" in run.stderr) is not listed
