"""Every read field is compiled, or executed by a decision that says why: a new root field,
or a new field of a read-model type, cannot fall back to the executed path unnoticed
(docs/decisions/0006-compiled-reads.md, "What stays executed").

The compiler says why it refuses a document (``Unsupported``); each field is probed with
a small document of its own, as an admin (who may read everything), and a refusal must
name the field itself, not something the probe happened to select."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    OperationDefinitionNode,
    Undefined,
    get_named_type,
    parse,
)

from crm_graphql.compiled.compiler import (
    EXECUTED_OBJECT_FIELDS,
    EXECUTED_ROOT_FIELDS,
    Compiler,
    Unsupported,
)
from crm_graphql.enums import Role
from crm_graphql.global_ids import to_global_id
from crm_graphql.resolvers.readmodel import OBJECT_TYPES
from crm_graphql.schema import schema
from crm_graphql.services.actor import Actor
from crm_graphql.settings import Settings

SETTINGS = Settings(env="test", secret_key="coverage-" + "x" * 40)
GSCHEMA = schema._schema
QUERY = GSCHEMA.query_type
assert QUERY is not None
DECISION = Path(__file__).resolve().parents[1] / "docs/decisions/0006-compiled-reads.md"
# Argument values the generic ones below would make invalid (an empty period).
ARGUMENTS = {("Query", "timeSeries", "to"): '"2026-02-01T00:00:00Z"'}
IDS = {"pipelineId": "Pipeline"}


def _literal(parent: str, field: str, name: str, gql_type: Any) -> str:
    if (parent, field, name) in ARGUMENTS:
        return ARGUMENTS[(parent, field, name)]
    if isinstance(gql_type, GraphQLNonNull):
        gql_type = gql_type.of_type
    if isinstance(gql_type, GraphQLList):
        return "[" + _literal(parent, field, name, gql_type.of_type) + "]"
    if isinstance(gql_type, GraphQLEnumType):
        return next(iter(gql_type.values))
    if isinstance(gql_type, GraphQLInputObjectType):
        required = [
            f"{key}: {_literal(parent, field, key, f.type)}"
            for key, f in gql_type.fields.items()
            if isinstance(f.type, GraphQLNonNull)
        ]
        return "{" + ", ".join(required) + "}"
    assert isinstance(gql_type, GraphQLScalarType)
    return {
        "ID": '"' + to_global_id(IDS.get(name, "Customer"), uuid.uuid4()) + '"',
        "Int": "1",
        "Float": "0.5",
        "Boolean": "true",
        "Date": '"2026-01-01"',
        "DateTime": '"2026-01-01T00:00:00Z"',
        "String": '"UTC"' if name.lower().endswith("zone") else '"a"',
    }.get(gql_type.name, '"a"')


def _required(definition: Any) -> bool:
    return isinstance(definition.type, GraphQLNonNull) and definition.default_value is Undefined


def _arguments(parent: str, name: str, field: Any) -> str:
    parts = [
        f"{key}: {_literal(parent, name, key, argument.type)}"
        for key, argument in field.args.items()
        if _required(argument)
    ]
    return f"({', '.join(parts)})" if parts else ""


def _selection(gql_type: Any) -> str:
    """The smallest selection of a type: its first leaf field without required arguments,
    else its first field, selected the same way."""
    named = get_named_type(gql_type)
    if isinstance(named, GraphQLScalarType | GraphQLEnumType):
        return ""
    if isinstance(named, GraphQLInterfaceType | GraphQLUnionType):
        return "{ __typename }"
    assert isinstance(named, GraphQLObjectType)
    for name, field in named.fields.items():
        leaf = isinstance(get_named_type(field.type), GraphQLScalarType | GraphQLEnumType)
        if leaf and not any(_required(a) for a in field.args.values()):
            return "{ " + name + " }"
    name, field = next(iter(named.fields.items()))
    return "{ " + name + _arguments(named.name, name, field) + " " + _selection(field.type) + " }"


def refusal(document: str) -> str | None:
    """Why the compiler refuses ``document`` as an admin (None: it compiles)."""
    parsed = parse(document)
    operation = next(d for d in parsed.definitions if isinstance(d, OperationDefinitionNode))
    actor = Actor(workspace_id=uuid.uuid4(), role=Role.ADMIN, user_id=uuid.uuid4())
    try:
        Compiler(schema, SETTINGS, actor, {}, {}).operation(operation)
    except Unsupported as reason:
        return str(reason)
    return None


def _root_probe(name: str) -> str:
    field = QUERY.fields[name]
    return "{ " + name + _arguments("Query", name, field) + " " + _selection(field.type) + " }"


def _object_probe(type_name: str, name: str) -> str:
    gql = GSCHEMA.type_map[type_name]
    assert isinstance(gql, GraphQLObjectType)
    field = gql.fields[name]
    inner = name + _arguments(type_name, name, field) + " " + _selection(field.type)
    node = to_global_id(type_name, uuid.uuid4())
    return f'{{ node(id: "{node}") {{ ... on {type_name} {{ {inner} }} }} }}'


@pytest.mark.parametrize("name", sorted(QUERY.fields))
def test_every_root_read_field_is_compiled_or_executed_by_decision(name: str) -> None:
    reason = refusal(_root_probe(name))
    if name not in EXECUTED_ROOT_FIELDS:
        assert reason is None, f"Query.{name} falls back ({reason}): compile it, or argue it"
    else:
        # Refused for being this field, not for what the probe selected under it.
        assert reason == f"Query.{name}", (name, reason, "compiled now? drop it from the list")


OBJECT_FIELDS = sorted(
    (type_name, name)
    for type_name in OBJECT_TYPES
    for name in GSCHEMA.type_map[type_name].fields  # type: ignore[attr-defined]
)


@pytest.mark.parametrize(("type_name", "name"), OBJECT_FIELDS)
def test_every_field_of_the_read_model_is_compiled_or_executed_by_decision(
    type_name: str, name: str
) -> None:
    reason = refusal(_object_probe(type_name, name))
    if (type_name, name) not in EXECUTED_OBJECT_FIELDS:
        assert reason is None, f"{type_name}.{name} falls back ({reason})"
    else:
        assert reason is not None and reason.startswith(
            (
                f"{type_name}.{name}",
                f"{get_named_type(GSCHEMA.type_map[type_name].fields[name].type).name}.",
            )  # type: ignore[attr-defined]
        ), (type_name, name, reason)


def test_the_executed_fields_exist_and_the_decision_names_them() -> None:
    decision = DECISION.read_text()
    for name in EXECUTED_ROOT_FIELDS:
        assert name in QUERY.fields, f"Query.{name} is gone: drop it from the list"
        assert f"`{name}`" in decision, f"decision 0006 does not argue `{name}`"
    for type_name, name in EXECUTED_OBJECT_FIELDS:
        assert name in GSCHEMA.type_map[type_name].fields  # type: ignore[attr-defined]
        assert f"`{type_name}.{name}`" in decision, f"decision 0006 does not argue it: {name}"
