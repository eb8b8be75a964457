"""Imports (issue 17, point 1; docs/decisions/0033-jobs-and-import.md): a CSV or JSON
Lines file of customers, companies, deals, orders or activities, read as a job
(``services.jobs``) by the CLI or a server process.

- **Columns** are matched to the API's field names by header, case, spaces, ``_`` and
  ``-`` ignored (``External ID`` is ``externalId``), or as ``mapping`` says (a column
  mapped to ``""`` is skipped). Custom fields are ``custom.<key>`` columns, checked
  against the workspace's definitions; address parts ``address.city`` ...; references
  by id (global or raw) or by a natural key (``customerEmail``, ``companyDomain``,
  ``ownerEmail`` ...). A CSV cell left empty leaves the field alone; a JSON ``null``
  clears it.
- **Upsert key** (customers): ``email``, ``externalId`` or ``custom:<key>``; companies
  match by domain; deals, orders and activities are created.
- **Bad rows** are reported with their line, field and reason, and never half-written.
  ``all-or-nothing``: the whole file in one transaction, committed only without a bad
  row. ``good-rows``: a transaction per chunk of rows, the good ones committed.
  ``dry_run``: everything checked, nothing written.
- **Audit and events**: every written row has its audit row; the events its services
  would write one per row are coalesced into one ``<type>.imported`` event per chunk
  (topic ``imports``), listing the created and updated ids.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from crm_graphql.enums import ActivityType, DealStatus, ImportMode, ImportType, OrderStatus
from crm_graphql.models import Company, Customer, CustomFieldEntity, LifecycleStage, User
from crm_graphql.services import (
    activities,
    companies,
    custom_fields,
    customers,
    deals,
    events,
    jobs,
    orders,
)
from crm_graphql.services.actor import Actor, in_workspace
from crm_graphql.services.errors import DomainError, Invalid, NotFound
from crm_graphql.services.policy import Action, authorize

if TYPE_CHECKING:
    from crm_graphql.job_runner import JobContext

JOB_KIND = "import"
ACTION = "startImport"
TOPIC = "imports"
# Rows per transaction (good-rows) and per statement of the customers' bulk writer.
CHUNK_ROWS = 1000
# The other types are written row by row through their services, each in a savepoint.
SLOW_CHUNK_ROWS = 200
FORMATS = ("csv", "jsonl")
LIST_SEPARATOR = ";"

# What an import of each type writes, by permission.
ACTIONS = {
    ImportType.CUSTOMERS: Action.WRITE_CUSTOMERS,
    ImportType.COMPANIES: Action.WRITE_CUSTOMERS,
    ImportType.ORDERS: Action.WRITE_CUSTOMERS,
    ImportType.DEALS: Action.WRITE_DEALS,
    ImportType.ACTIVITIES: Action.WRITE_ACTIVITIES,
}
# The coalesced event of each type (docs/events.md).
IMPORTED = {
    ImportType.CUSTOMERS: "customer.imported",
    ImportType.COMPANIES: "company.imported",
    ImportType.DEALS: "deal.imported",
    ImportType.ORDERS: "order.imported",
    ImportType.ACTIVITIES: "activity.imported",
}
NODE_TYPES = {
    ImportType.CUSTOMERS: "Customer",
    ImportType.COMPANIES: "Company",
    ImportType.DEALS: "Deal",
    ImportType.ORDERS: "Order",
    ImportType.ACTIVITIES: "Activity",
}
CUSTOM_ENTITIES = {
    ImportType.CUSTOMERS: CustomFieldEntity.CUSTOMER,
    ImportType.COMPANIES: CustomFieldEntity.COMPANY,
    ImportType.DEALS: CustomFieldEntity.DEAL,
}


# ------------------------------------------------------------------ options


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file: its type, format, column mapping, upsert key, mode, dry run."""

    type: ImportType
    format: str = "csv"
    mapping: dict[str, str] = field(default_factory=dict)
    key: str | None = None
    mode: ImportMode = ImportMode.GOOD_ROWS
    dry_run: bool = False

    def params(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "format": self.format,
            "mapping": self.mapping,
            "key": self.key,
            "mode": self.mode.value,
            "dry_run": self.dry_run,
        }

    @staticmethod
    def of(params: Mapping[str, Any]) -> ImportOptions:
        return ImportOptions(
            type=ImportType(params["type"]),
            format=params["format"],
            mapping=dict(params.get("mapping") or {}),
            key=params.get("key"),
            mode=ImportMode(params["mode"]),
            dry_run=bool(params.get("dry_run")),
        )


