"""Relay building blocks: the Node interface, connections, page info, user errors."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.types import Info
from strawberry.utils.str_converters import to_snake_case

from crm_graphql.global_ids import to_global_id
from crm_graphql.resolvers import readmodel

T = TypeVar("T")
C = TypeVar("C")


@strawberry.interface(description="An object with an opaque, globally unique ID.")
class Node:
    @strawberry.field(description="Opaque global ID; pass it to `node(id:)` to refetch.")
    def id(self, info: Info) -> strawberry.ID:
        return strawberry.ID(to_global_id(type(self).__name__, self.id))


@strawberry.type(description="Where a page sits in its list.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="More items follow this page (pass `endCursor` as `after` to get them)."
    )
    has_previous_page: bool = strawberry.field(
        description="Items come before this page (pass `startCursor` as `before` to get them)."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the page's first item (null for an empty page)."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of the page's last item (null for an empty page)."
    )


@strawberry.type(description="A node and the cursor that points at it.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(
        description="Points at this item: pass it as `after` or `before` to page from here."
    )
    node: T = strawberry.field(description="The item.")


@strawberry.type(description="A page of a list, paged by keyset cursors.")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The page's items with their cursors.")
    nodes: list[T] = strawberry.field(description="The page's items, without cursors.")
    page_info: PageInfo = strawberry.field(description="Cursors and whether more pages exist.")
    total_count: int = strawberry.field(
        description="Number of items in the whole list (computed only when asked)."
    )


@strawberry.enum(description="Sort direction.")
class OrderDirection(enum.Enum):
    ASC = strawberry.enum_value("asc", description="Smallest, earliest or A first.")
    DESC = strawberry.enum_value("desc", description="Largest, latest or Z first.")


@strawberry.type(description="Why a mutation did not happen, in terms a client can act on.")
class UserError:
    code: str = strawberry.field(
        description="VALIDATION, NOT_FOUND, DUPLICATE, CONFLICT, FORBIDDEN, UNAUTHENTICATED "
        "or INVALID_CREDENTIALS."
    )
    field: str | None = strawberry.field(description="The input field at fault, if one is.")
    message: str = strawberry.field(description="A sentence for humans.")


def upserts_of(value_class: type) -> Any:
    """``is_type_of`` for the types implementing the upsert interfaces, whose values are
    the resolvers' (``resolvers.mutations.UpsertPayload`` / ``UpsertResultValue``)."""

    def is_type_of(cls: type, obj: Any, info: Any) -> bool:
        return isinstance(obj, value_class)

    return classmethod(is_type_of)


@strawberry.interface(description="What became of one record of a batch upsert.")
class UpsertRecordResult:
    index: int = strawberry.field(description="The record's position in `records`, from 0.")
    created: bool = strawberry.field(description="Created (true) or updated (false).")
    errors: list[UserError] = strawberry.field(
        description="Why the record failed (it changed nothing); `field` names its field."
    )


@strawberry.interface(description="The counts and errors of a batch upsert.")
class UpsertSummary:
    created: int = strawberry.field(description="How many records created a row.")
    updated: int = strawberry.field(description="How many records updated one.")
    failed: int = strawberry.field(description="How many records failed.")
    errors: list[UserError] = strawberry.field(
        description="Why nothing was done at all (permission, too many records)."
    )


def read_model(type_name: str) -> Callable[[type[C]], type[C]]:
    """Gives the class (under its ``@strawberry.type``) every relation and nested list the
    read model declares for ``type_name`` (``resolvers.readmodel.OBJECT_TYPES``): adding
    one there adds the field to the schema, its resolver and the compiled path's
    knowledge of it."""

    def add_fields(cls: type[C]) -> type[C]:
        object_type = readmodel.OBJECT_TYPES[type_name]
        for name in (*object_type.relations, *object_type.lists):
            setattr(cls, to_snake_case(name), declared(type_name, name))
        return cls

    return add_fields


def declared(type_name: str, name: str) -> Any:
    """The relation or nested list ``name`` of ``type_name`` as the read model declares it
    (``resolvers.readmodel.OBJECT_TYPES``): its GraphQL type, arguments, description and
    resolver are derived from that one entry, which the compiled path reads too."""
    object_type = readmodel.OBJECT_TYPES[type_name]
    relation = object_type.relations.get(name)
    if relation is not None:
        return strawberry.field(
            resolver=readmodel.relation_resolver(relation),
            graphql_type=readmodel.lazy_type(relation.target) | None,
            description=relation.description,
        )
    nested = object_type.lists[name]
    target = readmodel.lazy_type(nested.target)
    return strawberry.field(
        resolver=readmodel.list_resolver(nested),
        graphql_type=readmodel.generic(list if nested.items else Connection, target),
        description=nested.description,
    )


def declared_event(type_name: str, name: str) -> Any:
    """The row ``name`` of the live event type ``type_name`` as the read model declares it
    (``resolvers.readmodel.EVENT_TYPES``): its GraphQL type, description and resolver, and
    the compiled rendering of events, are derived from that one entry."""
    relation = readmodel.EVENT_TYPES[type_name][name]
    return strawberry.field(
        resolver=readmodel.event_relation_resolver(relation),
        graphql_type=readmodel.lazy_type(relation.target) | None,
        description=relation.description,
    )
