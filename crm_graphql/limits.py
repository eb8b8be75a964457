"""Query limits, applied before execution to every operation (HTTP and WebSocket).

``OperationLimits`` is the schema extension that parses and validates documents (with
caches keyed by the document's text) and, before validating, checks the operation's
shape against the configured limits:

- tokens (the parser stops counting at ``max_tokens``)   -> ``TOO_MANY_TOKENS``
- selection depth (``ofType`` chains of introspection do not count) -> ``QUERY_TOO_DEEP``
- aliases in the document                                -> ``TOO_MANY_ALIASES``
- nesting of input values, literal or variables         -> ``INPUT_TOO_DEEP``
- text PostgreSQL cannot store (NUL, lone surrogates)    -> ``VALIDATION``
- cost: every field counts 1, and a paginated field (``first``/``last``) multiplies the
  cost of what it selects by its page size (the default page size when neither is
  given; ``nodes(ids:)`` by the number of ids; a grouped aggregate or a time series
  by the largest page size)                                             -> ``QUERY_TOO_COSTLY``

Then per request (never cached): introspection policy for this caller
(``INTROSPECTION_DISABLED``) and, on WebSockets, the caller's rate limit
(``RATE_LIMITED``; HTTP requests are counted by ``http.py`` before they get here).

Limits that only depend on the document are measured once per document text and kept in
the cache; the cost is recomputed per request only when a page size comes from a
variable. The checks run before validation: a document of five thousand aliases is
refused before graphql-core's overlap validation (quadratic in the number of fields)
ever sees it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    get_named_type,
    parse,
)
from graphql.error import GraphQLSyntaxError
from graphql.type import GraphQLInterfaceType, GraphQLObjectType
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types.graphql import OperationType

if TYPE_CHECKING:
    from crm_graphql.ratelimit import Decision
    from crm_graphql.resolvers.context import Context
    from crm_graphql.services.actor import Actor
    from crm_graphql.settings import Settings

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
_INTROSPECTION_TYPES = {"__schema": "__Schema", "__type": "__Type"}
CACHE_SIZE = 1000


@dataclass(frozen=True)
class QueryLimits:
    """The limits of one server (0 switches a limit off)."""

    max_depth: int = 12
    max_aliases: int = 50
    max_tokens: int = 5000
    max_cost: int = 50_000
    max_input_depth: int = 20
    default_page_size: int = 20
    max_page_size: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> QueryLimits:
        return cls(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            max_tokens=settings.max_tokens,
            max_cost=settings.max_query_cost,
            max_input_depth=settings.max_input_depth,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
        )

    def for_actor(self, actor: Actor | None) -> QueryLimits:
        """These limits for one caller: an API key's own cost budget (set by an admin,
        never above the server's) replaces the server's."""
        if actor is None or actor.max_query_cost is None:
            return self
        return replace(self, max_cost=actor.max_query_cost)


def limit_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


# ------------------------------------------------------------------- measuring documents


@dataclass
class Shape:
    """What a document costs, as far as it does not depend on variables."""

    depth: int
    aliases: int
    input_depth: int
    introspection: bool
    # None when a page size comes from a variable: computed per request then.
    static_cost: int | None
    text_problem: str | None = None


def _walk(node: Node) -> Iterator[tuple[Node, int]]:
    """Every node of a document with its nesting of input values (iterative: a deeply
    nested document must not exhaust Python's stack here)."""
    stack: list[tuple[Any, int]] = [(node, 0)]
    while stack:
        current, nesting = stack.pop()
        if isinstance(current, Node):
            yield current, nesting
            inner = nesting + (1 if isinstance(current, ObjectValueNode | ListValueNode) else 0)
            for key in current.keys:
                if key != "loc":
                    stack.append((getattr(current, key), inner))
        elif isinstance(current, tuple | list):
            stack.extend((item, nesting) for item in current)


def _document_facts(document: DocumentNode) -> tuple[int, int, bool, str | None]:
    """(aliases, deepest input value, uses introspection, a text problem of a string
    literal) of the whole document."""
    aliases = 0
    input_depth = 0
    introspection = False
    problem: str | None = None
    for node, nesting in _walk(document):
        if isinstance(node, FieldNode):
            if node.alias is not None:
                aliases += 1
            if node.name.value in INTROSPECTION_FIELDS:
                introspection = True
        elif isinstance(node, ObjectValueNode | ListValueNode):
            input_depth = max(input_depth, nesting + 1)
        elif isinstance(node, StringValueNode):
            problem = problem or text_problem(node.value)
    return aliases, input_depth, introspection, problem


def text_problem(value: str) -> str | None:
    """Why PostgreSQL would refuse this text (None when it takes it): a NUL character,
    or a lone UTF-16 surrogate (JSON parsers other than orjson let one through)."""
    if "\x00" in value:
        return "Text must not contain the NUL character (U+0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Text must be valid Unicode (no lone surrogate code points)"
    return None


def inspect_input(value: Any) -> tuple[int, str | None]:
    """(nesting, the first text problem) of a JSON value such as the variables, walked
    without recursion: nesting is what is being limited."""
    deepest = 0
    problem: str | None = None
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, str):
            problem = problem or text_problem(current)
        elif isinstance(current, Mapping):
            for key, inner in current.items():
                problem = problem or text_problem(str(key))
                stack.append((inner, depth + 1))
            deepest = max(deepest, depth + 1)
        elif isinstance(current, list | tuple):
            stack.extend((v, depth + 1) for v in current)
            deepest = max(deepest, depth + 1)
    return deepest, problem