def file_format(name: str | None, given: str | None) -> str:
    """``csv`` or ``jsonl``: as given, else by the file name's extension."""
    if given:
        chosen = given.strip().lower()
        chosen = {"ndjson": "jsonl", "jsonlines": "jsonl"}.get(chosen, chosen)
        if chosen not in FORMATS:
            raise Invalid("The format is CSV or JSONL", "format")
        return chosen
    lowered = (name or "").lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith((".csv", ".txt")) or not lowered:
        return "csv"
    raise Invalid(f"Cannot tell the format of {name!r}: name it (CSV or JSONL)", "format")


def check_options(actor: Actor, options: ImportOptions) -> ImportOptions:
    """The options, checked: the actor may write what the file holds, the key fits the
    type, the mapping names fields of it."""
    authorize(actor, ACTIONS[options.type])
    key = options.key
    if options.type is ImportType.CUSTOMERS:
        key = key or "email"
        custom = key.removeprefix("custom:")
        if key not in customers.IMPORT_KEYS and not (key.startswith("custom:") and custom):
            raise Invalid("The key of customers is email, externalId or custom:<field>", "key")
    elif options.type is ImportType.COMPANIES:
        if key not in (None, "domain"):
            raise Invalid("Companies are matched by domain (or not at all)", "key")
        key = "domain"
    elif key is not None:
        raise Invalid(f"{options.type.value.title()} are created, not matched by a key", "key")
    for column, target in options.mapping.items():
        if target and _spec(options.type, target) is None:
            names = ", ".join(sorted(f.name for f in FIELDS[options.type].values()))
            raise Invalid(
                f"`{target}` (for column {column!r}) is not a field of {options.type.value}: "
                f"one of {names}, custom.<key> or address.<part>",
                "mapping",
            )
    return ImportOptions(
        options.type, options.format, options.mapping, key, options.mode, options.dry_run
    )


async def start_import(
    actor: Actor,
    session: AsyncSession,
    options: ImportOptions,
    *,
    file_name: str,
    content: bytes,
) -> jobs.Job:
    """Queue an import of ``content`` (the job's file); a runner reads it."""
    checked = check_options(actor, options)
    if not content.strip():
        raise Invalid("The file is empty", "file")
    return await jobs.create_job(
        actor,
        session,
        kind=JOB_KIND,
        params={**checked.params(), "file_name": file_name},
        action=ACTION,
        file_name=file_name,
        content=content,
    )


# ------------------------------------------------------------------ fields


@dataclass(frozen=True)
class FieldSpec:
    """A field a column can fill: its API name, the service's key, and how a value is
    read (``kind``: text, list, json, int, decimal, datetime, date, bool, enum, id, ref)."""

    name: str
    target: str
    kind: str = "text"
    enum: Any = None
    node: str | None = None  # the node type of an id, or of a reference's row


def _f(name: str, target: str, kind: str = "text", **more: Any) -> FieldSpec:
    return FieldSpec(name, target, kind, **more)


