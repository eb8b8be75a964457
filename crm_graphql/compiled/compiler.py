"""Turning a validated read operation into one SQL statement whose columns are the JSON
text of each root field, byte for byte what the executed path would encode.

The statement is built from the same service objects the resolvers call: a list's WHERE
clause is ``ListSpec.statement(actor, filter)`` (tenant scope, archived rows, filter), its
order and keyset condition come from ``storage.querying``, a relation is scoped with
``scope_condition``. Those SQLAlchemy expressions are compiled once per plan with the
workspace as the parameter ``$1``; only the JSON shaping is written here.

Anything the executed path would answer with an error (a page size over the cap, a bad
cursor, a malformed ID in a filter) or that this module does not know raises
``Unsupported``: the caller then runs the executed path, so errors stay identical.
"""

from __future__ import annotations

import enum
import inspect
import operator
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLIncludeDirective,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    get_named_type,
    is_abstract_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_directive_values
from sqlalchemy import BigInteger, ColumnElement, and_, bindparam, select
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from strawberry import Schema
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import StrawberryObjectDefinition

from crm_graphql.compiled import audit, insight, sync
from crm_graphql.compiled import bulk as compiled_bulk
from crm_graphql.compiled import segments as compiled_segments
from crm_graphql.db.engine import PLAN_CACHE_PRECEDENCE, PlanCache
from crm_graphql.global_ids import MalformedId, from_global_id
from crm_graphql.resolvers.arguments import filter_spec, order_spec
from crm_graphql.resolvers.nodes import LOADED_NODES, NODE_MODELS
from crm_graphql.resolvers.readmodel import (
    EVENT_TYPES,
    OBJECT_TYPES,
    ROOT_LISTS,
    ChildCount,
    ChildList,
    Visibility,
)
from crm_graphql.services import conversations, rfm, segments
from crm_graphql.services.actor import Actor, scope_condition
from crm_graphql.services.customers import counted_orders_condition
from crm_graphql.services.errors import DomainError
from crm_graphql.settings import Settings
from crm_graphql.storage import querying


class Unsupported(Exception):
    """This operation (with these variables) takes the executed path."""


# Read fields the compiler refuses on purpose, and why (docs/decisions/0006-compiled-reads.md,
# "What stays executed"): every other field of ``Query``, and of the read model's object
# types, is compiled (``tests/test_compiled_coverage.py`` fails for a field in neither).
EXECUTED_ROOT_FIELDS: dict[str, str] = {
    "onlineUsers": "presence lives in Redis (open sockets), not in PostgreSQL",
    "duplicateCandidates": "pairs are scored in Python (rapidfuzz's token_sort_ratio)",
}
EXECUTED_OBJECT_FIELDS: dict[tuple[str, str], str] = {
    ("Customer", "customFields"): "sensitive keys are decrypted (or hidden) per caller",
    ("Customer", "rfm"): "recency, money and lifetime value are computed in Python",
    ("Customer", "recommendations"): "scored in Python against co-purchases",
    ("Customer", "churnRisk"): "scored in Python, with its reasons",
    ("Segment", "customers"): "a saved segment's stored filter is parsed in Python at read "
    "time (the statement depends on data it would read)",
}


# The workspace of the request: always the statement's first parameter.
WORKSPACE = bindparam("crm_workspace", uuid.UUID(int=0), type_=PG_UUID(as_uuid=True))
# The user id of the actor a plan is built for: plans are shared by the users of a role,
# so it is a parameter filled in at execution (``Compiled.user_params``).
USER = bindparam("crm_user", uuid.UUID(int=0), type_=PG_UUID(as_uuid=True))
# The change feed's horizon (``services.sync.changes_statement``): taken by its own
# statement right before the plan runs, on the primary (``Compiled.horizon_params``).
HORIZON = bindparam("crm_horizon", 0, type_=BigInteger())
# Likewise the API key of a plan built for a key (plans are shared by keys of one scope set).
API_KEY = bindparam("crm_api_key", uuid.UUID(int=0), type_=PG_UUID(as_uuid=True))
_DIALECT = asyncpg_dialect.dialect()


def _unrepresentable(sql: str) -> str:
    """For a stored value the executed path would fail on: the statement fails (invalid
    integer syntax, SQLSTATE 22P02) and the request takes the executed path. It reads the
    value so that PostgreSQL cannot fold it into a constant and fail every statement."""
    return f"('executed path: cannot represent ' || ({sql})::text)::int::text"


_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass
class Compiled:
    """One operation with one set of variables, ready to run for any actor."""

    sql: str
    params: list[Any]  # params[0] is replaced by the actor's workspace at execution
    keys: list[str]  # response keys of the root fields, one column each
    models: frozenset[type[Any]]  # what the actor must be allowed to read
    reencode: bool  # JSONB text inside (spaces after ':'): re-encode compactly
    # How PostgreSQL plans it (``PlanCache``): the pool of that ``plan_cache_mode`` runs it.
    plan_cache: PlanCache
    # Indexes in ``params`` replaced by the actor's user id at execution (``me``).
    user_params: tuple[int, ...] = ()
    # Indexes in ``params`` replaced by the actor's API key id at execution (a key's jobs).
    api_key_params: tuple[int, ...] = ()
    # Indexes in ``params`` replaced by ``crm_event_horizon()``, read in a statement of its
    # own just before this one and on the primary (``changes``: docs/decisions/0032).
    horizon_params: tuple[int, ...] = ()
    # Reads the RFM scores: the workspace's snapshot is made current first
    # (``rfm.ensure_snapshot``), so that the statement takes its fast branch.
    reads_rfm_scores: bool = False


# The JSON of an event's own value (``Compiler._event_value``), from the event's root value.
EventValueReader = Callable[[Any], bytes | None]


def _constant(value: bytes) -> EventValueReader:
    return lambda _root: value


@dataclass(frozen=True)
class CompiledEvent:
    """A subscription's selection of one live event type, for any event of it."""

    # The rows the selection reads, one column each; None: it reads none.
    compiled: Compiled | None
    # The event object's members in response order: the key's JSON text (with a comma
    # before every member but the first, and the colon), then the index of its column in
    # the statement's row or the reader of an event's own value.
    members: tuple[tuple[bytes, int | EventValueReader], ...]
    # Indexes in ``compiled.params`` filled in with the id a relation finds in the stored
    # event (``readmodel.EventRelation.id_of``).
    id_params: tuple[tuple[int, Callable[[Any], uuid.UUID | None]], ...]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Concat:
    """A text expression built from literal pieces and SQL expressions (never NULL)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._pending = ""

    def lit(self, text: str) -> None:
        self._pending += text

    def expr(self, sql: str) -> None:
        if self._pending:
            self.parts.append(_literal(self._pending))
            self._pending = ""
        self.parts.append(sql)

    def sql(self) -> str:
        if self._pending:
            self.parts.append(_literal(self._pending))
            self._pending = ""
        return " || ".join(self.parts) if self.parts else "''"


def _iso_datetime(sql: str) -> str:
    """``datetime.isoformat()`` of a timestamptz in UTC (microseconds only when non-zero).
    The driver reads -infinity / infinity as Python's first / last instant, answered in
    UTC (``fields.stored_instant``); an instant outside Python's range is a value the
    executed path fails on."""
    text = (
        f"to_char(({sql}) AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', {sql}) = {sql} "
        """THEN 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"' END)"""
    )
    return _finite(
        sql,
        text,
        "'0001-01-01 00:00:00+00'::timestamptz",
        "'9999-12-31 23:59:59.999999+00'::timestamptz",
        datetime.min.replace(tzinfo=UTC).isoformat(),
        datetime.max.replace(tzinfo=UTC).isoformat(),
    )


def _iso_date(sql: str) -> str:
    """``date.isoformat()``; -infinity / infinity as the driver reads them (Python's first
    and last date)."""
    return _finite(
        sql,
        f"to_char({sql}, 'YYYY-MM-DD')",
        "'0001-01-01'::date",
        "'9999-12-31'::date",
        date.min.isoformat(),
        date.max.isoformat(),
    )


def _finite(sql: str, text: str, first: str, last: str, before: str, after: str) -> str:
    """``text`` for a value of Python's range [first, last]; the texts of the driver's
    readings of -infinity and infinity; any other value fails the statement."""
    return (
        f"CASE WHEN {sql} BETWEEN {first} AND {last} THEN {text} "
        f"WHEN {sql} = '-infinity' THEN {_literal(before)} "
        f"WHEN {sql} = 'infinity' THEN {_literal(after)} "
        f"ELSE {_unrepresentable(sql)} END"
    )


