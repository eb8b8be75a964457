"""Descriptions the schema derives instead of repeating them (decision 0030).

A list's filter, order and group-by inputs, and a mutation's create and update inputs, are
about the fields of one object type: ``CustomerFilter.email``, ``CustomerOrderField.EMAIL``,
``CustomerGroupField.OWNER`` and ``CreateCustomerInput.email`` mean ``Customer.email`` (or
the relation ``Customer.owner``), so their descriptions come from that field's, written once
on the object type. Paging and ordering arguments mean the same on every connection, and an
``input`` or ``filter`` argument is what its input type says it is. Everything else is
described where it is declared; a description written there always wins over a derived one.

``describe_schema`` fills the derived descriptions in before the schema serves or prints
anything, so introspection, the explorer and ``schema.graphql`` all carry them.
``tests/test_schema_contract.py`` fails when any argument, input field, enum value or field
is left without a description.
"""

from __future__ import annotations

import re

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
)

# Arguments of every connection (a field whose type is a ``...Connection``).
CONNECTION_ARGUMENTS = {
    "first": "How many items to return from the start, 0 to the maximum page size (the "
    "default page size when neither `first` nor `last` is given). Goes with `after`.",
    "after": "Return the items after this cursor (`pageInfo.endCursor` of the previous page, "
    "or an edge's `cursor`).",
    "last": "How many items to return from the end, 0 to the maximum page size, for paging "
    "backwards; not together with `first`. Goes with `before`.",
    "before": "Return the items before this cursor (`pageInfo.startCursor` of the page after).",
    "orderBy": "Sort keys, the first deciding first; the ID breaks ties, so pages never "
    "overlap or skip. The list's own order when left out.",
}

# Arguments that mean the same wherever they appear.
SHARED_ARGUMENTS = {
    "includeArchived": "Also count or return archived records (left out by default).",
}

# The combinators of every list's filter input.
FILTER_COMBINATORS = {
    "and": "Every one of these conditions holds.",
    "or": "At least one of these conditions holds.",
    "not": "This condition does not hold.",
}

# Fields of every sort key (``<T>Order``) and grouping dimension (``<T>GroupBy``).
ORDER_FIELDS = {
    "field": "The field to sort by.",
    "direction": "Which way to sort by this key.",
}
GROUP_BY_FIELDS = {
    "field": "The dimension to group by.",
    "interval": "The length of the buckets: required for a time field, refused for any other.",
}

# Fields of every update and archive input.
CHANGE_FIELDS = {
    "expectedVersion": "The `version` the change was based on: when the record's differs, "
    "nothing changes and the answer is a CONFLICT error. Left out: no check.",
}

_PREFIXES = ("Create", "Update", "Archive")
_SUFFIXES = ("Filter", "Order", "OrderField", "GroupBy", "GroupField", "Input")


def describe_schema(schema: GraphQLSchema) -> None:
    """Fill in the derived descriptions of ``schema``'s arguments, input fields and enum
    values where their declaration gives none."""
    types = schema.type_map
    for name, type_ in types.items():
        if name.startswith("__"):
            continue
        subject = _subject(name, types)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for field in type_.fields.values():
                _describe_arguments(field)
        elif isinstance(type_, GraphQLInputObjectType):
            _describe_input_fields(type_, subject)
        elif isinstance(type_, GraphQLEnumType) and subject is not None:
            verb = "Order by" if name.endswith("OrderField") else "Group by"
            for value_name, value in type_.values.items():
                if value.description is None:
                    value.description = _about(subject, _camel(value_name), verb)


def _describe_arguments(field: GraphQLField) -> None:
    is_connection = get_named_type(field.type).name.endswith("Connection")
    for arg_name, argument in field.args.items():
        if argument.description is not None:
            continue
        if is_connection and arg_name in CONNECTION_ARGUMENTS:
            argument.description = CONNECTION_ARGUMENTS[arg_name]
        elif arg_name in SHARED_ARGUMENTS:
            argument.description = SHARED_ARGUMENTS[arg_name]
        elif arg_name in ("input", "filter"):
            argument.description = _type_description(argument)


def _describe_input_fields(
    type_: GraphQLInputObjectType, subject: GraphQLObjectType | None
) -> None:
    name = type_.name
    for field_name, field in type_.fields.items():
        if field.description is not None:
            continue
        if name.endswith("Filter") and field_name in FILTER_COMBINATORS:
            field.description = FILTER_COMBINATORS[field_name]
        elif name.endswith("Order") and field_name in ORDER_FIELDS:
            field.description = ORDER_FIELDS[field_name]
        elif name.endswith("GroupBy") and field_name in GROUP_BY_FIELDS:
            field.description = GROUP_BY_FIELDS[field_name]
        elif field_name in CHANGE_FIELDS:
            field.description = CHANGE_FIELDS[field_name]
        elif field_name == "id" and subject is not None and name.startswith(_PREFIXES):
            field.description = f"The {_words(subject.name)} to {_verb(name)}."
        elif subject is not None:
            verb = "Conditions on" if name.endswith("Filter") else None
            field.description = _about(subject, field_name, verb)


def _subject(name: str, types: dict[str, GraphQLNamedType]) -> GraphQLObjectType | None:
    """The object type an input or enum named ``[Create|Update|Archive]<T><suffix>`` is
    about, when ``<T>`` is one."""
    stem = name
    for prefix in _PREFIXES:
        if stem.startswith(prefix) and stem != prefix + "Input":
            stem = stem.removeprefix(prefix)
            break
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if stem.endswith(suffix):
            found = types.get(stem.removesuffix(suffix))
            return found if isinstance(found, GraphQLObjectType) else None
    return None


def _about(subject: GraphQLObjectType, field_name: str, verb: str | None) -> str | None:
    """What ``subject``'s field (or, for ``xId``, its relation ``x``) says, led by ``verb``
    (``Conditions on `email`: Email, unique in the workspace.``); None when there is no
    such field or it is undescribed."""
    relation = field_name.removesuffix("Id") if field_name.endswith("Id") else None
    field = subject.fields.get(field_name) or (relation and subject.fields.get(relation))
    if not field or not field.description:
        return None
    if relation and field_name not in subject.fields:
        target = f"the ID of `{relation}`"
        return (
            f"{verb} {target}: {field.description}"
            if verb
            else (f"ID of `{relation}`: {field.description}")
        )
    return f"{verb} `{field_name}`: {field.description}" if verb else field.description


def _type_description(argument: GraphQLArgument | GraphQLInputField) -> str | None:
    return get_named_type(argument.type).description


def _verb(input_name: str) -> str:
    return "change" if input_name.startswith("Update") else "archive"


def _camel(value_name: str) -> str:
    head, *rest = value_name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def _words(type_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", type_name).lower()
