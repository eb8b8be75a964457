"""The change feed in GraphQL: ``changes`` for partners who pull rather than receive
webhooks (docs/decisions/0032)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from crm_graphql.resolvers import sync as resolve
from crm_graphql.schema.relay import Node
from crm_graphql.schema.scalars import ChangeKind, SyncedType


@strawberry.type(description="One create, update, archive or erase of one object.")
class Change:
    cursor: str = strawberry.field(
        description="Pass as `after` to read the changes after this one."
    )
    node_id: strawberry.ID = strawberry.field(
        description="The changed object's global ID (what `node(id:)` takes)."
    )
    type: SyncedType = strawberry.field(description="The changed object's type.")
    kind: ChangeKind = strawberry.field(description="What the change did.")
    fields: list[str] = strawberry.field(
        description="The object's fields the change set, by their names in this API (for a "
        "creation, those given a value); never their values: read the object for those."
    )
    at: datetime = strawberry.field(
        description="When the change was written (its transaction's start). Changes are in "
        "commit order, which this time need not follow."
    )

    node = strawberry.field(
        resolver=resolve.node,
        graphql_type=Node | None,
        description="The object as it is now (null when the caller may no longer see it).",
    )


@strawberry.type(description="A page of changes and where to resume.")
class ChangePage:
    changes: list[Change] = strawberry.field(description="In commit order.")
    cursor: str = strawberry.field(
        description="Pass as `after` next time: after the last change of the page, or, "
        "when `hasMore` is false, past every change committed so far that this query "
        "could return. Keep it with your copy of the data."
    )
    has_more: bool = strawberry.field(
        description="More changes are ready now: read again with `cursor` at once. When "
        "false, poll again later."
    )


@strawberry.type
class SyncQuery:
    changes = strawberry.field(
        resolver=resolve.changes,
        graphql_type=ChangePage,
        description="Every create, update, archive and erase of customers, companies, "
        "deals, pipelines, stages, activities, orders, products, conversations and "
        "messages, in commit order, after the cursor `after` (from the start when null): "
        "read with the returned `cursor` again and again, and no change is ever skipped "
        "or repeated, whatever writes concurrently. Only what the caller may read: types "
        "it may not read are left out (FORBIDDEN when named in `types`), private "
        "conversations and their messages only for those who may see them. `first`: up "
        "to the largest page size (the default).",
    )