class _Measure:
    """Depth and cost of the operations of a document, following fragments (each
    fragment measured once, so nested spreads cannot make this exponential)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        limits: QueryLimits,
        variables: Mapping[str, Any] | None,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.variables = variables or {}
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.operations = [
            d for d in document.definitions if isinstance(d, OperationDefinitionNode)
        ]
        self.defaults: dict[str, Any] = {}
        self.uses_variables = False
        self._fragment_memo: dict[str, tuple[int, int]] = {}
        self._in_progress: set[str] = set()

    def run(self) -> tuple[int, int]:
        """(depth, cost): the largest over the document's operations."""
        depth = cost = 0
        for operation in self.operations:
            root = self.schema.get_root_type(operation.operation)
            self.defaults = {
                v.variable.name.value: v.default_value
                for v in operation.variable_definitions or ()
                if v.default_value is not None
            }
            d, c = self._selection_set(operation.selection_set, root)
            depth, cost = max(depth, d), max(cost, c)
        return depth, cost

    def _selection_set(
        self, selection_set: SelectionSetNode | None, parent: Any
    ) -> tuple[int, int]:
        depth = cost = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                d, c = self._field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                d, c = self._selection_set(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode):
                d, c = self._fragment(selection.name.value)
            else:  # pragma: no cover - no other selection kinds exist
                continue
            depth, cost = max(depth, d), cost + c
        return depth, cost

    def _fragment(self, name: str) -> tuple[int, int]:
        if name in self._fragment_memo:
            return self._fragment_memo[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self._in_progress:  # unknown or cyclic: validation says
            return 0, 0
        self._in_progress.add(name)
        parent = self.schema.get_type(fragment.type_condition.name.value)
        result = self._selection_set(fragment.selection_set, parent)
        self._in_progress.discard(name)
        self._fragment_memo[name] = result
        return result

    def _field(self, node: FieldNode, parent: Any) -> tuple[int, int]:
        name = node.name.value
        if name == "__typename":
            return 1, 0
        definition = None
        child_type: Any = None
        if name in _INTROSPECTION_TYPES:
            child_type = self.schema.get_type(_INTROSPECTION_TYPES[name])
        elif isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(name)
            child_type = get_named_type(definition.type) if definition else None
        depth, child_cost = self._selection_set(node.selection_set, child_type)
        multiplier = self._multiplier(node, definition.args if definition else {})
        # An introspection type's ofType chain is a wrapper, not a level of data.
        own_level = 0 if name == "ofType" else 1
        return depth + own_level, 1 + multiplier * child_cost

    def _multiplier(self, node: FieldNode, args: Mapping[str, Any]) -> int:
        grouped = "groupBy" in args and self._argument(node, "groupBy") is not None
        if grouped or "interval" in args:
            # A grouped aggregate or a time series answers a row per group or bucket (up
            # to ``services.aggregates.MAX_GROUPS`` / ``MAX_BUCKETS``, from one
            # statement): it costs like a full page of a list.
            return self.limits.max_page_size
        if "first" in args or "last" in args:
            sizes = [self._int_argument(node, name) for name in ("first", "last")]
            given = [s for s in sizes if s is not None]
            size = max(given) if given else self.limits.default_page_size
            # Out-of-range sizes get their own VALIDATION error from the resolver.
            return max(0, min(size, self.limits.max_page_size))
        if "ids" in args:
            value = self._argument(node, "ids")
            if isinstance(value, ListValueNode):
                return len(value.values)
            if isinstance(value, list):
                return len(value)
        return 1

    def _argument(self, node: FieldNode, name: str) -> Any:
        for argument in node.arguments or ():
            if argument.name.value == name:
                value = argument.value
                if isinstance(value, VariableNode):
                    self.uses_variables = True
                    variable = value.name.value
                    if variable in self.variables:
                        return self.variables[variable]
                    return self.defaults.get(variable)
                return value
        return None

    def _int_argument(self, node: FieldNode, name: str) -> int | None:
        value = self._argument(node, name)
        if isinstance(value, IntValueNode):
            try:
                return int(value.value)
            except ValueError:  # pragma: no cover - the lexer only makes valid ints
                return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return None


def measure(
    schema: GraphQLSchema,
    document: DocumentNode,
    limits: QueryLimits,
    variables: Mapping[str, Any] | None = None,
) -> tuple[int, int, bool]:
    """(depth, cost, whether the cost read a variable) of a document."""
    walk = _Measure(schema, document, limits, variables)
    depth, cost = walk.run()
    return depth, cost, walk.uses_variables


def shape_of(schema: GraphQLSchema, document: DocumentNode, limits: QueryLimits) -> Shape:
    aliases, literal_depth, introspection, problem = _document_facts(document)
    depth, cost, uses_variables = measure(schema, document, limits)
    return Shape(
        depth=depth,
        aliases=aliases,
        input_depth=literal_depth,
        introspection=introspection,
        static_cost=None if uses_variables else cost,
        text_problem=problem,
    )


def input_errors(
    shape: Shape, limits: QueryLimits, variables: Mapping[str, Any] | None
) -> list[GraphQLError]:
    """Text PostgreSQL refuses and input values nested too deep, in the document or the
    variables: checked before anything else reads the variables (a cache key encodes
    them, and an encoder has a nesting limit of its own)."""
    variables_depth, problem = inspect_input(variables) if variables else (1, None)
    problem = shape.text_problem or problem
    if problem:
        # PostgreSQL refuses such text; say so before anything reaches it.
        return [limit_error(problem, "VALIDATION")]
    deepest_input = max(shape.input_depth, variables_depth - 1)
    if limits.max_input_depth and deepest_input > limits.max_input_depth:
        return [
            limit_error(
                f"An input value is nested {deepest_input} levels deep; at most "
                f"{limits.max_input_depth} are allowed",
                "INPUT_TOO_DEEP",
                limit=limits.max_input_depth,
                actual=deepest_input,
            )
        ]
    return []


def limit_errors(
    schema: GraphQLSchema,
    document: DocumentNode,
    shape: Shape,
    limits: QueryLimits,
    variables: Mapping[str, Any] | None,
) -> list[GraphQLError]:
    """The limits this operation breaks (empty when none)."""
    if limits.max_aliases and shape.aliases > limits.max_aliases:
        return [
            limit_error(
                f"The document has {shape.aliases} aliases; at most {limits.max_aliases} "
                "are allowed",
                "TOO_MANY_ALIASES",
                limit=limits.max_aliases,
                actual=shape.aliases,
            )
        ]
    if limits.max_depth and shape.depth > limits.max_depth:
        return [
            limit_error(
                f"The query is {shape.depth} levels deep; at most {limits.max_depth} are allowed",
                "QUERY_TOO_DEEP",
                limit=limits.max_depth,
                actual=shape.depth,
            )
        ]
    errors = input_errors(shape, limits, variables)
    if errors:
        return errors
    cost = shape.static_cost
    if cost is None:
        cost = measure(schema, document, limits, variables)[1]
    if limits.max_cost and cost > limits.max_cost:
        return [
            limit_error(
                f"The query may resolve up to {cost} fields; at most {limits.max_cost} are "
                "allowed. Ask for smaller pages (`first`) or fewer nested lists.",
                "QUERY_TOO_COSTLY",
                limit=limits.max_cost,
                cost=cost,
            )
        ]
    return []


# ------------------------------------------------------------------------------ caches


@dataclass
class _Entry:
    document: DocumentNode
    shape: Shape | None = None
    validation: dict[Any, list[GraphQLError]] = field(default_factory=dict)


class _DocumentCache:
    """Parsed documents, their shape and validation results by document text (LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()

    def get(self, key: tuple[str, int]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple[str, int], entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


_CACHE = _DocumentCache(CACHE_SIZE)


def requested_cost(
    schema: GraphQLSchema,
    query: str | None,
    limits: QueryLimits,
    variables: Mapping[str, Any] | None,
) -> int | None:
    """The cost of an operation as the limits measure it (``QUERY_TOO_COSTLY`` compares
    it with ``max_cost``), for the answer's ``extensions.cost``; None when the document
    does not parse. Shares the document cache with ``OperationLimits``, so the compiled
    and the executed path report the same number for the same request."""
    if not query:
        return None
    key = (query, limits.max_tokens)
    entry = _CACHE.get(key)
    if entry is None:
        try:
            document = parse(
                query,
                max_lexical_tokens=limits.max_tokens or None,
                max_comments=limits.max_tokens or None,
            )
        except GraphQLError:
            return None
        entry = _Entry(document)
        _CACHE.put(key, entry)
    try:
        if entry.shape is None:
            entry.shape = shape_of(schema, entry.document, limits)
        if entry.shape.static_cost is not None:
            return entry.shape.static_cost
        return measure(schema, entry.document, limits, variables)[1]
    except RecursionError:
        return None


# ------------------------------------------------------------------- cost reports

# The ask for ``extensions.cost`` (README, "Query cost and budgets"): a header over HTTP
# and SSE, the same name among a WebSocket's ``connection_init`` parameters.
COST_HEADER = "X-CRM-Cost"
_COST_WANTED = frozenset({"1", "true", "yes", "include"})


def cost_asked(value: Any) -> bool:
    """Whether a ``X-CRM-Cost`` value asks for the cost report (a header's text, or a
    ``connection_init`` parameter's JSON ``true`` or ``1``)."""
    if isinstance(value, bool | int):
        return value == 1
    return isinstance(value, str) and value.strip().lower() in _COST_WANTED


def cost_report(
    schema: GraphQLSchema,
    limits: QueryLimits,
    query: str | None,
    variables: Any,
    throttle: Decision | None,
) -> dict[str, Any]:
    """``extensions.cost`` of one operation, over HTTP, a WebSocket or an event stream:
    the cost the limits computed for it, the most the caller may ask for in one
    operation (``limits``: the caller's), and its rate budget after this operation was
    counted (``throttleStatus``: null when no rate limit applies)."""
    return {
        "requestedQueryCost": requested_cost(
            schema, query, limits, variables if isinstance(variables, dict) else None
        ),
        "maximumQueryCost": limits.max_cost or None,
        "throttleStatus": None if throttle is None else throttle.throttle_status(),
    }


def with_extensions(body: dict[str, Any] | bytes, extensions: dict[str, Any]) -> Any:
    """``body`` (a JSON object) with a top-level ``extensions`` entry, last: the same
    bytes whether the body came encoded (the compiled path's answer, a pushed event's
    payload) or as a dict (executed)."""
    if isinstance(body, bytes):
        return body[:-1] + b',"extensions":' + orjson.dumps(extensions) + b"}"
    return {**body, "extensions": extensions}


@dataclass
class OwedCost:
    """The cost report an operation over a WebSocket or an event stream owes its client
    (who asked for it): with each answer of a query or mutation (it has one), with only
    the first event of a subscription (the cost and budget are the operation's, counted
    once when it started)."""

    report: dict[str, Any]
    sent: bool = False

    def take(self) -> dict[str, Any] | None:
        """The report, the first time only."""
        if self.sent:
            return None
        self.sent = True
        return self.report


# The report owed by the operation this task runs (set by ``OperationLimits`` before it
# executes): a subscription whose events are pushed (``realtime.fanout.owing``) puts it
# into its first frame.
OWED_COST: ContextVar[OwedCost | None] = ContextVar("crm_owed_cost", default=None)


# graphql-core's messages for the two parser limits (see test_limits: a change of
# wording upstream fails a test rather than silently losing the code).
_TOKEN_LIMIT_MESSAGE = "Document contains more than"
_NESTING_MESSAGE = "nested too deeply"


def parse_error_code(error: GraphQLError) -> str:
    if _TOKEN_LIMIT_MESSAGE in error.message:
        return "TOO_MANY_TOKENS"
    if _NESTING_MESSAGE in error.message:
        return "QUERY_TOO_DEEP"
    return "GRAPHQL_PARSE_FAILED"


class OperationLimits(SchemaExtension):
    """Cached parse and validation with the query limits in between (module docstring).
    Replaces Strawberry's ParserCache and ValidationCache."""

    _entry: _Entry | None = None
    _key: tuple[str, int] | None = None
    _throttle: Decision | None = None  # a WebSocket operation's rate decision
    _owed: OwedCost | None = None

    def _context(self) -> Context:
        return self.execution_context.context

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        limits = QueryLimits.from_settings(self._context().app.settings)
        self._key = (ec.query or "", limits.max_tokens)
        self._entry = _CACHE.get(self._key)
        if self._entry is not None:
            ec.graphql_document = self._entry.document
        elif limits.max_tokens:
            # Strawberry parses (and turns a failure into a request error); the limits
            # stop the lexer after that many tokens or comments.
            options: Any = {
                **ec.parse_options,
                "max_lexical_tokens": limits.max_tokens,
                "max_comments": limits.max_tokens,
            }
            ec.parse_options = options
        yield
        if self._entry is None and ec.graphql_document is not None:
            self._entry = _Entry(ec.graphql_document)
            _CACHE.put(self._key, self._entry)
        for error in ec.pre_execution_errors or ():
            if isinstance(error, GraphQLSyntaxError) and "code" not in (error.extensions or {}):
                # A fresh error object of this request's parse: safe to complete.
                error.extensions = {**(error.extensions or {}), "code": parse_error_code(error)}

    async def on_validate(self) -> AsyncIterator[None]:
        ec = self.execution_context
        entry = self._entry
        context = self._context()
        settings = context.app.settings
        if entry is None or ec.graphql_document is not entry.document:
            yield  # a document from elsewhere: Strawberry validates it
            return
        limits = QueryLimits.from_settings(settings).for_actor(context.actor)
        schema = ec.schema._schema
        if entry.shape is None:
            try:
                entry.shape = shape_of(schema, entry.document, limits)
            except RecursionError:
                ec.pre_execution_errors = [
                    limit_error("The query is nested too deeply", "QUERY_TOO_DEEP")
                ]
                yield
                return
        errors = limit_errors(schema, entry.document, entry.shape, limits, ec.variables)
        if not errors:
            rules = tuple(ec.validation_rules)
            if rules not in entry.validation:
                found = validate_document(schema, entry.document, rules)
                entry.validation[rules] = [_without_frames(error) for error in found]
            errors = list(entry.validation[rules])
        if not errors and entry.shape.introspection:
            errors = _introspection_errors(settings, context)
        if not errors and context.websocket is not None:
            errors, self._throttle = await _websocket_rate_limit(context)
        ec.pre_execution_errors = errors
        if context.cost_wanted:
            # In the operation's task, before its resolvers: a subscription that pushes
            # its frames finds the report it owes here (``fanout.owing``).
            OWED_COST.set(self._owed_cost())
        yield

    def get_results(self) -> dict[str, Any]:
        """``extensions.cost`` for an answer over a WebSocket or an event stream whose
        client asked for it (``Context.cost_wanted``): with a query's or mutation's
        answer, with a subscription's first event (``OwedCost``). HTTP adds its own,
        after whichever read path answered (``http._operation``)."""
        owed = self._owed_cost()
        if owed is None:
            return {}
        report = owed.take() if self._subscription() else owed.report
        return {} if report is None else {"cost": report}

    def _subscription(self) -> bool:
        try:
            return self.execution_context.operation_type is OperationType.SUBSCRIPTION
        except RuntimeError:  # no operation to tell (the document did not parse)
            return False

    def _owed_cost(self) -> OwedCost | None:
        """The report this operation owes, computed once (None when not asked)."""
        context = self._context()
        if self._owed is None and context.cost_wanted:
            ec = self.execution_context
            limits = QueryLimits.from_settings(context.app.settings).for_actor(context.actor)
            # An event stream was counted by its request (realtime/sse.py), a socket's
            # operation here (on_validate).
            throttle = self._throttle if context.websocket is not None else context.rate_decision
            report = cost_report(ec.schema._schema, limits, ec.query, ec.variables, throttle)
            self._owed = OwedCost(report)
        return self._owed


def _without_frames(error: GraphQLError) -> GraphQLError:
    """A validation error to cache: without the traceback of a literal's parse that failed
    (a scalar's ``parse_literal`` raising, as DateTime does on "yesterday") nor the
    exception it was raised during. Their frames hold the request's context, for a
    WebSocket its connection: the cache would keep every such connection alive."""
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


def _introspection_errors(settings: Settings, context: Context) -> list[GraphQLError]:
    policy = settings.introspection_policy
    if policy == "on" or (policy == "authenticated" and context.actor is not None):
        return []
    message = (
        "Introspection is disabled on this server"
        if policy == "off"
        else "Log in to introspect the schema (send `Authorization: Bearer <token>`)"
    )
    return [limit_error(message, "INTROSPECTION_DISABLED")]


async def _websocket_rate_limit(context: Context) -> tuple[list[GraphQLError], Decision | None]:
    """Each operation started on a socket counts against its caller's rate limit: the
    errors refusing it (none when allowed), and the decision (None when rate limits are
    off)."""
    from crm_graphql import ratelimit

    settings = context.app.settings
    bucket = ratelimit.actor_bucket(context.actor, context.client_ip, settings)
    if bucket is None:
        return [], None
    decision = await context.app.limiter.hit(bucket)
    if decision.allowed:
        return [], decision
    error = ratelimit.RateLimited(decision.retry_after)
    return [limit_error(error.message, error.code, retryAfter=decision.retry_after)], decision
