"""Running a mutation: one transaction, domain errors as ``UserError`` values."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from asyncpg.exceptions import ForeignKeyViolationError, UniqueViolationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from crm_graphql.resolvers.ids import decode_id
from crm_graphql.resolvers.info import Info
from crm_graphql.services.actor import Actor
from crm_graphql.services.errors import Conflict, DomainError, Duplicate, Invalid, NotFound

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
