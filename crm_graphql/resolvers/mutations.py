"""Running a mutation: one transaction, domain errors as ``UserError`` values."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from asyncpg.exceptions import ForeignKeyViolationError, UniqueViolationError
from graphql import GraphQLError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from crm_graphql import ratelimit
from crm_graphql.global_ids import decode_id
from crm_graphql.resolvers.info import Info
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, DomainError, Duplicate, Invalid, NotFound
from crm_graphql.storage.records import MAX_UPSERT_RECORDS, Upserted

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Outcome(Generic[T]):
    """A mutation's result: the value, or the errors that stopped it (never both)."""

    value: T | None = None
    errors: list[DomainError] = field(default_factory=list)


def _integrity_error(exc: IntegrityError) -> DomainError:
    cause = getattr(exc.orig, "__cause__", None)
    if isinstance(cause, UniqueViolationError):
        return Duplicate("A record with these values already exists")
    if isinstance(cause, ForeignKeyViolationError):
        return NotFound("A referenced record does not exist")
    return Invalid("The change breaks a data rule")


async def mutate(
    info: Info,
    action: Callable[[Actor, AsyncSession], Awaitable[T]],
) -> Outcome[T]:
    """Run ``action`` in its own transaction. Any domain error rolls everything back, so a
    failed mutation leaves nothing half-written."""
    context = info.context
    actor = context.require_actor()
    try:
        async with context.unit_of_work() as session:
            value = await action(actor, session)
    except DomainError as error:
        return Outcome(errors=[error])
    except StaleDataError:
        return Outcome(errors=[Conflict("The record was changed concurrently; reload and retry")])
    except IntegrityError as exc:
        log.info("integrity error in mutation: %s", exc.orig)
        return Outcome(errors=[_integrity_error(exc)])
    return Outcome(value=value)


@dataclass(frozen=True)
class UserErrorValue:
    """What ``UserError`` reads. Not the exception itself: graphql-core raises any
    exception object it finds among the results."""

    code: str
    field: str | None
    message: str


def user_errors(errors: list[DomainError]) -> list[UserErrorValue]:
    return [UserErrorValue(e.code, e.field, e.message) for e in errors]


class Payload:
    """What a ``<Entity>Payload`` type reads: the entity under its field name and errors."""

    def __init__(self, name: str, outcome: Outcome[Any]) -> None:
        setattr(self, name, outcome.value)
        self.errors = user_errors(outcome.errors)


async def mutate_payload(
    info: Info, name: str, action: Callable[[Actor, AsyncSession], Awaitable[Any]]
) -> Payload:
    """``mutate`` and wrap the outcome as the payload field ``name`` expects."""
    return Payload(name, await mutate(info, action))


Changes = Callable[[Any], dict[str, Any]]


async def create_payload(
    info: Info, name: str, create: Callable[..., Awaitable[Any]], input: Any, changes: Changes
) -> Payload:
    """``create<X>``: the input's fields through ``changes`` (inside the transaction, so
    a bad ID in them is a payload error) to the service's create function."""
    return await mutate_payload(info, name, lambda actor, s: create(actor, s, changes(input)))


async def update_payload(
    info: Info,
    name: str,
    type_name: str,
    update: Callable[..., Awaitable[Any]],
    input: Any,
    changes: Changes | None = None,
) -> Payload:
    """``update<X>``: the sent fields and ``expectedVersion`` to the service."""
    from crm_graphql.resolvers.arguments import input_changes

    id = decode_id(input.id, type_name)
    to_changes = changes or input_changes
    return await mutate_payload(
        info,
        name,
        lambda actor, s: update(
            actor, s, id, to_changes(input), expected_version=input.expected_version
        ),
    )


async def archive_payload(
    info: Info, name: str, type_name: str, archive: Callable[..., Awaitable[Any]], input: Any
) -> Payload:
    """``archive<X>``: the ID and ``expectedVersion`` to the service."""
    id = decode_id(input.id, type_name)
    return await mutate_payload(
        info, name, lambda actor, s: archive(actor, s, id, expected_version=input.expected_version)
    )


class UpsertResultValue:
    """What an ``Upsert<X>Result`` type reads: the row under its field name."""

    def __init__(self, name: str, index: int, upserted: Upserted[Any]) -> None:
        setattr(self, name, upserted.row)
        self.index = index
        self.created = upserted.created
        self.errors = user_errors(upserted.errors)


@dataclass
class UpsertPayload:
    """What an ``Upsert<X>sPayload`` type reads."""

    results: list[UpsertResultValue]
    created: int
    updated: int
    failed: int
    errors: list[UserErrorValue]


def _upsert_record(changes: Changes, input: Any) -> dict[str, Any] | DomainError:
    """A record's fields, or the error its IDs give (that record fails, not the call)."""
    try:
        return changes(input)
    except DomainError as error:
        return error


async def upsert_payload(
    info: Info,
    name: str,
    inputs: Sequence[Any],
    changes: Changes,
    upsert: Callable[[Actor, AsyncSession, list[Any]], Awaitable[list[Upserted[Any]]]],
) -> UpsertPayload:
    """``upsert<X>s``: the records through ``changes`` to the service's batch upsert, in
    one transaction (a savepoint per record), counted against the caller's rate limit by
    records: the request counted one, the other records count here before anything runs."""
    context = info.context
    actor = context.require_actor()
    batch = [_upsert_record(changes, i) for i in inputs]
    bucket = ratelimit.actor_bucket(actor, context.client_ip, context.app.settings)
    if bucket is not None and len(batch) > bucket.limit:
        # No wait would let it through: say so rather than "retry in N s" forever.
        too_many = Invalid(
            f"At most {bucket.limit} records a call for this caller (its rate limit a minute)",
            "records",
        )
        return UpsertPayload([], 0, 0, 0, user_errors([too_many]))
    if bucket is not None and 1 < len(batch) <= MAX_UPSERT_RECORDS:
        decision = await context.app.limiter.hit(bucket, len(batch) - 1)
        if not decision.allowed:
            limited = ratelimit.RateLimited(
                decision.retry_after,
                f"Rate limit of {bucket.limit} records a minute exceeded by {len(batch)} "
                f"records; retry in {decision.retry_after} s",
            )
            raise GraphQLError(
                limited.message,
                extensions={"code": limited.code, "retryAfter": decision.retry_after},
            )
    outcome = await mutate(info, lambda actor, s: upsert(actor, s, batch))
    results = [UpsertResultValue(name, i, r) for i, r in enumerate(outcome.value or [])]
    done = [r for r in outcome.value or [] if r.row is not None]
    return UpsertPayload(
        results=results,
        created=sum(1 for r in done if r.created),
        updated=sum(1 for r in done if not r.created),
        failed=len(results) - len(done),
        errors=user_errors(outcome.errors),
    )
