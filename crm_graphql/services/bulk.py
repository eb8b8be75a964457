"""Bulk changes of customers: one change (tags added or removed, an owner, a lifecycle
stage, custom fields, archiving) applied to every customer of a filter or segment.

The set is the customers list's own (``CUSTOMERS.filtered``: workspace, read rule, the
client's filter, a segment's membership). ``preview`` counts it and shows its first
customers; ``apply_batch`` walks it by id, a batch at a time (each batch its own
transaction, so a job can report progress and resume after the last id it finished),
changing each customer through the same service as ``updateCustomer`` /
``archiveCustomer`` in a savepoint of its own: validated, audited per record (action
``bulkChangeCustomers``), its change-feed rows written by the usual triggers. A customer
that fails keeps its values and is reported with its error; the others go on.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.crypto import keyring_of
from crm_graphql.models import Customer, User
from crm_graphql.services import customers, fields, privacy
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError, Duplicate, Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

ACTION = "bulkChangeCustomers"
JOB_KIND = "bulk_change_customers"
BATCH_SIZE = 200
MAX_SAMPLE = 100
KEEP: Any = object()  # the owner is left as it is


@dataclass(frozen=True)
class BulkChange:
    """What a bulk action does to each customer. ``owner_id``: ``KEEP`` (default) leaves
    the owner, None unassigns, an id assigns."""

    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    owner_id: Any = KEEP
    lifecycle_stage: Any = None
    custom_fields: Mapping[str, Any] | None = None  # merged over each customer's own
    archive: bool = False

    @staticmethod
    def of(
        *,
        add_tags: Sequence[str] | None = None,
        remove_tags: Sequence[str] | None = None,
        owner_id: Any = KEEP,
        lifecycle_stage: Any = None,
        custom_fields: Mapping[str, Any] | None = None,
        archive: bool = False,
    ) -> BulkChange:
        """A validated change (``Invalid`` when it changes nothing)."""
        if custom_fields is not None and not isinstance(custom_fields, Mapping):
            raise Invalid("`customFields` must be a JSON object", "customFields")
        change = BulkChange(
            add_tags=tuple(fields.tags(list(add_tags or []), "addTags")),
            remove_tags=tuple(fields.tags(list(remove_tags or []), "removeTags")),
            owner_id=owner_id,
            lifecycle_stage=lifecycle_stage,
            custom_fields=dict(custom_fields) if custom_fields is not None else None,
            archive=archive,
        )
        if set(change.add_tags) & set(change.remove_tags):
            raise Invalid("A tag cannot be both added and removed", "removeTags")
        if not change.changes_anything:
            raise Invalid("Say what to change: tags, owner, stage, custom fields or archive")
        return change

    @property
    def changes_anything(self) -> bool:
        return self.edits or self.archive

    @property
    def edits(self) -> bool:
        """Whether it changes fields (more than archiving)."""
        return bool(
            self.add_tags
            or self.remove_tags
            or self.owner_id is not KEEP
            or self.lifecycle_stage is not None
            or self.custom_fields
        )


async def _check(actor: Actor, session: AsyncSession, change: BulkChange) -> None:
    """The permissions the change needs, and its owner in the workspace."""
    if change.edits:
        authorize(actor, Action.WRITE_CUSTOMERS)
    if change.archive:
        authorize(actor, Action.ARCHIVE_CUSTOMERS)
    if change.owner_id is not KEEP:
        await records.ensure_in_workspace(actor, session, [(User, change.owner_id, "ownerId")])


async def _members(actor: Actor, session: AsyncSession, filter: Mapping[str, Any] | None) -> Any:
    return await customers.CUSTOMERS.filtered(actor, session, filter)


@dataclass
class BulkPreview:
    count: int
    sample: list[Customer]


async def preview(
    actor: Actor,
    session: AsyncSession,
    filter: Mapping[str, Any] | None,
    change: BulkChange,
    *,
    sample: int = 10,
) -> BulkPreview:
    """How many customers ``change`` would touch and the first ``sample`` of them (in the
    list's order), after the same permission checks as the change itself."""
    await _check(actor, session, change)
    if not 0 <= sample <= MAX_SAMPLE:
        raise Invalid(f"`sample` is 0 to {MAX_SAMPLE}", "sample")
    statement = await _members(actor, session, filter)
    total = await session.scalar(
        select(func.count()).select_from(statement.with_only_columns(Customer.id).subquery())
    )
    keys = customers.CUSTOMERS.keys(None)
    rows = await session.scalars(statement.order_by(*querying.order_terms(keys)).limit(sample))
    return BulkPreview(int(total or 0), list(rows))


@dataclass(frozen=True)
class Failure:
    customer_id: uuid.UUID
    error: DomainError


@dataclass
class BatchOutcome:
    """One batch: how many customers changed, were already as asked, failed (with why),
    and the id to resume after (None: the set is done)."""

    changed: int = 0
    unchanged: int = 0
    failures: list[Failure] = field(default_factory=list)
    last_id: uuid.UUID | None = None

    @property
    def done(self) -> int:
        return self.changed + self.unchanged + len(self.failures)


def _tags(current: Sequence[str], change: BulkChange) -> list[str]:
    kept = [t for t in current if t not in change.remove_tags]
    return list(dict.fromkeys([*kept, *change.add_tags]))


async def _change_one(
    actor: Actor, session: AsyncSession, customer_id: uuid.UUID, change: BulkChange
) -> bool:
    """Apply ``change`` to one customer (locked first, read as it is now); whether
    anything changed."""
    customer = await records.get(actor, session, Customer, customer_id, for_update=True)
    data: dict[str, Any] = {}
    if change.add_tags or change.remove_tags:
        tags = _tags(customer.tags, change)
        if tags != list(customer.tags):
            data["tags"] = tags
    if change.owner_id is not KEEP and change.owner_id != customer.owner_id:
        data["owner_id"] = change.owner_id
    if change.lifecycle_stage is not None and change.lifecycle_stage != customer.lifecycle_stage:
        data["lifecycle_stage"] = change.lifecycle_stage
    if change.custom_fields:
        sealed = customer.custom_fields_encrypted
        keyring = keyring_of(session) if sealed else None
        current = privacy.custom_fields_view(actor, keyring, customer)
        merged = {**current, **change.custom_fields}
        if merged != current:
            data["custom_fields"] = merged
    changed = False
    if data:
        await customers.update_customer(actor, session, customer.id, data, action=ACTION)
        changed = True
    if change.archive and customer.archived_at is None:
        await customers.archive_customer(actor, session, customer.id, action=ACTION)
        changed = True
    return changed


async def apply_batch(
    actor: Actor,
    session: AsyncSession,
    filter: Mapping[str, Any] | None,
    change: BulkChange,
    *,
    after: uuid.UUID | None = None,
    limit: int = BATCH_SIZE,
) -> BatchOutcome:
    """Change the next ``limit`` customers of the set (by id, after ``after``), each in a
    savepoint of its own. The caller commits the batch."""
    await _check(actor, session, change)
    statement = await _members(actor, session, filter)
    if after is not None:
        statement = statement.where(Customer.id > after)
    ids = list(
        await session.scalars(
            statement.with_only_columns(Customer.id).order_by(Customer.id).limit(limit)
        )
    )
    outcome = BatchOutcome(last_id=ids[-1] if len(ids) == limit else None)
    for customer_id in ids:
        try:
            async with session.begin_nested():
                if await _change_one(actor, session, customer_id, change):
                    outcome.changed += 1
                else:
                    outcome.unchanged += 1
        except DomainError as error:
            outcome.failures.append(Failure(customer_id, error))
        except IntegrityError:
            taken = Duplicate("Another record of this workspace has these values")
            outcome.failures.append(Failure(customer_id, taken))
    return outcome


@dataclass
class BulkOutcome:
    total: int
    changed: int = 0
    unchanged: int = 0
    failures: list[Failure] = field(default_factory=list)
    finished_at: datetime | None = None

    @property
    def done(self) -> int:
        return self.changed + self.unchanged + len(self.failures)


Progress = Callable[[BulkOutcome], Awaitable[None]]


async def run(
    actor: Actor,
    sessionmaker: async_sessionmaker[AsyncSession],
    filter: Mapping[str, Any] | None,
    change: BulkChange,
    *,
    batch_size: int = BATCH_SIZE,
    on_progress: Progress | None = None,
) -> BulkOutcome:
    """The whole set, batch after batch (a transaction each), ``on_progress`` told after
    every batch. What a job of kind ``bulk_change_customers`` runs."""
    async with sessionmaker() as session, session.begin():
        total = (await preview(actor, session, filter, change, sample=0)).count
    outcome = BulkOutcome(total)
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session, session.begin():
            batch = await apply_batch(actor, session, filter, change, after=after, limit=batch_size)
        outcome.changed += batch.changed
        outcome.unchanged += batch.unchanged
        outcome.failures.extend(batch.failures)
        if on_progress is not None:
            await on_progress(outcome)
        if batch.last_id is None:
            break
        after = batch.last_id
    outcome.finished_at = datetime.now(UTC)
    return outcome