def _fields(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {_norm(s.name): s for s in specs}


def _norm(name: str) -> str:
    return "".join(c for c in name.lower() if c not in " _-")


_OWNER = (_f("ownerId", "owner_id", "id", node="User"), _f("ownerEmail", "owner_id", "ref"))
_COMPANY = (
    _f("companyId", "company_id", "id", node="Company"),
    _f("companyDomain", "company_id", "ref"),
)
_CUSTOMER = (
    _f("customerId", "customer_id", "id", node="Customer"),
    _f("customerEmail", "customer_id", "ref"),
    _f("customerExternalId", "customer_id", "ref"),
)
FIELDS: dict[ImportType, dict[str, FieldSpec]] = {
    ImportType.CUSTOMERS: _fields(
        _f("name", "name"),
        _f("email", "email"),
        _f("phone", "phone"),
        _f("externalId", "external_id"),
        _f("lifecycleStage", "lifecycle_stage", "enum", enum=LifecycleStage),
        _f("tags", "tags", "list"),
        _f("needs", "needs", "list"),
        _f("preferences", "preferences", "json"),
        *_OWNER,
        *_COMPANY,
    ),
    ImportType.COMPANIES: _fields(
        _f("name", "name"),
        _f("domain", "domain"),
        _f("industry", "industry"),
        _f("employeeCount", "employee_count", "int"),
        _f("phone", "phone"),
        _f("website", "website"),
        _f("tags", "tags", "list"),
        *_OWNER,
    ),
    ImportType.DEALS: _fields(
        _f("title", "title"),
        _f("currency", "currency"),
        _f("amount", "amount", "decimal"),
        _f("pipelineId", "pipeline_id", "id", node="Pipeline"),
        _f("stageId", "stage_id", "id", node="Stage"),
        _f("status", "status", "enum", enum=DealStatus),
        _f("expectedCloseDate", "expected_close_date", "date"),
        _f("lostReason", "lost_reason"),
        *_CUSTOMER,
        *_COMPANY,
        *_OWNER,
    ),
    ImportType.ORDERS: _fields(
        *_CUSTOMER,
        _f("amount", "amount", "decimal"),
        _f("currency", "currency"),
        _f("number", "number"),
        _f("status", "status", "enum", enum=OrderStatus),
        _f("placedAt", "placed_at", "datetime"),
        _f("items", "items", "json"),
    ),
    ImportType.ACTIVITIES: _fields(
        _f("type", "type", "enum", enum=ActivityType),
        _f("subject", "subject"),
        _f("body", "body"),
        *_CUSTOMER,
        _f("dealId", "deal_id", "id", node="Deal"),
        _f("occurredAt", "occurred_at", "datetime"),
        _f("dueAt", "due_at", "datetime"),
        _f("completed", "completed", "bool"),
    ),
}
ADDRESS_PARTS = {"street": "street", "city": "city", "region": "region"}
ADDRESS_PARTS |= {"postalcode": "postalCode", "country": "country"}
WITH_ADDRESS = (ImportType.CUSTOMERS, ImportType.COMPANIES)


def _spec(kind: ImportType, name: str) -> FieldSpec | None:
    """The field of ``kind`` a column name (or mapping target) stands for; custom fields
    and address parts are made up on the way."""
    stripped = name.strip()
    lowered = stripped.lower()
    for prefix in ("custom.", "customfields.", "custom_fields."):
        if lowered.startswith(prefix) and len(stripped) > len(prefix):
            if kind not in CUSTOM_ENTITIES:
                return None
            key = stripped[len(prefix) :]
            return FieldSpec(f"customFields.{key}", f"custom:{key}", "custom")
    if lowered.startswith("address."):
        part = ADDRESS_PARTS.get(_norm(stripped[len("address.") :]))
        if part is None or kind not in WITH_ADDRESS:
            return None
        return FieldSpec(f"address.{part}", f"address:{part}", "address")
    return FIELDS[kind].get(_norm(stripped))


# ------------------------------------------------------------------ reading a file


@dataclass
class Row:
    """One record of the file: its line, its values by field, and a first error."""

    line: int
    values: dict[str, Any]
    error: DomainError | None = None


class Reader:
    """A file's records as field values (``Row``), column names matched once."""

    def __init__(self, options: ImportOptions, definitions: custom_fields.Definitions | None):
        self.options = options
        self.custom = definitions.active if definitions is not None else {}
        self.mapping = {_norm(k): v for k, v in options.mapping.items()}
        self._specs: dict[str, FieldSpec | None] = {}

    def spec(self, column: str) -> FieldSpec | None:
        """The field of a column (None: skipped), or ``Invalid``: unknown."""
        if column not in self._specs:
            mapped = self.mapping.get(_norm(column), column)
            if not mapped:
                self._specs[column] = None
            else:
                found = _spec(self.options.type, mapped)
                if found is None:
                    raise Invalid(
                        f"Column {column!r} is no field of {self.options.type.value}: map it "
                        f"to one (`{column}=<field>`) or skip it (`{column}=`)",
                        column,
                    )
                self._specs[column] = found
        return self._specs[column]

    def rows(self, content: bytes) -> Iterator[Row]:
        text = _decode(content)
        if self.options.format == "csv":
            yield from self._csv(text)
        else:
            yield from self._jsonl(text)

    def _csv(self, text: str) -> Iterator[Row]:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise Invalid(f"Line 1: {exc}", "file") from exc
        specs = [self.spec(column) for column in header]
        last = reader.line_num
        while True:
            line = last + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last = reader.line_num
                yield Row(line, {}, Invalid(f"Not a CSV row: {exc}", None))
                continue
            last = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                error = Invalid(f"{len(cells)} cells where the header has {len(header)}")
                yield Row(line, {}, error)
                continue
            row = Row(line, {})
            for spec, cell in zip(specs, cells, strict=True):
                if spec is None or cell == "":
                    continue
                self._set(row, spec, cell, text=True)
            yield row

    def _jsonl(self, text: str) -> Iterator[Row]:
        for index, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                yield Row(index, {}, Invalid("Not a JSON value"))
                continue
            if not isinstance(record, dict):
                yield Row(index, {}, Invalid("Not a JSON object"))
                continue
            row = Row(index, {})
            for key, value in _flatten(record):
                try:
                    spec = self.spec(key)
                except DomainError as error:
                    row.error = row.error or error
                    continue
                if spec is not None:
                    self._set(row, spec, value, text=False)
            yield row

    def _set(self, row: Row, spec: FieldSpec, value: Any, *, text: bool) -> None:
        try:
            parsed = self._value(spec, value, text=text)
        except DomainError as error:
            row.error = row.error or error
            return
        if spec.kind == "custom":
            row.values.setdefault("custom_fields", {})[spec.target[len("custom:") :]] = parsed
        elif spec.kind == "address":
            row.values.setdefault("address", {})[spec.target[len("address:") :]] = parsed
        elif spec.kind == "ref":
            row.values.setdefault("_refs", {})[spec.name] = parsed
        else:
            row.values[spec.target] = parsed

    def _value(self, spec: FieldSpec, value: Any, *, text: bool) -> Any:
        name = spec.name
        if value is None:
            return None
        kind = spec.kind
        if kind == "custom":
            definition = self.custom.get(spec.target[len("custom:") :])
            if text and definition is not None:
                return custom_fields.value_from_text(definition, value)
            return value
        if kind in ("text", "address", "ref"):
            return value if isinstance(value, str) else str(value)
        if kind == "list":
            if isinstance(value, str):
                return [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]
            return value
        if kind == "json":
            if text:
                try:
                    return json.loads(value)
                except ValueError as exc:
                    raise Invalid(f"`{name}` is not valid JSON", name) from exc
            return value
        if kind == "int":
            try:
                return int(str(value).strip())
            except ValueError as exc:
                raise Invalid(f"`{name}` must be a whole number", name) from exc
        if kind == "decimal":
            return str(value).strip()
        if kind in ("datetime", "date"):
            try:
                parsed = str(value).strip().replace("Z", "+00:00")
                return (
                    datetime.fromisoformat(parsed)
                    if kind == "datetime"
                    else date.fromisoformat(parsed)
                )
            except ValueError as exc:
                example = "2026-01-31T09:00:00Z" if kind == "datetime" else "2026-01-31"
                raise Invalid(f"`{name}` must be ISO 8601, e.g. {example}", name) from exc
        if kind == "bool":
            return _bool(value, name)
        if kind == "enum":
            return _enum(spec.enum, value, name)
        if kind == "id":
            return _id(value, spec.node or "", name)
        raise AssertionError(kind)


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"The file is not UTF-8 (byte {exc.start}): save it as UTF-8", "file"
        ) from exc


