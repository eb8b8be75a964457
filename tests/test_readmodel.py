"""Relations and nested lists are declared once (``resolvers.readmodel``): the schema's
fields, their executed resolvers and the compiled path's catalogue all come from there."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, get_named_type

from crm_graphql.resolvers import readmodel
from crm_graphql.resolvers.readmodel import OBJECT_TYPES
from crm_graphql.schema import schema


def _node_type(field_type: Any) -> str | None:
    """The declared object type a field leads to: itself, a list of it or a connection."""
    named = get_named_type(field_type)
    if named.name in OBJECT_TYPES:
        return named.name
    if isinstance(named, GraphQLObjectType) and named.name.endswith("Connection"):
        return get_named_type(named.fields["nodes"].type).name
    return None


def _derived(type_name: str, field_name: str) -> bool:
    definition = schema.get_type_by_name(type_name)
    assert definition is not None
    field = next(
        f
        for f in definition.fields
        if f.graphql_name == field_name
        or schema.config.name_converter.get_graphql_name(f) == field_name
    )
    resolver = field.base_resolver
    if resolver is None:
        return False
    qualname = resolver.wrapped_func.__qualname__
    return resolver.wrapped_func.__module__ == readmodel.__name__ and (
        qualname.startswith(("relation_resolver.", "list_resolver."))
    )


def test_every_relation_and_nested_list_comes_from_the_read_model() -> None:
    found = []
    for name, declared in OBJECT_TYPES.items():
        gql = schema._schema.type_map[name]
        assert isinstance(gql, GraphQLObjectType)
        for field_name, field in gql.fields.items():
            if field_name in declared.computed:
                continue
            target = _node_type(field.type)
            if target is None:
                continue
            found.append((name, field_name))
            assert field_name in {**declared.relations, **declared.lists}, (name, field_name)
            assert _derived(name, field_name), (name, field_name)
    # Every declared entry is a field of the schema, of the declared target type.
    for name, declared in OBJECT_TYPES.items():
        gql = schema._schema.type_map[name]
        assert isinstance(gql, GraphQLObjectType)
        for field_name, relation in declared.relations.items():
            assert (name, field_name) in found
            assert get_named_type(gql.fields[field_name].type).name == relation.target
        for field_name, nested in declared.lists.items():
            assert (name, field_name) in found
            field_type = gql.fields[field_name].type
            assert _node_type(field_type) == nested.target
            unwrapped = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
            assert isinstance(unwrapped, GraphQLList) == nested.items
    assert len(found) == sum(len(d.relations) + len(d.lists) for d in OBJECT_TYPES.values())


def test_nested_lists_take_their_targets_own_filter_and_order() -> None:
    for name, declared in OBJECT_TYPES.items():
        gql = schema._schema.type_map[name]
        assert isinstance(gql, GraphQLObjectType)
        for field_name, nested in declared.lists.items():
            args = gql.fields[field_name].args
            if nested.items:
                assert args == {}
                continue
            assert set(args) == {"first", "after", "filter", "orderBy"}
            assert get_named_type(args["filter"].type).name == f"{nested.target}Filter"
            assert get_named_type(args["orderBy"].type).name == f"{nested.target}Order"
            assert all(arg.description for arg in args.values()), (name, field_name)