def _json_int(sql: str, *, nullable: bool) -> str:
    """A GraphQL ``Int`` read from a JSON value (``int(n)`` of a stored count): a whole
    number within 32 bits; JSON null (or a missing key) as null when ``nullable``. Any
    other value fails the statement and the executed path answers."""
    number = f"({sql})::numeric"
    whole = (
        f"CASE WHEN {number} = trunc({number}) AND abs({number}) <= 2147483647 "
        f"THEN ({number})::bigint::text ELSE {_unrepresentable(sql)} END"
    )
    text = f"CASE WHEN jsonb_typeof({sql}) = 'number' THEN {whole} "
    if nullable:
        text += f"WHEN {sql} IS NULL OR {sql} = 'null' THEN 'null' "
    return text + f"ELSE {_unrepresentable(sql)} END"


def _json_text(sql: str, *, missing: str) -> str:
    """A GraphQL ``String`` read from a JSON value with ``dict.get``: a JSON string as it
    is, a missing key as ``missing`` (JSON text), JSON null as null (the executed path
    then answers its own error for a non-null field: the statement fails)."""
    nulls = "'null'" if missing == "null" else _unrepresentable(sql)
    return (
        f"CASE WHEN jsonb_typeof({sql}) = 'string' THEN ({sql})::text "
        f"WHEN {sql} IS NULL THEN {_literal(missing)} "
        f"WHEN {sql} = 'null' THEN {nulls} ELSE {_unrepresentable(sql)} END"
    )


def _quoted(sql: str) -> str:
    return f"""'"' || {sql} || '"'"""


def _base64url(sql: str) -> str:
    """base64url without padding of a text (what ``ids`` and cursors use)."""
    return f"translate(encode(convert_to({sql}, 'UTF8'), 'base64'), E'+/=\\n', '-_')"


def _unwrap(gql_type: Any) -> tuple[Any, bool]:
    """(named or list type, nullable)."""
    nullable = True
    if isinstance(gql_type, GraphQLNonNull):
        gql_type, nullable = gql_type.of_type, False
    return gql_type, nullable


@dataclass
class _State:
    params: list[Any] = field(default_factory=lambda: [None])
    aliases: int = 0
    models: set[type[Any]] = field(default_factory=set)
    reencode: bool = False
    plan_cache: PlanCache = field(default_factory=lambda: PlanCache.AUTO)
    user_params: list[int] = field(default_factory=list)
    reads_rfm_scores: bool = False
    user_slot: str | None = None
    api_key_params: list[int] = field(default_factory=list)
    api_key_slot: str | None = None
    horizon_params: list[int] = field(default_factory=list)
    horizon_slot: str | None = None

    def plan(self, mode: PlanCache) -> None:
        """Ask for ``mode``: a part planned for its values makes the whole statement so
        (the safe choice), over a part that asks for the generic plan, over the default."""
        self.plan_cache = max(self.plan_cache, mode, key=PLAN_CACHE_PRECEDENCE.index)