def _flatten(record: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """A JSON object's keys as columns: ``customFields``/``address`` objects become
    ``customFields.<key>``/``address.<part>``."""
    for key, value in record.items():
        if key in ("customFields", "custom", "address") and isinstance(value, dict):
            prefix = "address" if key == "address" else "customFields"
            for sub, inner in value.items():
                yield f"{prefix}.{sub}", inner
        else:
            yield key, value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "yes", "1", "y"):
        return True
    if lowered in ("false", "no", "0", "n"):
        return False
    raise Invalid(f"`{name}` must be true or false", name)


def _enum(enum_cls: Any, value: Any, name: str) -> Any:
    text = str(value).strip()
    for member in enum_cls:
        if text.upper() == member.name or text.lower() == str(member.value):
            return member
    allowed = ", ".join(m.name for m in enum_cls)
    raise Invalid(f"`{name}` must be one of: {allowed}", name)


def _id(value: Any, node: str, name: str) -> uuid.UUID:
    from crm_graphql.global_ids import MalformedId, from_global_id

    text = str(value).strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    try:
        type_name, id = from_global_id(text)
    except MalformedId:
        type_name, id = "", uuid.UUID(int=0)
    if type_name != node:
        raise NotFound(f"{node} not found", name)
    return id


# ------------------------------------------------------------------ references


