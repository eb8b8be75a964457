"""Exports of a list (customers, companies, deals) to CSV or JSON Lines, streamed.

A list export reads the same rows as the list (``ListSpec.filtered``: workspace, the
model's read rule, the client's filter, a segment's membership) through a server-side
cursor, ``CHUNK_ROWS`` rows at a time, and encodes each chunk as it comes: memory stays
flat whatever the number of rows. What it shows of a row is what the API shows the
same caller: global IDs, enum names, sensitive custom fields null for callers who may not
read them; custom fields only where their definition is marked ``exportable``.

A download link is a signed, expiring token (``sign_link`` / ``open_link``) that names
its creator, not a copy of their rights: the download rebuilds the creator's actor from
the database (``creator_actor``), so a disabled user or a revoked key gets nothing.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.crypto import keyring_of
from crm_graphql.global_ids import to_global_id
from crm_graphql.models import Company, Customer, CustomFieldEntity, Deal
from crm_graphql.services import audit, credentials, custom_fields, privacy
from crm_graphql.services.actor import Actor
from crm_graphql.services.companies import COMPANIES
from crm_graphql.services.customers import CUSTOMERS
from crm_graphql.services.deals import DEALS
from crm_graphql.services.errors import DomainError, Invalid
from crm_graphql.services.policy import authorize_read
from crm_graphql.storage import querying

FORMATS = ("csv", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
CHUNK_ROWS = 1000  # rows a round trip of the cursor brings, and a chunk of the response
LINK_TTL_SECONDS = 15 * 60
MAX_LINK_TTL_SECONDS = 24 * 3600
CUSTOM_FIELDS = "customFields"
ACTION = "export"  # the audit action of a download or a CLI export


# -------------------------------------------------------------------------- columns


def _text(value: Any) -> Any:
    return value


def _time(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def _enum(value: Any) -> str | None:
    return None if value is None else str(value.name)


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _global(type_name: str) -> Callable[[Any], str | None]:
    def render(value: uuid.UUID | None) -> str | None:
        return None if value is None else to_global_id(type_name, value)

    return render


@dataclass(frozen=True)
class Column:
    """One exported field: its API name, the column it reads and how a value is shown
    (as the API shows it)."""

    name: str
    column: Any
    render: Callable[[Any], Any] = _text


@dataclass(frozen=True)
class ExportKind:
    """What an export of one list reads: the list, its columns, its custom fields."""

    name: str  # the API's list name: customers, companies, deals
    spec: querying.ListSpec[Any]
    columns: tuple[Column, ...]
    entity: CustomFieldEntity

    @property
    def model(self) -> Any:
        return self.spec.model

    @property
    def type_name(self) -> str:
        return str(self.spec.model.__name__)


def _common(model: Any) -> tuple[Column, ...]:
    return (
        Column("createdAt", model.created_at, _time),
        Column("updatedAt", model.updated_at, _time),
        Column("archivedAt", model.archived_at, _time),
    )


KINDS: dict[str, ExportKind] = {
    "customers": ExportKind(
        "customers",
        CUSTOMERS,
        (
            Column("id", Customer.id, _global("Customer")),
            Column("name", Customer.name),
            Column("email", Customer.email),
            Column("phone", Customer.phone),
            Column("lifecycleStage", Customer.lifecycle_stage, _enum),
            Column("tags", Customer.tags),
            Column("needs", Customer.needs),
            Column("address", Customer.address),
            Column("preferences", Customer.preferences),
            Column("ownerId", Customer.owner_id, _global("User")),
            Column("companyId", Customer.company_id, _global("Company")),
            Column("lastActivityAt", Customer.last_activity_at, _time),
            *_common(Customer),
        ),
        CustomFieldEntity.CUSTOMER,
    ),
    "companies": ExportKind(
        "companies",
        COMPANIES,
        (
            Column("id", Company.id, _global("Company")),
            Column("name", Company.name),
            Column("domain", Company.domain),
            Column("industry", Company.industry),
            Column("employeeCount", Company.employee_count),
            Column("phone", Company.phone),
            Column("website", Company.website),
            Column("address", Company.address),
            Column("tags", Company.tags),
            Column("ownerId", Company.owner_id, _global("User")),
            *_common(Company),
        ),
        CustomFieldEntity.COMPANY,
    ),
    "deals": ExportKind(
        "deals",
        DEALS,
        (
            Column("id", Deal.id, _global("Deal")),
            Column("title", Deal.title),
            Column("pipelineId", Deal.pipeline_id, _global("Pipeline")),
            Column("stageId", Deal.stage_id, _global("Stage")),
            Column("customerId", Deal.customer_id, _global("Customer")),
            Column("companyId", Deal.company_id, _global("Company")),
            Column("ownerId", Deal.owner_id, _global("User")),
            Column("amount", Deal.amount, _decimal),
            Column("currency", Deal.currency, lambda v: v.strip() if v else v),
            Column("status", Deal.status, _enum),
            Column("expectedCloseDate", Deal.expected_close_date, _time),
            Column("closedAt", Deal.closed_at, _time),
            Column("lostReason", Deal.lost_reason),
            *_common(Deal),
        ),
        CustomFieldEntity.DEAL,
    ),
}


def kind_of(name: str, field_name: str = "type") -> ExportKind:
    """The export of the list ``name``, or ``Invalid``."""
    found = KINDS.get(name)
    if found is None:
        raise Invalid(f"Exports are of {', '.join(KINDS)}", field_name)
    return found


def check_format(value: str, field_name: str = "format") -> str:
    if value not in FORMATS:
        raise Invalid(f"The format is one of {', '.join(FORMATS)}", field_name)
    return value


# ---------------------------------------------------------------------------- plan


@dataclass
class ExportPlan:
    """An export ready to stream: the statement, the columns and custom-field keys it
    shows, and the rows streamed so far (``rows``, for the audit)."""

    actor: Actor
    kind: ExportKind
    format: str
    columns: list[Column]
    custom_keys: list[str]
    statement: Any
    filter: Mapping[str, Any] | None
    rows: int = 0

    @property
    def header(self) -> list[str]:
        return [c.name for c in self.columns] + [f"custom.{k}" for k in self.custom_keys]


async def plan_export(
    actor: Actor,
    session: AsyncSession,
    kind: ExportKind,
    *,
    format: str,
    filter: Mapping[str, Any] | None,
    fields: Sequence[str] | None = None,
    include_archived: bool = False,
) -> ExportPlan:
    """The export of ``kind``'s rows the actor may read that ``filter`` (the list's filter
    mapping, a segment's membership already in it) keeps, newest first, with ``fields``
    (API names, ``customFields`` for the exportable custom fields; all when None)."""
    authorize_read(actor, kind.model)
    check_format(format)
    names = [c.name for c in kind.columns] + [CUSTOM_FIELDS]
    wanted = list(dict.fromkeys(fields)) if fields else names
    for index, name in enumerate(wanted):
        if name not in names:
            known = ", ".join(names)
            raise Invalid(f"Unknown field {name!r}; fields are {known}", f"fields.{index}")
    by_name = {c.name: c for c in kind.columns}
    columns = [by_name[name] for name in wanted if name != CUSTOM_FIELDS]  # in the asked order
    custom_keys: list[str] = []
    if CUSTOM_FIELDS in wanted:
        definitions = await custom_fields.definitions_of(actor, session, kind.entity)
        custom_keys = [d.key for d in definitions.active.values() if d.exportable]
    statement = await kind.spec.filtered(actor, session, filter, include_archived=include_archived)
    keys = kind.spec.keys(None)
    selected = [c.column for c in columns]
    if custom_keys:
        selected.append(kind.model.custom_fields)
        if kind.model is Customer:
            selected.append(Customer.custom_fields_encrypted)
    statement = statement.with_only_columns(*selected).order_by(*querying.order_terms(keys))
    return ExportPlan(
        actor=actor,
        kind=kind,
        format=format,
        columns=columns,
        custom_keys=custom_keys,
        statement=statement,
        filter=filter,
    )


def _custom_values(plan: ExportPlan, session: AsyncSession, row: Sequence[Any]) -> dict[str, Any]:
    start = len(plan.columns)
    plain = dict(row[start] or {})
    if plan.kind.model is Customer and row[start + 1] is not None:
        # The API's own view: sensitive values decrypted, or null for this caller.
        shell = Customer(custom_fields=plain, custom_fields_encrypted=row[start + 1])
        plain = privacy.custom_fields_view(plan.actor, keyring_of(session), shell)
    return {key: plain.get(key) for key in plan.custom_keys}


async def stream_records(
    plan: ExportPlan, session: AsyncSession
) -> AsyncIterator[list[dict[str, Any]]]:
    """The plan's rows as the API shows them, a chunk at a time, through a server-side
    cursor (the session's transaction stays open while it runs)."""
    result = await session.stream(plan.statement.execution_options(yield_per=CHUNK_ROWS))
    async for part in result.partitions(CHUNK_ROWS):
        chunk = []
        for row in part:
            record = {c.name: c.render(row[i]) for i, c in enumerate(plan.columns)}
            if plan.custom_keys:
                record[CUSTOM_FIELDS] = _custom_values(plan, session, row)
            chunk.append(record)
        plan.rows += len(chunk)
        yield chunk


def _cell(value: Any) -> Any:
    """A CSV cell: text as is, lists and objects as JSON (no separator to guess)."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _csv_bytes(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode()


async def encoded(plan: ExportPlan, session: AsyncSession) -> AsyncIterator[bytes]:
    """The export's bytes, a chunk of rows at a time: CSV (RFC 4180, a header line,
    custom fields as ``custom.<key>`` columns) or JSON Lines (one object a line, custom
    fields under ``customFields``)."""
    if plan.format == "csv":
        yield _csv_bytes([plan.header])
    async for chunk in stream_records(plan, session):
        if plan.format == "csv":
            lines = []
            for record in chunk:
                custom = record.get(CUSTOM_FIELDS, {})
                line = [_cell(record[c.name]) for c in plan.columns]
                line.extend(_cell(custom.get(k)) for k in plan.custom_keys)
                lines.append(line)
            yield _csv_bytes(lines)
        else:
            yield b"".join(orjson.dumps(record) + b"\n" for record in chunk)


def record_export(
    plan: ExportPlan,
    session: AsyncSession,
    *,
    via: str,
    completed: bool,
    details: Mapping[str, Any] | None = None,
) -> None:
    """The audit row of an export: who, which list, format, filter, how many rows."""
    audit.record(
        plan.actor,
        session,
        action=ACTION,
        entity_type=plan.kind.type_name,
        entity_id=None,
        # What was exported, as is (not a before/after difference: nothing changed).
        changes={
            "type": plan.kind.name,
            "format": plan.format,
            "rows": plan.rows,
            "completed": completed,
            "fields": plan.header,
            "via": via,
            **(details or {}),
        },
    )


# --------------------------------------------------------------------------- links


class LinkError(DomainError):
    """A download link that cannot be used: tampered or malformed (``LINK_INVALID``)."""

    def __init__(self, message: str, code: str = "LINK_INVALID") -> None:
        super().__init__(message, None, code)


class LinkExpired(LinkError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "LINK_EXPIRED")


@dataclass(frozen=True)
class ExportRequest:
    """What a link asks for, in the client's terms (the filter as the API's JSON), so
    the download checks it again as its creator stands then."""

    type: str
    format: str
    filter: Any = None
    segment_id: str | None = None
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LinkClaims:
    workspace_id: uuid.UUID
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    request: ExportRequest
    expires_at: int  # Unix time


def _link_key(secret: str) -> bytes:
    # A key of its own, derived from the server secret: a link's MAC can never pass for
    # another signed thing's (access tokens use the secret itself).
    return hmac.new(secret.encode(), b"crm-graphql export link v1", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(
    secret: str,
    actor: Actor,
    request: ExportRequest,
    *,
    ttl_seconds: int = LINK_TTL_SECONDS,
    now: float | None = None,
) -> tuple[str, datetime]:
    """A download token for ``request`` by ``actor`` and when it expires."""
    if not 1 <= ttl_seconds <= MAX_LINK_TTL_SECONDS:
        raise Invalid(f"A link lives 1 to {MAX_LINK_TTL_SECONDS} seconds", "expiresInSeconds")
    expires = int(time.time() if now is None else now) + ttl_seconds
    claims = {
        "ws": str(actor.workspace_id),
        "u": str(actor.user_id) if actor.user_id else None,
        "k": str(actor.api_key_id) if actor.api_key_id else None,
        "t": request.type,
        "fmt": request.format,
        "f": request.filter,
        "s": request.segment_id,
        "fl": list(request.fields) if request.fields is not None else None,
        "exp": expires,
    }
    body = _b64(orjson.dumps(claims))
    mac = _b64(hmac.new(_link_key(secret), body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}", datetime.fromtimestamp(expires, UTC)


def open_link(secret: str, token: str, *, now: float | None = None) -> LinkClaims:
    """The claims of a token made by ``sign_link`` with the same secret; ``LinkError``
    when it was altered, ``LinkExpired`` when its time is over."""
    body, _, mac = token.partition(".")
    expected = _b64(hmac.new(_link_key(secret), body.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(mac, expected):
        raise LinkError("This download link is not valid (altered or not issued here)")
    try:
        claims = orjson.loads(_unb64(body))
        request = ExportRequest(
            type=claims["t"],
            format=claims["fmt"],
            filter=claims["f"],
            segment_id=claims["s"],
            fields=tuple(claims["fl"]) if claims["fl"] is not None else None,
        )
        found = LinkClaims(
            workspace_id=uuid.UUID(claims["ws"]),
            user_id=uuid.UUID(claims["u"]) if claims["u"] else None,
            api_key_id=uuid.UUID(claims["k"]) if claims["k"] else None,
            request=request,
            expires_at=int(claims["exp"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise LinkError("This download link is not valid (malformed)") from exc
    if found.expires_at <= (time.time() if now is None else now):
        raise LinkExpired("This download link has expired; ask for a new one (createExport)")
    return found


async def creator_actor(
    session: AsyncSession, claims: LinkClaims, *, request_id: str | None = None
) -> Actor:
    """The actor of the link's creator as it stands now (``credentials.standing_actor``):
    a link outlives no credential."""
    return await credentials.standing_actor(
        session,
        workspace_id=claims.workspace_id,
        user_id=claims.user_id,
        api_key_id=claims.api_key_id,
        what="made this link",
        request_id=request_id,
    )
