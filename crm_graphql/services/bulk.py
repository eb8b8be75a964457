"""Bulk changes: one change (tags added or removed, an owner, a stage, custom fields,
archiving) applied to every record of a filter or segment: customers, companies, deals.

One mechanism, declared once; what differs between kinds of record is data, a ``Target``:
which list selects the set, which fields a change may set, which service validates and
writes one record, which permissions it takes. The set is the list's own
(``ListSpec.filtered``: workspace, read rule, the client's filter, a segment's
membership). ``preview`` counts it and shows its first records; ``apply_batch`` walks it by
id, a batch at a time (each batch its own transaction, so a job can report progress and
resume after the last id it finished), changing each record through the same service as
the single-record mutations (``updateCustomer`` / ``updateCompany`` / ``updateDeal`` and
``moveDeal``, the archives) in a savepoint of its own: validated, audited per record (the
target's action, e.g. ``bulkChangeDeals``), events and change-feed rows written as those
services write them. A record that fails keeps its values and is reported with its error;
the others go on.
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
from crm_graphql.models import CustomFieldEntity, User
from crm_graphql.services import companies, custom_fields, customers, deals, fields, privacy
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import DomainError, Duplicate, Invalid
from crm_graphql.services.policy import Action, authorize
from crm_graphql.storage import querying, records

BATCH_SIZE = 200
MAX_SAMPLE = 100
KEEP: Any = object()  # the owner is left as it is

Writer = Callable[[Actor, AsyncSession, uuid.UUID, dict[str, Any], str], Awaitable[Any]]
Archiver = Callable[[Actor, AsyncSession, uuid.UUID, str], Awaitable[Any]]
CustomFieldsOf = Callable[[Actor, AsyncSession, Any], dict[str, Any]]
SetCheck = Callable[[Actor, AsyncSession, Any, Any], Awaitable[Any]]


def _plain_custom_fields(actor: Actor, session: AsyncSession, row: Any) -> dict[str, Any]:
    return dict(row.custom_fields or {})


def _customer_custom_fields(actor: Actor, session: AsyncSession, row: Any) -> dict[str, Any]:
    # Sensitive values are sealed apart: merge over what the actor reads (as an update does).
    keyring = keyring_of(session) if row.custom_fields_encrypted else None
    return privacy.custom_fields_view(actor, keyring, row)


@dataclass(frozen=True)
class Target:
    """A kind of record bulk changes go over, as data."""

    entity: str  # the record's type name ("Customer")
    list: querying.ListSpec  # selects the set: the list's own statement
    action: str  # each record's audit action
    job_kind: str
    write: Action  # what editing fields takes (the single-record update's permission)
    archive: Action  # what archiving takes
    custom_field_entity: CustomFieldEntity
    settable: Mapping[str, str]  # field set to one value -> its name in errors ("ownerId")
    tags: bool  # whether the records have tags
    update: Writer  # validates and writes one record's fields, audited as the given action
    archive_one: Archiver
    custom_fields_of: CustomFieldsOf  # a record's custom fields as the actor reads them
    # Checks of a set field's value against the whole set, before anything changes
    # (a deal's stage: of the pipeline of every deal of the set).
    set_checks: Mapping[str, SetCheck] = field(default_factory=dict)

    @property
    def model(self) -> Any:
        return self.list.model


async def _write_customer(
    actor: Actor, session: AsyncSession, id: uuid.UUID, data: dict[str, Any], action: str
) -> Any:
    return await customers.update_customer(actor, session, id, data, action=action)


async def _archive_customer(actor: Actor, session: AsyncSession, id: uuid.UUID, action: str) -> Any:
    return await customers.archive_customer(actor, session, id, action=action)


async def _write_company(
    actor: Actor, session: AsyncSession, id: uuid.UUID, data: dict[str, Any], action: str
) -> Any:
    return await companies.update_company(actor, session, id, data, action=action)


async def _archive_company(actor: Actor, session: AsyncSession, id: uuid.UUID, action: str) -> Any:
    return await companies.archive_company(actor, session, id, action=action)


async def _write_deal(
    actor: Actor, session: AsyncSession, id: uuid.UUID, data: dict[str, Any], action: str
) -> Any:
    return await deals.change_deal(actor, session, id, data, action=action, move_action=action)


async def _archive_deal(actor: Actor, session: AsyncSession, id: uuid.UUID, action: str) -> Any:
    return await deals.archive_deal(actor, session, id, action=action)


async def _check_deal_stage(actor: Actor, session: AsyncSession, stage_id: Any, set: Any) -> Any:
    return await deals.check_stage_for_deals(actor, session, stage_id, set)


CUSTOMERS = Target(
    entity="Customer",
    list=customers.CUSTOMERS,
    action="bulkChangeCustomers",
    job_kind="bulk_change_customers",
    write=Action.WRITE_CUSTOMERS,
    archive=Action.ARCHIVE_CUSTOMERS,
    custom_field_entity=CustomFieldEntity.CUSTOMER,
    settable={"owner_id": "ownerId", "lifecycle_stage": "lifecycleStage"},
    tags=True,
    update=_write_customer,
    archive_one=_archive_customer,
    custom_fields_of=_customer_custom_fields,
)
COMPANIES = Target(
    entity="Company",
    list=companies.COMPANIES,
    action="bulkChangeCompanies",
    job_kind="bulk_change_companies",
    write=Action.WRITE_CUSTOMERS,
    archive=Action.ARCHIVE_CUSTOMERS,
    custom_field_entity=CustomFieldEntity.COMPANY,
    settable={"owner_id": "ownerId"},
    tags=True,
    update=_write_company,
    archive_one=_archive_company,
    custom_fields_of=_plain_custom_fields,
)
DEALS = Target(
    entity="Deal",
    list=deals.DEALS,
    action="bulkChangeDeals",
    job_kind="bulk_change_deals",
    write=Action.WRITE_DEALS,
    archive=Action.ARCHIVE_DEALS,
    custom_field_entity=CustomFieldEntity.DEAL,
    settable={"owner_id": "ownerId", "stage_id": "stageId"},
    tags=False,
    update=_write_deal,
    archive_one=_archive_deal,
    custom_fields_of=_plain_custom_fields,
    set_checks={"stage_id": _check_deal_stage},
)
TARGETS = (CUSTOMERS, COMPANIES, DEALS)
BY_JOB_KIND = {target.job_kind: target for target in TARGETS}

# The customers' names from before companies and deals had bulk changes.
ACTION = CUSTOMERS.action
JOB_KIND = CUSTOMERS.job_kind


@dataclass(frozen=True)
class BulkChange:
    """What a bulk action does to each record. ``values``: fields set to one value (an
    owner id, None to unassign; a lifecycle stage; a deal's stage), only those given."""

    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    custom_fields: Mapping[str, Any] | None = None  # merged over each record's own
    archive: bool = False

    @staticmethod
    def of(
        *,
        add_tags: Sequence[str] | None = None,
        remove_tags: Sequence[str] | None = None,
        owner_id: Any = KEEP,
        lifecycle_stage: Any = None,
        stage_id: Any = None,
        custom_fields: Mapping[str, Any] | None = None,
        archive: bool = False,
    ) -> BulkChange:
        """A validated change (``Invalid`` when it changes nothing)."""
        if custom_fields is not None and not isinstance(custom_fields, Mapping):
            raise Invalid("`customFields` must be a JSON object", "customFields")
        values: dict[str, Any] = {}
        if owner_id is not KEEP:
            values["owner_id"] = owner_id
        if lifecycle_stage is not None:
            values["lifecycle_stage"] = lifecycle_stage
        if stage_id is not None:
            values["stage_id"] = stage_id
        change = BulkChange(
            add_tags=tuple(fields.tags(list(add_tags or []), "addTags")),
            remove_tags=tuple(fields.tags(list(remove_tags or []), "removeTags")),
            values=values,
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
        return bool(self.add_tags or self.remove_tags or self.values or self.custom_fields)


def _authorize(actor: Actor, target: Target, change: BulkChange) -> None:
    """The permissions of the single-record writes the change makes."""
    if change.edits:
        authorize(actor, target.write)
    if change.archive:
        authorize(actor, target.archive)


def check_request(actor: Actor, target: Target, change: BulkChange, sample: int) -> None:
    """A preview's checks that read nothing: the sample's size, the permissions the change
    takes (before the set is even read) and the fields a change of the kind may set. They
    depend on the caller's role and scopes and on the request alone, so the compiled read
    path runs them when it plans (``compiled.bulk``)."""
    if not 0 <= sample <= MAX_SAMPLE:
        raise Invalid(f"`sample` is 0 to {MAX_SAMPLE}", "sample")
    _authorize(actor, target, change)
    if (change.add_tags or change.remove_tags) and not target.tags:
        raise Invalid(f"{target.entity} records have no tags", "addTags")
    for name in change.values:
        if name not in target.settable:
            head, *rest = name.split("_")
            field_name = head + "".join(part.title() for part in rest)
            raise Invalid(
                f"A bulk change cannot set `{field_name}` of {target.entity} records", field_name
            )


def references(change: BulkChange) -> list[tuple[type[Any], Any, str]]:
    """The rows the change's values name, each of which must be of the workspace
    (``records.ensure_in_workspace``): its owner (none when it unassigns)."""
    if change.values.get("owner_id") is not None:
        return [(User, change.values["owner_id"], "ownerId")]
    return []


def set_checks(target: Target, change: BulkChange) -> list[tuple[str, SetCheck]]:
    """The target's checks of a value against the whole set that this change's values
    call for (a deal's stage)."""
    return [(name, check) for name, check in target.set_checks.items() if name in change.values]


async def _check(
    actor: Actor, session: AsyncSession, target: Target, change: BulkChange, members: Any
) -> None:
    """The change's values valid for every record of the set (``members``), before any
    record changes: a bad value is refused as a whole, not record by record. (What reads
    nothing is ``check_request``.)"""
    await records.ensure_in_workspace(actor, session, references(change))
    for name, check in set_checks(target, change):
        await check(actor, session, change.values[name], members)
    if change.custom_fields:
        fields.json_value(dict(change.custom_fields), "customFields")
        definitions = await custom_fields.definitions_of(actor, session, target.custom_field_entity)
        if definitions.items:
            custom_fields.clean_given(definitions, change.custom_fields, stored={})


async def _members(
    actor: Actor, session: AsyncSession, target: Target, filter: Mapping[str, Any] | None
) -> Any:
    return await target.list.filtered(actor, session, filter)


@dataclass
class BulkPreview:
    count: int
    sample: list[Any]


async def preview(
    actor: Actor,
    session: AsyncSession,
    filter: Mapping[str, Any] | None,
    change: BulkChange,
    *,
    target: Target = CUSTOMERS,
    sample: int = 10,
) -> BulkPreview:
    """How many records ``change`` would touch and the first ``sample`` of them (in the
    list's order), after the same checks as the change itself (nothing changes)."""
    check_request(actor, target, change, sample)
    statement = await _members(actor, session, target, filter)
    await _check(actor, session, target, change, statement)
    model = target.model
    total = await session.scalar(
        select(func.count()).select_from(statement.with_only_columns(model.id).subquery())
    )
    keys = target.list.keys(None)
    rows = await session.scalars(statement.order_by(*querying.order_terms(keys)).limit(sample))
    return BulkPreview(int(total or 0), list(rows))


@dataclass(frozen=True)
class Failure:
    record_id: uuid.UUID
    error: DomainError


@dataclass
class BatchOutcome:
    """One batch: how many records changed, were already as asked, failed (with why),
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
    actor: Actor, session: AsyncSession, target: Target, record_id: uuid.UUID, change: BulkChange
) -> bool:
    """Apply ``change`` to one record (locked first, read as it is now); whether anything
    changed."""
    row = await records.get(actor, session, target.model, record_id, for_update=True)
    data: dict[str, Any] = {}
    if change.add_tags or change.remove_tags:
        tags = _tags(row.tags, change)
        if tags != list(row.tags):
            data["tags"] = tags
    for name, value in change.values.items():
        if value != getattr(row, name):
            data[name] = value
    if change.custom_fields:
        current = target.custom_fields_of(actor, session, row)
        merged = {**current, **change.custom_fields}
        if merged != current:
            data["custom_fields"] = merged
    changed = False
    if data:
        await target.update(actor, session, row.id, data, target.action)
        changed = True
    if change.archive and row.archived_at is None:
        await target.archive_one(actor, session, row.id, target.action)
        changed = True
    return changed


async def apply_batch(
    actor: Actor,
    session: AsyncSession,
    filter: Mapping[str, Any] | None,
    change: BulkChange,
    *,
    target: Target = CUSTOMERS,
    after: uuid.UUID | None = None,
    limit: int = BATCH_SIZE,
) -> BatchOutcome:
    """Change the next ``limit`` records of the set (by id, after ``after``), each in a
    savepoint of its own. The caller commits the batch."""
    # The values were checked against the whole set when the run started (``preview``);
    # a record that joined the set since and does not take them fails on its own.
    _authorize(actor, target, change)
    statement = await _members(actor, session, target, filter)
    model = target.model
    if after is not None:
        statement = statement.where(model.id > after)
    ids = list(
        await session.scalars(statement.with_only_columns(model.id).order_by(model.id).limit(limit))
    )
    outcome = BatchOutcome(last_id=ids[-1] if len(ids) == limit else None)
    for record_id in ids:
        try:
            async with session.begin_nested():
                if await _change_one(actor, session, target, record_id, change):
                    outcome.changed += 1
                else:
                    outcome.unchanged += 1
        except DomainError as error:
            outcome.failures.append(Failure(record_id, error))
        except IntegrityError:
            taken = Duplicate("Another record of this workspace has these values")
            outcome.failures.append(Failure(record_id, taken))
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
    target: Target = CUSTOMERS,
    batch_size: int = BATCH_SIZE,
    on_progress: Progress | None = None,
) -> BulkOutcome:
    """The whole set, batch after batch (a transaction each), ``on_progress`` told after
    every batch. What a job of the target's kind runs."""
    async with sessionmaker() as session, session.begin():
        total = (await preview(actor, session, filter, change, target=target, sample=0)).count
    outcome = BulkOutcome(total)
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session, session.begin():
            batch = await apply_batch(
                actor, session, filter, change, target=target, after=after, limit=batch_size
            )
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