_REF_FIELDS: dict[str, tuple[str, Any, Callable[[], Any], Callable[[str], str]]] = {
    "ownerEmail": ("owner_id", User, lambda: func.lower(User.email), str.lower),
    "companyDomain": ("company_id", Company, lambda: func.lower(Company.domain), str.lower),
    "customerEmail": ("customer_id", Customer, lambda: func.lower(Customer.email), str.lower),
    "customerExternalId": ("customer_id", Customer, lambda: Customer.external_id, str.strip),
}


async def resolve_references(actor: Actor, session: AsyncSession, rows: Sequence[Row]) -> None:
    """Turn the rows' references by natural key (``customerEmail`` ...) into ids, one
    statement per kind for the chunk; one that finds nothing is the row's error. The
    rows the references point at are the writer's to check (``in_workspace``: using them
    is covered by the write permission, as for an id)."""
    for name, (target, model, column_of, normal) in _REF_FIELDS.items():
        wanted = {
            normal(row.values["_refs"][name])
            for row in rows
            if row.error is None and row.values.get("_refs", {}).get(name)
        }
        if not wanted:
            continue
        column = column_of()
        stmt = (
            in_workspace(model, actor)
            .with_only_columns(column, model.id)
            .where(column.in_(sorted(wanted)))
            .order_by(model.created_at, model.id)
        )
        found: dict[str, uuid.UUID] = {}
        for value, id in (await session.execute(stmt)).all():
            found.setdefault(value, id)
        for row in rows:
            value = row.values.get("_refs", {}).get(name)
            if row.error is not None or not value:
                continue
            id = found.get(normal(value))
            if id is None:
                row.error = NotFound(f"No {model.__name__.lower()} has this {name}", name)
            else:
                row.values[target] = id
    for row in rows:
        row.values.pop("_refs", None)


# ------------------------------------------------------------------ writing


@dataclass
class Written:
    """A chunk's outcome: the ids created and updated, how many were unchanged."""

    created: list[uuid.UUID] = field(default_factory=list)
    updated: list[uuid.UUID] = field(default_factory=list)
    unchanged: int = 0