class Compiler:
    """Compiles one operation for one set of coerced variables."""

    def __init__(
        self,
        schema: Schema,
        settings: Settings,
        actor: Actor,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.schema = schema
        self.gschema = schema._schema
        self.settings = settings
        # The actor the service helpers build predicates for: the workspace is a parameter,
        # the rest (role, key or not, scopes) is part of the plan's cache key.
        self.actor = Actor(
            workspace_id=cast(uuid.UUID, WORKSPACE),
            role=actor.role,
            user_id=None if actor.user_id is None else cast(uuid.UUID, USER),
            api_key_id=None if actor.api_key_id is None else cast(uuid.UUID, API_KEY),
            scopes=actor.scopes,
        )
        self.fragments = fragments
        self.variables = variables
        self.state = _State()

    # ------------------------------------------------------------------- plumbing

    def _param(self, value: Any) -> str:
        if isinstance(value, enum.Enum):
            value = value.value
        self.state.params.append(value)
        return f"${len(self.state.params)}"

    def _user(self) -> str:
        """The parameter holding the caller's user id (one per statement)."""
        if self.state.user_slot is None:
            self.state.user_slot = self._param(None)
            self.state.user_params.append(len(self.state.params) - 1)
        return self.state.user_slot

    def _api_key(self) -> str:
        """The parameter holding the caller's API key id (one per statement)."""
        if self.state.api_key_slot is None:
            self.state.api_key_slot = self._param(None)
            self.state.api_key_params.append(len(self.state.params) - 1)
        return self.state.api_key_slot

    def horizon(self) -> str:
        """The parameter holding the change feed's horizon (one per statement)."""
        if self.state.horizon_slot is None:
            self.state.horizon_slot = self._param(None)
            self.state.horizon_params.append(len(self.state.params) - 1)
        return self.state.horizon_slot

    def _alias(self) -> str:
        self.state.aliases += 1
        return f"t{self.state.aliases}"

    def _sql(
        self,
        expression: Any,
        model: type[Any],
        alias: str,
        outer: tuple[type[Any], str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> str:
        """A service's SQLAlchemy expression over ``model``, as SQL over ``alias``, its
        values appended to the statement's parameters. SQLAlchemy compiles each distinct
        shape once (``_fragment``); a request with other values reuses the text. With
        ``outer`` (a model and its alias), the expression also reads that model's row,
        by its table name (``conversations.is_last_message``). ``values``: the values of
        binds left without one, by name (a statement built once per shape)."""
        cache_key = expression._generate_cache_key()
        if cache_key is None:
            template = _fragment(expression, model)
            binds: Any = list(_bind_values_in_order(expression))
        else:
            binds = cache_key.bindparams
            lengths = tuple(len(b.effective_value) if b.expanding else -1 for b in binds)
            memo = (cache_key.key, model.__tablename__, lengths)
            found = _FRAGMENTS.get(memo)
            if found is None:
                found = _FRAGMENTS[memo] = _fragment(expression, model)
                if len(_FRAGMENTS) > _FRAGMENTS_MAX:
                    _FRAGMENTS.pop(next(iter(_FRAGMENTS)))
            template = found

        def value(match: re.Match[str]) -> str:
            bind = binds[int(match.group(1))]
            if bind.key == WORKSPACE.key:
                return "$1"
            if bind.key == USER.key:
                return self._user()
            if bind.key == API_KEY.key:
                return self._api_key()
            if bind.key == HORIZON.key:
                return self.horizon()
            if match.group(2) is None:
                if values is not None and bind.key in values:
                    return self._param(values[bind.key])
                return self._param(bind.effective_value)
            return self._param(bind.effective_value[int(match.group(2))])

        text = _TABLE_PREFIX[model.__tablename__].sub(alias + ".", template)
        if outer is not None:
            text = _TABLE_PREFIX[outer[0].__tablename__].sub(outer[1] + ".", text)
        return _SLOT.sub(value, text)

    def _included(self, node: Any) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name == "skip":
                values = get_directive_values(GraphQLSkipDirective, node, self.variables)
                if values and values.get("if") is True:
                    return False
            elif name == "include":
                values = get_directive_values(GraphQLIncludeDirective, node, self.variables)
                if values and values.get("if") is False:
                    return False
            else:
                raise Unsupported(f"directive @{name}")
        return True

    def _applies(self, condition: Any, runtime: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        target = self.gschema.get_type(condition.name.value)
        if target is runtime:
            return True
        return bool(is_abstract_type(target) and self.gschema.is_sub_type(target, runtime))

    def collect(
        self, runtime: GraphQLObjectType, selection_sets: Iterable[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        """Fields by response key in first-seen order, as graphql-core merges them."""
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()

        def walk(selection_set: SelectionSetNode) -> None:
            for selection in selection_set.selections:
                if not self._included(selection):
                    continue
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    if self._applies(selection.type_condition, runtime):
                        walk(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in visited:
                        continue
                    visited.add(name)
                    fragment = self.fragments.get(name)
                    if fragment is None:
                        raise Unsupported(f"fragment {name}")
                    if self._applies(fragment.type_condition, runtime):
                        walk(fragment.selection_set)

        for selection_set in selection_sets:
            walk(selection_set)
        return fields

    @staticmethod
    def _subselections(nodes: list[FieldNode]) -> list[SelectionSetNode]:
        return [n.selection_set for n in nodes if n.selection_set is not None]

    def _arguments(self, type_name: str, field_name: str, node: FieldNode) -> dict[str, Any]:
        """Coerced and converted arguments: what the resolver receives, except that an
        argument left at its null default is absent (read them with ``.get``)."""
        gql_type = self.gschema.get_type(type_name)
        assert isinstance(gql_type, GraphQLObjectType)
        definition_of_field = gql_type.fields[field_name]
        raw = get_argument_values(definition_of_field, node, self.variables)
        raw = {
            name: _without_null_defaults(value, definition_of_field.args[name].type)
            for name, value in raw.items()
            if not _null_default(value, definition_of_field.args[name].default_value)
        }
        definition = self.schema.get_type_by_name(type_name)
        assert isinstance(definition, StrawberryObjectDefinition), type_name
        strawberry_field = next(
            f
            for f in definition.fields
            if self.schema.config.name_converter.get_graphql_name(f) == field_name
        )
        return convert_arguments(
            raw,
            strawberry_field.arguments,
            scalar_registry=self.schema.schema_converter.scalar_registry,
            config=self.schema.config,
            info=None,
        )

    # --------------------------------------------------------------------- values

    def _value(self, gql_type: Any, sql: str) -> str:
        """JSON text of a column value as the executed path serialises it (NULL -> null)."""
        named, nullable = _unwrap(gql_type)
        if isinstance(named, GraphQLList):
            item, _ = _unwrap(named.of_type)
            if not (isinstance(item, GraphQLScalarType) and item.name == "String"):
                raise Unsupported(f"list of {item}")
            text = f"array_to_json({sql})::text"
        elif isinstance(named, GraphQLEnumType):
            cases = " ".join(
                f"WHEN {_literal(str(v.value))} THEN {_literal(chr(34) + name + chr(34))}"
                for name, v in named.values.items()
            )
            text = f"CASE {sql} {cases} END"
        elif isinstance(named, GraphQLScalarType):
            kind = named.name
            if kind in ("String", "ID"):
                text = f"to_json({sql})::text"
            elif kind == "Int":
                text = f"({sql})::text"
            elif kind == "Boolean":
                text = f"CASE WHEN {sql} THEN 'true' WHEN NOT {sql} THEN 'false' END"
            elif kind == "DateTime":
                text = _quoted(_iso_datetime(sql))
            elif kind == "Date":
                text = _quoted(_iso_date(sql))
            elif kind == "Decimal":
                text = _quoted(f"({sql})::text")
            elif kind == "JSON":
                self.state.reencode = True
                text = f"({sql})::text"
            else:
                raise Unsupported(f"scalar {kind}")
        else:
            raise Unsupported(f"type {named}")
        return f"coalesce({text}, 'null')" if nullable else text

    def _global_id(self, type_name: str, alias: str) -> str:
        return _quoted(_base64url(f"{_literal(type_name + ':')} || {alias}.id::text"))

    def _cursor(self, keys: list[querying.SortKey], read: Callable[[str], str]) -> str:
        """``querying.encode_cursor`` of a row computed in SQL; ``read(column)`` is the SQL
        of a key column's value."""
        values = []
        for key in keys:
            column = getattr(key.column, "expression", key.column)
            sql = read(column.name)
            kind = querying.python_type(column)
            if kind is not None and issubclass(kind, enum.Enum | str):
                text = f"to_json({sql})::text"
            elif kind is uuid.UUID:
                text = _quoted(f"{sql}::text")
            elif kind is int:
                text = f"({sql})::text"
            elif kind is not None and kind.__name__ == "datetime":
                text = _quoted(_iso_datetime(sql))
            elif kind is not None and kind.__name__ == "date":
                text = _quoted(_iso_date(sql))
            elif kind is not None and kind.__name__ == "Decimal":
                text = _quoted(f"({sql})::text")
            else:
                raise Unsupported(f"cursor over {column}")
            values.append(f"coalesce({text}, 'null')")
        head = _literal('{"s":' + _json_string(querying.cursor_signature(keys)) + ',"v":[')
        body = " || ',' || ".join(values)
        return _quoted(_base64url(f"{head} || {body} || ']}}'"))

    # -------------------------------------------------------------------- objects

    def _json_object(
        self,
        gql_type: Any,
        selection_sets: list[SelectionSetNode],
        value: Callable[[str, list[FieldNode]], str],
    ) -> str:
        """JSON text of an object of ``gql_type``: the selected fields in response order,
        ``__typename`` answered here and every other field by ``value(name, nodes)``, the
        SQL of its JSON text (raising ``Unsupported`` for a field it does not know)."""
        assert isinstance(gql_type, GraphQLObjectType)
        out = _Concat()
        out.lit("{")
        for index, (key, nodes) in enumerate(self.collect(gql_type, selection_sets).items()):
            out.lit(("," if index else "") + _json_string(key) + ":")
            name = nodes[0].name.value
            if name == "__typename":
                out.lit(_json_string(gql_type.name))
            else:
                out.expr(value(name, nodes))
        out.lit("}")
        return out.sql()

    def _object(self, type_name: str, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """JSON text of one row of ``type_name`` read from ``alias``."""
        info = OBJECT_TYPES.get(type_name)
        if info is None:
            raise Unsupported(f"type {type_name}")
        self.state.models.add(info.model)
        gql_type = self.gschema.get_type(type_name)
        assert isinstance(gql_type, GraphQLObjectType)
        plain = plain_fields(self.schema, type_name)

        def value(name: str, nodes: list[FieldNode]) -> str:
            subselections = self._subselections(nodes)
            if name == "id":
                return self._global_id(type_name, alias)
            if name in plain:
                if nodes[0].arguments:
                    raise Unsupported(f"arguments on {type_name}.{name}")
                return self._value(gql_type.fields[name].type, f'{alias}."{plain[name]}"')
            if name in info.relations:
                relation = info.relations[name]
                foreign_key = f'{alias}."{relation.foreign_key}"'
                return self._by_id(relation.target, foreign_key, subselections)
            if name in info.lists:
                child = info.lists[name]
                arguments = self._arguments(type_name, name, nodes[0])
                if child.items:
                    arguments = {"first": self.settings.max_page_size}
                return self._connection(
                    child.target,
                    child.spec,
                    arguments,
                    gql_type.fields[name].type,
                    subselections,
                    parent=(child, alias),
                )
            if name in info.computed:
                if name == "address":
                    return self._address(alias, subselections)
                if name == "purchaseSummary":
                    return self._purchase_summary(alias, subselections)
                if name == "rfm":
                    return self._rfm(alias, subselections)
                if name == "rating":
                    return self._rating(alias, subselections)
                if name == "lastMessage":
                    return self._last_message(alias, subselections)
                if name == "unreadCount":
                    return self._unread_count(alias)
                if name == "delivery":
                    return self._delivery(alias, subselections)
                if name == "attachments":
                    return self._attachments(alias, subselections)
                if name == "deliveries":
                    first = self._arguments(type_name, name, nodes[0])["first"]
                    return self._webhook_deliveries(alias, first, subselections)
                if name == "scopes":
                    return self._scopes(alias, gql_type.fields[name].type)
                if name == "lines":
                    return self._order_lines(alias, subselections)
                if name == "counts":
                    return self._job_counts(alias, subselections)
                if name == "errors":
                    first = self._arguments(type_name, name, nodes[0])["first"]
                    return self._job_errors(alias, first, subselections)
            raise Unsupported(f"{type_name}.{name}")

        return self._json_object(gql_type, selection_sets, value)

    def _by_id(self, type_name: str, id_sql: str, selection_sets: list[SelectionSetNode]) -> str:
        """A row by id in the workspace (``records.get_many``), or null."""
        alias, table, where, body = self._readable(type_name, selection_sets)
        return (
            f"coalesce((SELECT {body} FROM {table} {alias} "
            f"WHERE {where} AND {alias}.id = {id_sql}), 'null')"
        )

    def _by_id_joined(self, type_name: str, selection_sets: list[SelectionSetNode]) -> str:
        """``_by_id`` for many rows at once: a derived table of the readable rows of
        ``type_name`` (columns ``id`` and ``body``, the row's JSON text) to LEFT JOIN on the
        id once, where one lookup per row would be planned as a scan per row (the sales
        report's forecast owners)."""
        alias, table, where, body = self._readable(type_name, selection_sets)
        return f"(SELECT {alias}.id, {body} AS body FROM {table} {alias} WHERE {where})"

    def _readable(
        self, type_name: str, selection_sets: list[SelectionSetNode]
    ) -> tuple[str, str, str, str]:
        """The alias, table, WHERE (workspace scope and visibility) and JSON body of a
        readable row of ``type_name``."""
        info = OBJECT_TYPES.get(type_name)
        if info is None:
            raise Unsupported(f"type {type_name}")
        alias = self._alias()
        where = self._sql(scope_condition(info.model, self.actor), info.model, alias)
        if info.visibility is not None:
            where += " AND " + self._visible(info.visibility, info.model, alias)
        body = self._object(type_name, alias, selection_sets)
        return alias, info.model.__tablename__, where, body

    def _visible(self, visibility: Visibility, model: type[Any], alias: str) -> str:
        """The row's visibility rule (``conversations.get_many_visible``) as SQL."""
        # Parenthesised: the rule is an OR (public, or assigned to the caller), and it is
        # joined to the row's other conditions with AND.
        condition = visibility.condition(self.actor)
        if visibility.via is None:
            return f"({self._sql(condition, model, alias)})"
        other = self._alias()
        table = visibility.model.__tablename__
        rule = self._sql(condition, visibility.model, other)
        return (
            f"EXISTS (SELECT 1 FROM {table} {other} "
            f'WHERE {other}.id = {alias}."{visibility.via}" AND ({rule}))'
        )

    def _rating(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``conversations.rating_of``: from the row's own columns, or null."""
        gql_type = self.gschema.get_type("ConversationRating")
        assert isinstance(gql_type, GraphQLObjectType)
        definition = self.schema.get_type_by_name("ConversationRating")
        assert isinstance(definition, StrawberryObjectDefinition)
        names = self.schema.config.name_converter
        columns = {
            names.get_graphql_name(f): conversations.RATING_COLUMNS[f.python_name].key
            for f in definition.fields
        }

        def value(name: str, nodes: list[FieldNode]) -> str:
            return self._value(gql_type.fields[name].type, f'{alias}."{columns[name]}"')

        body = self._json_object(gql_type, selection_sets, value)
        unrated = " OR ".join(
            f'{alias}."{conversations.RATING_COLUMNS[name].key}" IS NULL'
            for name in conversations.RATING_REQUIRED
        )
        return f"CASE WHEN {unrated} THEN 'null' ELSE {body} END"

    def _last_message(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``conversations.last_messages``: the message ``is_last_message`` picks, or
        null before the first one."""
        from crm_graphql import models

        message = self._alias()
        where = self._sql(scope_condition(models.Message, self.actor), models.Message, message)
        latest = self._sql(
            conversations.is_last_message(),
            models.Message,
            message,
            outer=(models.Conversation, alias),
        )
        body = self._object("Message", message, selection_sets)
        return (
            f"coalesce((SELECT {body} FROM messages {message} WHERE {where} AND {latest}), 'null')"
        )

    def _unread_count(self, alias: str) -> str:
        """``conversations.unread_count`` of the row, for the caller."""
        from crm_graphql import models

        gql_type = self.gschema.get_type("Conversation")
        assert isinstance(gql_type, GraphQLObjectType)
        count = conversations.unread_count(self.actor)
        return self._value(
            gql_type.fields["unreadCount"].type,
            self._sql(count, models.Conversation, alias),
        )

    def _row_object(
        self,
        type_name: str,
        row: str,
        selection_sets: list[SelectionSetNode],
        computed: dict[str, str] | None = None,
        nested: Callable[[str, list[FieldNode]], str] | None = None,
    ) -> str:
        """JSON of a row read by a service statement, for a type that is no read-model
        type: its fields without a resolver read their column as stored (``computed``:
        the SQL of the others' JSON; ``nested``: of those with a selection of their own)."""
        gql_type = self.gschema.get_type(type_name)
        assert isinstance(gql_type, GraphQLObjectType)
        definition = self.schema.get_type_by_name(type_name)
        assert isinstance(definition, StrawberryObjectDefinition)
        names = self.schema.config.name_converter
        columns = {
            names.get_graphql_name(f): f.python_name
            for f in definition.fields
            if f.base_resolver is None and f.python_name != "id"
        }

        def value(name: str, nodes: list[FieldNode]) -> str:
            if computed is not None and name in computed:
                return computed[name]
            if name in columns:
                return self._value(gql_type.fields[name].type, f'{row}."{columns[name]}"')
            if nested is not None:
                return nested(name, nodes)
            raise Unsupported(f"{type_name}.{name}")

        return self._json_object(gql_type, selection_sets, value)

    def _delivery(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``email.deliveries`` of the message: its mail if it has one and the caller sees
        its conversation, else null."""
        from crm_graphql import models
        from crm_graphql.services import email

        model = models.EmailMessage
        self.state.models.add(model)
        rows = self._sql(email.deliveries_statement(self.actor), model, model.__tablename__)
        mail = self._alias()
        body = self._row_object("EmailDelivery", mail, selection_sets)
        return (
            f"coalesce((SELECT {body} FROM ({rows}) {mail} "
            f"WHERE {mail}.message_id = {alias}.id), 'null')"
        )

    def _attachments(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``email.attachments_of`` of the message: its files in their order, each with
        the download URL ``resolvers.conversations.attachment_url`` gives."""
        from crm_graphql import models
        from crm_graphql.services import email

        model = models.MessageAttachment
        self.state.models.add(model)
        rows = self._sql(email.attachments_statement(self.actor), model, model.__tablename__)
        file = self._alias()
        order = ", ".join(self._sql(term, model, file) for term in email.ATTACHMENTS_ORDER)
        global_id = _base64url(f"'MessageAttachment:' || {file}.id::text")
        url = _quoted(f"'/attachments/' || {global_id}")
        body = self._row_object(
            "MessageAttachment",
            file,
            selection_sets,
            {"id": self._global_id("MessageAttachment", file), "url": url},
        )
        return (
            f"(SELECT '[' || coalesce(string_agg({body}, ',' ORDER BY {order}), '') || ']' "
            f"FROM ({rows}) {file} WHERE {file}.message_id = {alias}.id)"
        )

    def _webhook_deliveries(
        self, alias: str, first: int, selection_sets: list[SelectionSetNode]
    ) -> str:
        """``webhooks.recent_deliveries`` of the webhook: its newest deliveries (as many as
        ``deliveries_limit`` takes), each with its attempts (``attempts_of``)."""
        from crm_graphql import enums, models
        from crm_graphql.resolvers.webhooks import deliveries_limit
        from crm_graphql.services import webhooks

        model = models.WebhookDelivery
        self.state.models.add(model)
        rows = self._sql(webhooks.deliveries_statement(self.actor), model, model.__tablename__)
        row = self._alias()
        order = ", ".join(self._sql(term, model, row) for term in webhooks.DELIVERIES_ORDER)
        pending = _literal(enums.DeliveryStatus.PENDING.value)
        gql_type = self.gschema.get_type("WebhookDelivery")
        assert isinstance(gql_type, GraphQLObjectType)
        next_attempt = self._value(
            gql_type.fields["nextAttemptAt"].type,
            f"CASE WHEN {row}.status = {pending} THEN {row}.next_attempt_at END",
        )

        def computed(name: str, nodes: list[FieldNode]) -> str:
            if name == "attemptHistory":
                return self._delivery_attempts(row, self._subselections(nodes))
            raise Unsupported(f"WebhookDelivery.{name}")

        body = self._row_object(
            "WebhookDelivery",
            row,
            selection_sets,
            {
                "id": self._global_id("WebhookDelivery", row),
                "deliveryId": f"to_json({row}.id::text)::text",
                "status": self._value(gql_type.fields["status"].type, f"{row}.status"),
                "nextAttemptAt": next_attempt,
            },
            computed,
        )
        limit = self._param(deliveries_limit(first))
        return (
            f"(SELECT '[' || coalesce(string_agg({body}, ',' ORDER BY {order}), '') || ']' "
            f"FROM (SELECT * FROM ({rows}) {row} WHERE {row}.webhook_id = {alias}.id "
            f"ORDER BY {order} LIMIT {limit}::int) {row})"
        )

    def _delivery_attempts(self, delivery: str, selection_sets: list[SelectionSetNode]) -> str:
        """``webhooks.attempts_of`` of the delivery: every attempt, oldest first, as stored."""
        from crm_graphql import models
        from crm_graphql.services import webhooks

        model = models.WebhookDeliveryAttempt
        rows = self._sql(webhooks.attempts_statement(self.actor), model, model.__tablename__)
        row = self._alias()
        order = ", ".join(self._sql(term, model, row) for term in webhooks.ATTEMPTS_ORDER)
        body = self._row_object("WebhookDeliveryAttempt", row, selection_sets)
        return (
            f"(SELECT '[' || coalesce(string_agg({body}, ',' ORDER BY {order}), '') || ']' "
            f"FROM ({rows}) {row} WHERE {row}.delivery_id = {delivery}.id)"
        )

    def _scopes(self, alias: str, gql_type: Any) -> str:
        """``resolvers.security.api_key_scopes``: the stored scopes in their order, each
        by its enum name; a scope the enum does not know fails the statement (the
        executed path answers its error)."""
        list_type, _ = _unwrap(gql_type)
        scope = list_type.of_type  # non-null: an unknown value is NULL here, not null
        item = f"coalesce({self._value(scope, 'u.s')}, {_unrepresentable('u.s')})"
        return (
            f"(SELECT '[' || coalesce(string_agg({item}, ',' ORDER BY u.n), '') || ']' "
            f"FROM unnest({alias}.scopes) WITH ORDINALITY u(s, n))"
        )

    def _order_lines(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``orders.lines_by_order`` of the row: its lines in their order, each line's
        columns as stored and its product read by id like any relation."""
        from crm_graphql import models

        self.state.models.add(models.OrderLine)
        gql_type = self.gschema.get_type("OrderLine")
        assert isinstance(gql_type, GraphQLObjectType)
        definition = self.schema.get_type_by_name("OrderLine")
        assert isinstance(definition, StrawberryObjectDefinition)
        names = self.schema.config.name_converter
        columns = {
            names.get_graphql_name(f): f.python_name
            for f in definition.fields
            if f.base_resolver is None
        }
        line = self._alias()

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name == "product":
                return self._by_id("Product", f"{line}.product_id", self._subselections(nodes))
            if name in columns:
                return self._value(gql_type.fields[name].type, f'{line}."{columns[name]}"')
            raise Unsupported(f"OrderLine.{name}")

        item = self._json_object(gql_type, selection_sets, value)
        where = self._sql(scope_condition(models.OrderLine, self.actor), models.OrderLine, line)
        return (
            f"(SELECT '[' || coalesce(string_agg({item}, ',' ORDER BY {line}.position), '') "
            f"|| ']' FROM {models.OrderLine.__tablename__} {line} "
            f"WHERE {where} AND {line}.order_id = {alias}.id)"
        )

    def _job_counts(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``resolvers.jobs.counts``: the stored object's entries sorted by name (Python's
        code-point order is the "C" collation's), each count a whole number."""
        gql_type = self.gschema.get_type("JobCount")

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name == "name":
                return "to_json(c.key)::text"
            if name == "count":
                return _json_int("c.value", nullable=False)
            raise Unsupported(f"JobCount.{name}")

        item = self._json_object(gql_type, selection_sets, value)
        column = f"{alias}.counts"
        return (
            f"CASE WHEN jsonb_typeof({column}) = 'object' THEN (SELECT '[' || "
            f"coalesce(string_agg({item}, ',' ORDER BY c.key COLLATE \"C\"), '') || ']' "
            f"FROM jsonb_each({column}) c) ELSE {_unrepresentable(column)} END"
        )

    def _job_errors(self, alias: str, first: int, selection_sets: list[SelectionSetNode]) -> str:
        """``resolvers.jobs.errors``: the first ``first`` stored errors, each read as the
        resolver reads it (``code`` VALIDATION and ``message`` empty when missing); a value
        the API cannot represent takes the executed path."""
        gql_type = self.gschema.get_type("JobError")
        entry = "e.v"

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name == "line":
                return _json_int(f"{entry} -> 'line'", nullable=True)
            if name == "field":
                return _json_text(f"{entry} -> 'field'", missing="null")
            if name == "code":
                return _json_text(f"{entry} -> 'code'", missing=_json_string("VALIDATION"))
            if name == "message":
                return _json_text(f"{entry} -> 'message'", missing=_json_string(""))
            raise Unsupported(f"JobError.{name}")

        item = self._json_object(gql_type, selection_sets, value)
        item = (
            f"CASE WHEN jsonb_typeof({entry}) = 'object' THEN {item} "
            f"ELSE {_unrepresentable(entry)} END"
        )
        column = f"{alias}.errors"
        return (
            f"CASE WHEN jsonb_typeof({column}) = 'array' THEN (SELECT '[' || "
            f"coalesce(string_agg({item}, ',' ORDER BY e.n), '') || ']' "
            f"FROM jsonb_array_elements({column}) WITH ORDINALITY e(v, n) "
            f"WHERE e.n <= greatest(0, {self._param(first)}::int)) "
            f"ELSE {_unrepresentable(column)} END"
        )

    def _address(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``address_of`` of the stored JSON (camelCase keys; null when empty)."""
        column = f"{alias}.address"
        stored = ("street", "city", "region", "postalCode", "country")

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name not in stored:
                raise Unsupported(f"Address.{name}")
            return f"coalesce(to_json({column} ->> {_literal(name)})::text, 'null')"

        fields = self._json_object(self.gschema.get_type("Address"), selection_sets, value)
        # ``address_of`` answers null for a falsy value, reads an object's text fields,
        # and fails on anything else; so does the statement, and the executed path
        # answers (with its masked INTERNAL error on that field).
        falsy = f"{column} IS NULL OR {column} IN ('null', '{{}}', '[]', '\"\"', '0', 'false')"
        readable = " AND ".join(
            f"coalesce(jsonb_typeof({column} -> {_literal(key)}), 'null') IN ('null', 'string')"
            for key in stored
        )
        return (
            f"CASE WHEN {falsy} THEN 'null' WHEN jsonb_typeof({column}) = 'object' AND "
            f"{readable} THEN {fields} ELSE {_unrepresentable(column)} END"
        )

    def _purchase_summary(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``customers.purchase_summaries`` of the row: paid and fulfilled orders grouped
        by currency, then folded into one summary."""
        from crm_graphql import models

        self.state.models.add(models.Order)
        orders = self._alias()
        where = self._sql(counted_orders_condition(self.actor), models.Order, orders)

        def money(name: str, nodes: list[FieldNode]) -> str:
            if name == "amount":
                return _quoted("s.total::text")
            if name == "currency":
                return "to_json(btrim(s.currency))::text"
            raise Unsupported(f"Money.{name}")

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name == "orderCount":
                return "coalesce(sum(s.n), 0)::text"
            if name == "firstOrderAt":
                return f"coalesce({_quoted(_iso_datetime('min(s.first_at)'))}, 'null')"
            if name == "lastOrderAt":
                return f"coalesce({_quoted(_iso_datetime('max(s.last_at)'))}, 'null')"
            if name == "totals":
                item = self._json_object(
                    self.gschema.get_type("Money"), self._subselections(nodes), money
                )
                return f"'[' || coalesce(string_agg({item}, ',' ORDER BY s.currency), '') || ']'"
            raise Unsupported(f"PurchaseSummary.{name}")

        summary = self._json_object(self.gschema.get_type("PurchaseSummary"), selection_sets, value)
        return (
            f"(SELECT {summary} FROM (SELECT {orders}.currency, count(*) AS n, "
            f"sum({orders}.amount) AS total, min({orders}.placed_at) AS first_at, "
            f"max({orders}.placed_at) AS last_at FROM orders {orders} WHERE {where} "
            f"AND {orders}.customer_id = {alias}.id GROUP BY {orders}.currency) s GROUP BY ())"
        )

    def _rfm(self, alias: str, selection_sets: list[SelectionSetNode]) -> str:
        """``rfm.customer_rfm`` of the row (null without scores): the fields read as they
        are stored; the ones computed in Python (recency as of now, money, lifetime value,
        drill-down) take the executed path."""
        from crm_graphql import models

        self.state.models.add(models.Order)
        self.state.reads_rfm_scores = True
        scores = rfm.scores(self.actor)
        scores_sql = self._sql(select(scores), models.Customer, alias)
        gql_type = self.gschema.get_type("CustomerRfm")
        assert isinstance(gql_type, GraphQLObjectType)
        columns = {
            "frequency": "order_count",
            "rScore": "r",
            "fScore": "f",
            "mScore": "m",
            "fmScore": "fm",
            "segment": "segment",
            "firstOrderAt": "first_order_at",
            "lastOrderAt": "last_order_at",
        }

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name not in columns or nodes[0].arguments:
                raise Unsupported(f"CustomerRfm.{name}")
            return self._value(gql_type.fields[name].type, f"s.{columns[name]}")

        body = self._json_object(gql_type, selection_sets, value)
        return (
            f"coalesce((SELECT {body} FROM ({scores_sql}) s "
            f"WHERE s.customer_id = {alias}.id), 'null')"
        )

    def _summary_count(self, counted: ChildCount, parent_alias: str) -> str:
        """A parent's number of live children read from their summary (``ChildCount``):
        the summary's rows of the parent, in the reader's workspace, summed."""
        model = counted.model
        self.state.models.add(model)
        alias = self._alias()
        where = self._sql(scope_condition(model, self.actor), model, alias)
        for column, parent_column in counted.keys:
            where += f' AND {alias}."{column}" = {parent_alias}."{parent_column}"'
        return (
            f'(SELECT coalesce(sum({alias}."{counted.column}"), 0) '
            f"FROM {model.__tablename__} {alias} WHERE {where})::text"
        )

    def _segment_membership(self, segment_id: Any) -> dict[str, Any]:
        """A built-in segment's customers filter (constants, nothing to read); a saved
        segment's filter is read at run time, so it takes the executed path, as does an
        ID the executed path answers with an error."""
        try:
            type_name, id = from_global_id(segment_id)
            built_in = segments.BUILT_IN_BY_ID.get(uuid.UUID(str(id)))
        except (MalformedId, ValueError) as error:
            raise Unsupported("a malformed segment ID") from error
        if type_name != "Segment" or built_in is None:
            raise Unsupported("customers of a saved segment")
        from crm_graphql import models

        self.state.models.add(models.Segment)
        return built_in.membership()

    # ---------------------------------------------------------------- connections

    def _connection(
        self,
        type_name: str,
        spec: querying.ListSpec[Any],
        args: dict[str, Any],
        connection_gql_type: Any,
        selection_sets: list[SelectionSetNode],
        *,
        parent: tuple[ChildList, str] | None = None,
        row_json: Callable[[str, list[SelectionSetNode]], str] | None = None,
    ) -> str:
        """One page of a list as the executed path pages it (``paginate`` for a root
        list, ``paginate_per_parent`` for a nested one), with only the selected parts.
        ``row_json(alias, selection_sets)``: the JSON of a row of a type that is no
        read-model type (by default the read model's ``_object``)."""
        if row_json is None:

            def row_json(alias: str, selection_sets: list[SelectionSetNode]) -> str:
                return self._object(type_name, alias, selection_sets)

        try:
            request = querying.PageRequest(
                first=args.get("first"),
                after=args.get("after"),
                last=args.get("last"),
                before=args.get("before"),
                max_size=self.settings.max_page_size,
                default_size=self.settings.default_page_size,
            )
            size, forward, cursor = request.validated()
            if parent is not None and not forward:
                raise Unsupported("nested lists page forward only")
            filter = filter_spec(args.get("filter"))
            # Plans are made per execution for the client's values (below); a built-in
            # segment's membership is a constant, which a generic plan serves as well.
            client_values = bool(filter)
            if args.get("segment_id") is not None:
                membership = self._segment_membership(args["segment_id"])
                filter = dict(segments.within(membership, filter))
            if rfm.uses_scores([filter]):
                self.state.reads_rfm_scores = True
            ordering = order_spec(args.get("order_by"))
            if spec.custom_fields is not None and querying.uses_custom_fields(filter, ordering):
                # The workspace's definitions are read at run time (ListSpec.custom_terms).
                raise Unsupported("a filter or order on custom fields")
            if _computed_filter_fields(spec, self.actor, filter):
                # Subqueries over other tables (a customer's orders, RFM scores) would be
                # rewritten onto the list's alias here: the executed path answers.
                raise Unsupported("a filter field computed by a subquery")
            keys = spec.keys(ordering)
            # What a summary of the list counts: every live row (no filter, no archived).
            whole_list = not filter and not args.get("include_archived")
            base = spec.statement(
                self.actor, filter, include_archived=bool(args.get("include_archived"))
            ).whereclause
            if client_values or cursor is not None:
                self.state.plan(PlanCache.CUSTOM)
            effective = keys if forward else [k.reversed() for k in keys]
            assert base is not None  # the statement is scoped: it always has a WHERE
            condition: ColumnElement[bool] = base
            if cursor is not None:
                values = querying.decode_cursor(keys, cursor, "after" if forward else "before")
                condition = and_(condition, querying.after_condition(effective, values))
        except DomainError as error:
            raise Unsupported(f"the executed path answers an error: {error}") from error
        model = spec.model
        self.state.models.add(model)
        table = model.__tablename__
        alias = self._alias()
        parent_sql = ""
        if parent is not None:
            child, parent_alias = parent
            column = spec.parent_column(child.parent)
            parent_sql = f' AND {alias}."{column.key}" = {parent_alias}.id'
        order = ", ".join(self._sql(term, model, alias) for term in querying.order_terms(effective))
        limit = size + 1 if (size > 0 or parent is not None) else 0

        connection_type, _ = _unwrap(connection_gql_type)
        display = "ASC" if forward else "DESC"
        reverse = "DESC" if forward else "ASC"
        page = f"{alias}.crm_rn <= {size}"
        more = f"CASE WHEN count(*) > {size} THEN 'true' ELSE 'false' END"
        # A filtered root list's first page with its totalCount: the filter is evaluated
        # once, into a materialized set both read (a segment's filter reads summaries
        # and looks every member up: twice was half the speed of its SQL floor).
        matched = self._alias() if parent is None and filter and cursor is None else None
        counted_matches = False
        cursor_given = "'true'" if cursor is not None else "'false'"

        def boundary_cursor(direction: str) -> str:
            # The key values of the first/last row of the page, then one cursor of them.
            def pick(column: str) -> str:
                return (
                    f'(array_agg({alias}."{column}" ORDER BY {alias}.crm_rn {direction}) '
                    f"FILTER (WHERE {page}))[1]"
                )

            return (
                f"CASE WHEN count(*) FILTER (WHERE {page}) = 0 THEN 'null' "
                f"ELSE {self._cursor(keys, pick)} END"
            )

        def page_info(name: str, nodes: list[FieldNode]) -> str:
            if name == "hasNextPage":
                return more if forward else cursor_given
            if name == "hasPreviousPage":
                return cursor_given if forward else more
            if name == "startCursor":
                return boundary_cursor(display)
            if name == "endCursor":
                return boundary_cursor(reverse)
            raise Unsupported(f"PageInfo.{name}")

        def edge(name: str, nodes: list[FieldNode]) -> str:
            if name == "cursor":
                return self._cursor(keys, lambda column: f'{alias}."{column}"')
            if name == "node":
                return row_json(alias, self._subselections(nodes))
            raise Unsupported(f"edge field {name}")

        def page_items(item: str) -> str:
            """A JSON array of ``item`` over the page's rows, in the page's order."""
            return (
                f"'[' || coalesce(string_agg({item}, ',' ORDER BY {alias}.crm_rn "
                f"{display}) FILTER (WHERE {page}), '') || ']'"
            )

        def value(name: str, nodes: list[FieldNode]) -> str:
            subselections = self._subselections(nodes)
            if name in ("edges", "nodes"):
                if name == "nodes":
                    item = row_json(alias, subselections)
                else:
                    edge_type, _ = _unwrap(connection_type.fields["edges"].type)
                    edge_type, _ = _unwrap(edge_type.of_type)
                    item = self._json_object(edge_type, subselections, edge)
                return page_items(item)
            if name == "pageInfo":
                info_type, _ = _unwrap(connection_type.fields["pageInfo"].type)
                return self._json_object(info_type, subselections, page_info)
            if name == "totalCount":
                if matched is not None:
                    nonlocal counted_matches
                    counted_matches = True
                    return f"(SELECT count(*) FROM {matched})::text"
                if parent is not None and parent[0].counted is not None and whole_list:
                    return self._summary_count(parent[0].counted, parent[1])
                counted = self._alias()
                count_where = self._sql(base, model, counted)
                if parent is not None:
                    count_where += f' AND {counted}."{column.key}" = {parent[1]}.id'
                return f"(SELECT count(*) FROM {table} {counted} WHERE {count_where})::text"
            raise Unsupported(f"{connection_type.name}.{name}")

        if parent is not None and parent[0].items:  # a plain list: the page's items
            body = page_items(row_json(alias, selection_sets))
        else:
            body = self._json_object(connection_type, selection_sets, value)
        if parent is None and filter:
            # A filtered page picks its ids first, then reads only those rows: the
            # filter and the order can then come from an index alone (index-only scan)
            # and the planner weighs that plan fairly. Reading whole rows while
            # filtering made it prefer walking the order's index, which a rare name
            # fragment turns into tens of thousands of rows (Q4: 50 ms against 5).
            picked = self._alias()
            terms = querying.order_terms(effective)
            picked_where = self._sql(condition, model, picked)
            if counted_matches:
                assert matched is not None
                columns = ", ".join(
                    f'{picked}."{name}"' for name in _columns_of(terms, model, ("id",))
                )
                with_matched = (
                    f"WITH {matched} AS MATERIALIZED "
                    f"(SELECT {columns} FROM {table} {picked} WHERE {picked_where}) "
                )
                picked, picked_from = matched, matched
            else:
                picked_from = f"{table} {picked} WHERE {picked_where}"
            picked_order = ", ".join(self._sql(term, model, picked) for term in terms)
            rows = (
                f"SELECT {alias}.* FROM {table} {alias} WHERE {alias}.id IN "
                f"(SELECT {picked}.id FROM {picked_from} ORDER BY {picked_order} LIMIT {limit})"
            )
        else:
            where = self._sql(condition, model, alias)
            rows = (
                f"SELECT {alias}.* FROM {table} {alias} WHERE {where}{parent_sql} "
                f"ORDER BY {order} LIMIT {limit}"
            )
        return (
            f"({with_matched if counted_matches else ''}"
            f"SELECT {body} FROM (SELECT {alias}.*, row_number() OVER (ORDER BY {order}) "
            f"AS crm_rn FROM ({rows}) {alias}) {alias} GROUP BY ())"
        )

    # ------------------------------------------------------------------- the root

    def _node(self, global_id: Any, selection_sets: list[SelectionSetNode]) -> str:
        try:
            type_name, id = from_global_id(global_id)
        except MalformedId:
            return "'null'"
        if type_name in LOADED_NODES and type_name not in OBJECT_TYPES:
            # A job is a row with its visibility rule declared (``Visibility``); the
            # others are not rows (built-in segments) or not declared.
            raise Unsupported(f"{type_name} nodes are loaded by their service")
        if type_name not in NODE_MODELS:
            return "'null'"
        return self._by_id(type_name, f"{self._param(id)}::uuid", selection_sets)

    def _me(self, selection_sets: list[SelectionSetNode]) -> str:
        """The caller as a ``User`` (``resolvers.users.me``: the user by id, null for an API
        key). Plans are shared by the users of a role, so the id is a parameter that
        execution fills in (``Compiled.user_params``)."""
        if self.actor.user_id is None:
            return "'null'"
        return self._by_id("User", f"{self._user()}::uuid", selection_sets)

    def _custom_field_definitions(
        self, args: dict[str, Any], selection_sets: list[SelectionSetNode]
    ) -> str:
        """``custom_fields.list_definitions``: its read check, its statement and order,
        and the archived ones only when asked for (``listed_condition``)."""
        from crm_graphql import models
        from crm_graphql.services import custom_fields
        from crm_graphql.services.policy import Action, authorize

        authorize(self.actor, Action.READ_CUSTOM_FIELDS)
        model = models.CustomFieldDefinition
        # The schema's enum to the model's, by name (``resolvers.custom_fields``).
        entity = models.CustomFieldEntity[args["entity"].name]
        statement = custom_fields.definitions_statement(self.actor, entity)
        statement = statement.where(
            custom_fields.listed_condition(bool(args.get("include_archived")))
        )
        table = model.__tablename__
        rows = self._sql(statement, model, table)
        alias = self._alias()
        order = ", ".join(self._sql(term, model, alias) for term in custom_fields.DEFINITIONS_ORDER)
        body = self._object("CustomFieldDefinition", alias, selection_sets)
        return (
            f"(SELECT '[' || coalesce(string_agg({body}, ',' ORDER BY {order}), '') || ']' "
            f"FROM ({rows}) {alias})"
        )

    def _sensitive_custom_fields(self) -> str:
        """``privacy.sensitive_custom_fields``: the workspace's keys as stored (none for
        a workspace that is gone); a NULL key, which the API cannot show, fails the
        statement."""
        from crm_graphql import models

        keys = "w.sensitive_custom_fields"
        return (
            f"coalesce((SELECT CASE WHEN array_position({keys}, NULL) IS NULL "
            f"THEN array_to_json({keys})::text ELSE {_unrepresentable(keys)} END "
            f"FROM {models.Workspace.__tablename__} w WHERE w.id = $1), '[]')"
        )

    def _workspace(self, selection_sets: list[SelectionSetNode]) -> str:
        """``resolvers.workspaces.workspace``: the caller's workspace row; ``emailFrom``
        as ``workspaces.email_from_of`` reads it, behind the same check (refused for
        others than admins: the executed path answers FORBIDDEN)."""
        from crm_graphql import models
        from crm_graphql.services import workspaces

        # Every member reads the workspace (no read rule per model, as for
        # ``sensitiveCustomFields``); its settings are behind the check below.
        model = models.Workspace
        gql_type = self.gschema.get_type("Workspace")
        sender_type = self.gschema.get_type("EmailSender")
        assert isinstance(gql_type, GraphQLObjectType)
        assert isinstance(sender_type, GraphQLObjectType)
        row = self._alias()
        sender_columns = {"address": "email_from_address", "name": "email_from_name"}

        def sender(name: str, nodes: list[FieldNode]) -> str:
            if name not in sender_columns:
                raise Unsupported(f"EmailSender.{name}")
            return self._value(sender_type.fields[name].type, f"{row}.{sender_columns[name]}")

        def value(name: str, nodes: list[FieldNode]) -> str:
            if name == "id":
                return self._global_id("Workspace", row)
            if name == "name":
                return self._value(gql_type.fields[name].type, f"{row}.name")
            if name == "emailFrom":
                workspaces.authorize_settings(self.actor)
                body = self._json_object(sender_type, self._subselections(nodes), sender)
                return f"CASE WHEN {row}.email_from_address IS NULL THEN 'null' ELSE {body} END"
            raise Unsupported(f"Workspace.{name}")

        body = self._json_object(gql_type, selection_sets, value)
        return f"(SELECT {body} FROM {model.__tablename__} {row} WHERE {row}.id = $1)"

    def _job(self, global_id: Any, selection_sets: list[SelectionSetNode]) -> str:
        """``resolvers.jobs.job``: the job by id if the caller may see it, else null (a
        malformed ID or one of another type included, as ``decode_id`` answers)."""
        try:
            type_name, id = from_global_id(global_id)
        except MalformedId:
            return "'null'"
        if type_name != "Job":
            return "'null'"
        return self._by_id("Job", f"{self._param(id)}::uuid", selection_sets)

    def operation(self, operation: OperationDefinitionNode) -> Compiled:
        try:
            return self._operation(operation)
        except DomainError as error:  # a read the policy refuses: the executed path says so
            raise Unsupported(str(error)) from error

    def _operation(self, operation: OperationDefinitionNode) -> Compiled:
        query_type = self.gschema.query_type
        assert query_type is not None
        columns: list[str] = []
        keys: list[str] = []
        for key, nodes in self.collect(query_type, [operation.selection_set]).items():
            name = nodes[0].name.value
            subselections = self._subselections(nodes)
            if name == "__typename":
                column = "'\"Query\"'"
            elif name in ROOT_LISTS:
                type_name, spec = ROOT_LISTS[name]
                args = self._arguments("Query", name, nodes[0])
                column = self._connection(
                    type_name, spec, args, query_type.fields[name].type, subselections
                )
            elif (aggregate_spec := insight.aggregate_field(name)) is not None:
                column = insight.aggregate(
                    self,
                    aggregate_spec,
                    name,
                    nodes[0],
                    query_type.fields[name].type,
                    subselections,
                )
            elif (build := ROOT_FIELD_BUILDERS.get(name)) is not None:
                column = build(self, nodes[0], query_type.fields[name].type, subselections)
            elif name == "me":
                column = self._me(subselections)
            elif name in compiled_bulk.PREVIEWS:
                column = compiled_bulk.preview(
                    self, name, nodes[0], query_type.fields[name].type, subselections
                )
            elif name == "customFieldDefinitions":
                args = self._arguments("Query", name, nodes[0])
                column = self._custom_field_definitions(args, subselections)
            elif name == "sensitiveCustomFields":
                column = self._sensitive_custom_fields()
            elif name == "workspace":
                column = self._workspace(subselections)
            elif name == "job":
                column = self._job(self._arguments("Query", name, nodes[0])["id"], subselections)
            elif name == "node":
                args = self._arguments("Query", name, nodes[0])
                column = self._node(args["id"], subselections)
            elif name == "nodes":
                ids = self._arguments("Query", name, nodes[0])["ids"]
                if len(ids) > self.settings.max_page_size:
                    raise Unsupported("too many ids")
                items = [self._node(i, subselections) for i in ids]
                column = "'[' || " + " || ',' || ".join(items) + " || ']'" if items else "'[]'"
            else:
                raise Unsupported(f"Query.{name}")
            keys.append(key)
            columns.append(column)
        if not columns:
            raise Unsupported("empty operation")
        return self._statement(columns, keys)

    def _statement(self, columns: list[str], keys: list[str]) -> Compiled:
        """The statement of ``columns`` (one per response key) and what this compilation
        gathered: parameters, models read, plan cache mode, late parameters."""
        # $1 is always bound (some operations never read the workspace: ``nodes(ids: [])``).
        sql = "SELECT " + ", ".join(columns) + " FROM (SELECT $1::uuid AS workspace) request"
        return Compiled(
            sql=sql,
            params=self.state.params,
            keys=keys,
            models=frozenset(self.state.models),
            reencode=self.state.reencode,
            plan_cache=self.state.plan_cache,
            user_params=tuple(self.state.user_params),
            api_key_params=tuple(self.state.api_key_params),
            horizon_params=tuple(self.state.horizon_params),
            reads_rfm_scores=self.state.reads_rfm_scores,
        )

    # ---------------------------------------------------------------- live events

    def event(self, type_name: str, selection_sets: list[SelectionSetNode]) -> CompiledEvent:
        """A subscription's selection of the live event type ``type_name``, for every
        event of it: the event's own values (cursor, type, ...) are read in Python, each
        row it names (``readmodel.EVENT_TYPES``) is a column of one statement whose ids
        are parameters filled in per event (``CompiledEvent.id_params``)."""
        try:
            return self._event(type_name, selection_sets)
        except DomainError as error:  # a read the policy refuses: the executed path says so
            raise Unsupported(str(error)) from error

    def _event(self, type_name: str, selection_sets: list[SelectionSetNode]) -> CompiledEvent:
        relations = EVENT_TYPES.get(type_name)
        gql_type = self.gschema.get_type(type_name)
        if relations is None or not isinstance(gql_type, GraphQLObjectType):
            raise Unsupported(f"event type {type_name}")
        columns: list[str] = []
        keys: list[str] = []
        members: list[tuple[bytes, int | EventValueReader]] = []
        id_params: list[tuple[int, Callable[[Any], uuid.UUID | None]]] = []
        for index, (key, nodes) in enumerate(self.collect(gql_type, selection_sets).items()):
            head = ("," if index else "") + _json_string(key) + ":"
            name = nodes[0].name.value
            if name == "__typename":
                members.append((head.encode(), _constant(_json_string(type_name).encode())))
            elif name in relations:
                relation = relations[name]
                slot = self._param(None)
                id_params.append((len(self.state.params) - 1, relation.id_of))
                column = self._by_id(relation.target, f"{slot}::uuid", self._subselections(nodes))
                members.append((head.encode(), len(columns)))
                columns.append(column)
                keys.append(key)
            else:
                members.append((head.encode(), self._event_value(gql_type, name, nodes)))
        compiled = self._statement(columns, keys) if columns else None
        return CompiledEvent(compiled, tuple(members), tuple(id_params))

    def _event_value(
        self, gql_type: GraphQLObjectType, name: str, nodes: list[FieldNode]
    ) -> EventValueReader:
        """The JSON of an event's own value, as the executed path serializes it: a field
        without a resolver reads the root's attribute, one whose resolver takes only the
        root calls it (``ConversationEvent.lastReadSeq``). None: a non-null field without
        a value (the executed path answers that with its error)."""
        definition = self.schema.get_type_by_name(gql_type.name)
        assert isinstance(definition, StrawberryObjectDefinition)
        converter = self.schema.config.name_converter
        field_ = next((f for f in definition.fields if converter.get_graphql_name(f) == name), None)
        graphql_field = gql_type.fields.get(name)
        if field_ is None or graphql_field is None or graphql_field.args or nodes[0].arguments:
            raise Unsupported(f"{gql_type.name}.{name}")
        scalar = get_named_type(graphql_field.type)
        if not isinstance(scalar, GraphQLScalarType):
            raise Unsupported(f"{gql_type.name}.{name}: not a scalar")
        resolver = field_.base_resolver
        read: Callable[[Any], Any]
        if resolver is None:
            read = operator.attrgetter(field_.python_name)
        else:
            function = resolver.wrapped_func
            if not callable(function) or list(inspect.signature(function).parameters) != ["root"]:
                raise Unsupported(f"{gql_type.name}.{name}: resolved with more than its root")
            if inspect.iscoroutinefunction(function):
                raise Unsupported(f"{gql_type.name}.{name}: resolved asynchronously")
            read = function
        non_null = isinstance(graphql_field.type, GraphQLNonNull)
        serialize = scalar.serialize

        def value(root: Any) -> bytes | None:
            found = read(root)
            if found is None:
                return None if non_null else b"null"
            return orjson.dumps(serialize(found))

        return value


# Compiled service fragments: (SQLAlchemy cache key, table, IN-list lengths) -> SQL text
# over the bare table, each bind a slot ``\x00<bind index>[:<element>]\x00``.
_FRAGMENTS: dict[Any, str] = {}
_FRAGMENTS_MAX = 5000
_SLOT = re.compile("\x00(\\d+)(?::(\\d+))?\x00")
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


class _TablePrefixes(dict[str, re.Pattern[str]]):
    def __missing__(self, table: str) -> re.Pattern[str]:
        pattern = self[table] = re.compile(rf"(?<![\w.\"]){re.escape(table)}\.")
        return pattern


_TABLE_PREFIX = _TablePrefixes()


def _bind_values_in_order(expression: Any) -> list[Any]:
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import BindParameter

    return [e for e in visitors.iterate(expression) if isinstance(e, BindParameter)]


def _fragment(expression: Any, model: type[Any]) -> str:
    """Compile ``expression`` once; binds become slots numbered by their position in the
    expression's cache key (the order SQLAlchemy extracts values in)."""
    compiled = expression.compile(dialect=_DIALECT)
    cache_key = expression._generate_cache_key()
    order = cache_key.bindparams if cache_key is not None else _bind_values_in_order(expression)
    index = {id(bind): i for i, bind in enumerate(order)}
    # ``$n`` numbers only the plain binds; an IN list is a POSTCOMPILE marker instead.
    plain = [
        compiled.binds[n] for n in compiled.positiontup or [] if not compiled.binds[n].expanding
    ]
    slots = [f"\x00{index[id(bind)]}\x00" for bind in plain]
    text = str(compiled)

    def expand(match: re.Match[str]) -> str:
        bind = compiled.binds[match.group(1)]
        i = index[id(bind)]
        return ", ".join(f"\x00{i}:{j}\x00" for j in range(len(bind.effective_value)))

    text = _PLACEHOLDER.sub(lambda m: slots[int(m.group(1)) - 1], text)
    return _POSTCOMPILE.sub(expand, text)


def _filter_keys(spec: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("and", "or"):
                for sub in value or ():
                    keys |= _filter_keys(sub)
            elif key == "not":
                keys |= _filter_keys(value)
            else:
                keys.add(key)
    return keys


def _columns_of(terms: Iterable[Any], model: type[Any], first: Iterable[str]) -> list[str]:
    """The names of ``model``'s columns that ``terms`` read, after ``first``."""
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.schema import Column

    names = list(first)
    for term in terms:
        for element in visitors.iterate(term):
            if (
                isinstance(element, Column)
                and element.table is model.__table__
                and element.name not in names
            ):
                names.append(element.name)
    return names


def _computed_filter_fields(spec: querying.ListSpec[Any], actor: Any, filter: Any) -> bool:
    """Whether ``filter`` names a field the list computes for the actor (not a column)."""
    if spec.actor_filter_fields is None or not filter:
        return False
    computed = {
        name
        for name, value in spec.actor_filter_fields(actor).items()
        if not (isinstance(value, querying.Predicate) and value.compiles)
    }
    return bool(_filter_keys(filter) & computed)


def _null_default(value: Any, default: Any) -> bool:
    return value is None and (default is None or default is Undefined)


def _without_null_defaults(value: Any, gql_type: Any) -> Any:
    """An input value without the fields that hold their null default: Strawberry gives
    a missing field the same default, and converting the rest is 2-3x faster (a filter
    input has a dozen fields, each an input object of its own)."""
    named = gql_type
    while isinstance(named, GraphQLNonNull | GraphQLList):
        named = named.of_type
    if isinstance(value, list):
        return [_without_null_defaults(item, named) for item in value]
    if isinstance(value, dict) and isinstance(named, GraphQLInputObjectType):
        fields = named.fields
        return {
            key: _without_null_defaults(item, fields[key].type)
            for key, item in value.items()
            if not _null_default(item, fields[key].default_value)
        }
    return value


def _json_string(text: str) -> str:
    import orjson

    return orjson.dumps(text).decode()


_PLAIN: dict[str, dict[str, str]] = {}


def plain_fields(schema: Schema, type_name: str) -> dict[str, str]:
    """GraphQL name -> column name of the fields that read a column as stored."""
    return plain_columns(schema, type_name, OBJECT_TYPES[type_name].model)


def plain_columns(schema: Schema, type_name: str, model: type[Any]) -> dict[str, str]:
    """``plain_fields`` of a GraphQL type whose rows are ``model``'s."""
    found = _PLAIN.get(type_name)
    if found is None:
        columns = model.__table__.columns
        definition = schema.get_type_by_name(type_name)
        assert isinstance(definition, StrawberryObjectDefinition), type_name
        found = {}
        for f in definition.fields:
            if f.base_resolver is None and f.python_name in columns and f.python_name != "id":
                found[schema.config.name_converter.get_graphql_name(f)] = f.python_name
        _PLAIN[type_name] = found
    return found


# Root fields compiled by a module of their own, each from (compiler, field node, field
# type, selection sets).
ROOT_FIELD_BUILDERS: dict[
    str, Callable[[Compiler, FieldNode, Any, list[SelectionSetNode]], str]
] = {
    "serviceReport": insight.service_report,
    "salesReport": insight.sales_report,
    "timeSeries": insight.time_series,
    "search": insight.search,
    "changes": sync.changes,
    "segments": compiled_segments.segments,
    "auditLog": audit.audit_log,
    "customerCohorts": compiled_segments.customer_cohorts,
}