class Importer:
    """Writes the chunks of one import in the caller's transactions."""

    def __init__(self, actor: Actor, options: ImportOptions, job_id: uuid.UUID | None):
        self.actor = actor
        self.options = options
        self.job_id = job_id
        self.state: customers.ImportState | None = None
        # Customers written by this import, and how many there were at the last refresh
        # of the table's statistics (``_keep_statistics_current``).
        self.written_rows = 0
        self.analyzed_at = 0

    async def prepare(self, session: AsyncSession) -> custom_fields.Definitions | None:
        entity = CUSTOM_ENTITIES.get(self.options.type)
        if self.options.type is ImportType.CUSTOMERS:
            self.state = await customers.ImportState.read(self.actor, session)
            return self.state.definitions
        if entity is not None:
            return await custom_fields.definitions_of(self.actor, session, entity)
        return None

    async def _keep_statistics_current(self, session: AsyncSession) -> None:
        """Refresh the customers table's statistics after the first chunk and whenever the
        import has doubled what it wrote since. The next chunks' lookups (by key, email,
        external id) are prepared statements: planned on statistics that say the table is
        empty, they scanned the whole workspace for each chunk and the import grew
        quadratic (1.6 s a lookup at 72,000 rows) when autovacuum had not caught up, or
        is off (decision 0033). A few passes of about 0.1 s for 100,000 rows."""
        if self.written_rows >= max(CHUNK_ROWS, 2 * self.analyzed_at):
            await customers.refresh_statistics(session)
            self.analyzed_at = self.written_rows

    async def write(self, session: AsyncSession, rows: Sequence[Row], *, write: bool) -> Written:
        """Write the chunk's good rows (``write`` False: check them only); each bad row
        gets its ``error``, and changes nothing."""
        await resolve_references(self.actor, session, rows)
        good = [row for row in rows if row.error is None]
        written = Written()
        if not good:
            return written
        if self.options.type is ImportType.CUSTOMERS:
            assert self.state is not None and self.options.key is not None
            outcomes = await customers.import_customers(
                self.actor,
                session,
                [(row.line, row.values) for row in good],
                key=self.options.key,
                state=self.state,
                write=write,
                action=ACTION,
            )
            for row, outcome in zip(good, outcomes, strict=True):
                if outcome.error is not None:
                    row.error = outcome.error
                elif outcome.outcome == "created":
                    written.created.append(_some(outcome.id))
                elif outcome.outcome == "updated":
                    written.updated.append(_some(outcome.id))
                else:
                    written.unchanged += 1
            if write:
                self.written_rows += len(written.created)
                await self._keep_statistics_current(session)
        else:
            with events.coalescing(session):
                await self._row_by_row(session, good, written)
        if write and (written.created or written.updated):
            self._event(session, written)
        return written

    async def _row_by_row(self, session: AsyncSession, good: list[Row], written: Written) -> None:
        kind = self.options.type
        if kind is ImportType.COMPANIES:
            results = await companies.upsert_companies(
                self.actor, session, [row.values for row in good]
            )
            for row, result in zip(good, results, strict=True):
                if result.errors:
                    row.error = result.errors[0]
                elif result.row is not None:
                    (written.created if result.created else written.updated).append(result.row.id)
            return
        creators: dict[
            ImportType, Callable[[Actor, AsyncSession, Mapping[str, Any]], Awaitable[Any]]
        ] = {
            ImportType.DEALS: deals.create_deal,
            ImportType.ORDERS: orders.create_order,
            ImportType.ACTIVITIES: activities.create_activity,
        }
        create = creators[kind]
        for row in good:
            try:
                async with session.begin_nested():
                    created = await create(self.actor, session, row.values)
            except DomainError as error:
                row.error = error
            else:
                written.created.append(created.id)

    def _event(self, session: AsyncSession, written: Written) -> None:
        events.record_event(
            self.actor,
            session,
            topic=TOPIC,
            type=IMPORTED[self.options.type],
            entity_type=NODE_TYPES[self.options.type],
            entity_id=None,
            payload={
                "job_id": self.job_id,
                "created_ids": written.created,
                "updated_ids": written.updated,
            },
        )


def _some(id: uuid.UUID | None) -> uuid.UUID:
    assert id is not None
    return id


def estimate_rows(content: bytes, format: str) -> int:
    """The file's records, counted by lines (a CSV cell spanning lines makes it high;
    ``done`` is exact once the job ends)."""
    lines = sum(1 for line in content.splitlines() if line.strip())
    return max(0, lines - 1) if format == "csv" else lines


def chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def chunk_size(options: ImportOptions) -> int:
    return CHUNK_ROWS if options.type is ImportType.CUSTOMERS else SLOW_CHUNK_ROWS


# ------------------------------------------------------------------ the job


async def run_import_job(context: JobContext) -> dict[str, Any]:
    """Run an import job (``job_runner.HANDLERS``): read its file, write it chunk by
    chunk as its mode says, report progress after each chunk."""
    claimed = context.claimed
    options = ImportOptions.of(claimed.params)
    actor = claimed.actor
    check_options(actor, options)  # its creator may have lost the right meanwhile
    async with context.sessionmaker() as session:
        job = await session.get(jobs.Job, claimed.id)
        assert job is not None
        stored = await jobs.file_of(session, job)
    if stored is None:
        raise Invalid("The job's file is missing", "file")
    importer = Importer(actor, options, claimed.id)
    progress = context.progress
    progress.total = estimate_rows(stored.content, options.format)
    if options.dry_run or options.mode is ImportMode.ALL_OR_NOTHING:
        # One transaction: committed only when every row is good (and not a dry run).
        progress.done = progress.checkpoint = 0
        progress.counts, progress.errors, progress.error_count = {}, [], 0
        async with context.sessionmaker() as session:
            await session.begin()
            try:
                await _all_at_once(context, importer, session, stored.content)
                keep = not options.dry_run and not progress.error_count
                if keep:
                    await context.report(session, committed=True)
                    await session.commit()
                else:
                    await session.rollback()
            except BaseException:
                await session.rollback()
                raise
            if keep:
                await _publish(context, session)
    else:
        await _chunk_by_chunk(context, importer, stored.content)
    progress.total = progress.done
    return _result(options, progress)


async def _all_at_once(
    context: JobContext, importer: Importer, session: AsyncSession, content: bytes
) -> None:
    progress = context.progress
    definitions = await importer.prepare(session)
    reader = Reader(importer.options, definitions)
    bad = False
    for chunk in chunks(reader.rows(content), chunk_size(importer.options)):
        context.check_cancelled()
        # Past the first bad row nothing will be kept: the rest is only checked.
        written = await importer.write(
            session, chunk, write=not importer.options.dry_run and not bad
        )
        _count(progress, chunk, written)
        bad = bad or progress.error_count > 0
        await context.report(committed=False)


async def _chunk_by_chunk(context: JobContext, importer: Importer, content: bytes) -> None:
    progress = context.progress
    async with context.sessionmaker() as session:
        definitions = await importer.prepare(session)
    reader = Reader(importer.options, definitions)
    skip = progress.checkpoint  # rows committed by an earlier run of this job
    seen = 0
    for chunk in chunks(reader.rows(content), chunk_size(importer.options)):
        seen += len(chunk)
        if seen <= skip:
            continue
        context.check_cancelled()
        before = progress.copy()
        try:
            async with context.transaction() as session:
                written = await importer.write(session, chunk, write=True)
                _count(progress, chunk, written)
                await context.report(session, committed=True)
        except BaseException:
            context.progress = progress = before
            raise


def _count(progress: jobs.Progress, chunk: Sequence[Row], written: Written) -> None:
    for row in chunk:
        if row.error is not None:
            progress.fail(row.line, row.error)
    progress.done += len(chunk)
    progress.add("created", len(written.created))
    progress.add("updated", len(written.updated))
    progress.add("unchanged", written.unchanged)
    progress.add("failed", sum(1 for row in chunk if row.error is not None))


async def _publish(context: JobContext, session: AsyncSession) -> None:
    from crm_graphql.realtime.unit_of_work import publish_after_commit

    await publish_after_commit(context.bus, session, context.claimed.actor.workspace_id)


def _result(options: ImportOptions, progress: jobs.Progress) -> dict[str, Any]:
    """What the job's ``result`` says: the rows, what became of them, and whether the
    good ones were kept (``written``: false for a dry run, and for all-or-nothing with a
    bad row; ``created`` and ``updated`` then say what would have been)."""
    failed = progress.counts.get("failed", 0)
    kept = not options.dry_run and (options.mode is ImportMode.GOOD_ROWS or failed == 0)
    return {
        "type": options.type.name,
        "mode": options.mode.name,
        "dryRun": options.dry_run,
        "rows": progress.done,
        "written": kept,
        "created": progress.counts.get("created", 0),
        "updated": progress.counts.get("updated", 0),
        "unchanged": progress.counts.get("unchanged", 0),
        "failed": failed,
    }
