"""Random read operations over the read schema, for the differential test of the compiled
and the executed read paths (``tests/api/test_compiled_differential.py``).

``ReadQueries`` walks the GraphQL schema from ``Query``: root lists, ``node``/``nodes``,
relations and nested connections, with arguments (page sizes, cursors, filters with
``and``/``or``/``not``, ``orderBy``, ``includeArchived``, IDs) that are mostly valid and
sometimes not (edge dates, non-finite decimals, cursors of another list or of the wrong
types, malformed IDs, page sizes over the cap), aliases, inline and named fragments,
``@include``/``@skip`` and variables. The same seed gives the same operations.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
)

# Fields whose value changes between two requests of the same reader (a key's last use,
# the instant a service report's backlog is aged at, and the drill-downs cut at it; the
# change feed's resume cursor, past the horizon that every transaction of the database
# moves).
VOLATILE = {
    ("ApiKey", "lastUsedAt"),
    ("ServiceReport", "asOf"),
    ("BacklogBand", "drillDown"),
    ("ChangePage", "cursor"),
}

TEXTS = ["a", "e", "an", "Zoë", "O'Neil", "%_\\", "", " ", "ORD-", "@example.com", "\u2028x"]
ODD_TEXTS = ["x" * 300, "\x00", "\U0001f600", "NULL", "' OR 1=1 --"]
TIMES = ["2020-01-01T00:00:00Z", "2024-06-30T12:34:56.789+02:00", "2030-12-31T23:59:59Z"]
EDGE_TIMES = [
    "0001-01-02T00:00:00Z",
    "9999-12-30T23:59:59.999999Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:00:00-05:00",
    "2020-01-01T00:00:00",
    "yesterday",
]
DATES = ["2020-01-01", "2024-02-29", "2026-06-30"]
EDGE_DATES = ["0001-01-02", "9999-12-30", "0001-01-01", "9999-12-31", "2023-02-29"]
DECIMALS = ["0", "1000", "90000.50", "12.345"]
EDGE_DECIMALS = ["Infinity", "-Infinity", "NaN", "1e20", "1e-999999", "1e999999", "-1", "abc"]
INTS = [0, 1, 2, 3, 5, 10, 50]
EDGE_INTS = [-1, -100, 101, 1000, 2147483647]


class Enum(str):
    """An enum value: printed bare in a document, as a string in variables."""


@dataclass
class Samples:
    """Values harvested from the data: global IDs by type, cursors by node type and
    order (``((field, direction), ...)``, ``()`` for the default order)."""

    ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    cursors: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )


def literal(value: Any) -> str:
    """A Python value as a GraphQL literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def node_type(gql_type: Any) -> Any:
    """The node type of a connection type (None for anything else)."""
    named = get_named_type(gql_type)
    if isinstance(named, GraphQLObjectType) and named.name.endswith("Connection"):
        return get_named_type(named.fields["nodes"].type)
    return None


class ReadQueries:
    """Random read operations (document, variables) over ``schema``. With ``focus`` (the
    root fields and, per object type, the fields the compiled path knows), half of the
    operations keep to those, so that both paths answer many of them."""

    def __init__(
        self,
        schema: GraphQLSchema,
        samples: Samples,
        rng: random.Random,
        focus: dict[str, set[str]] | None = None,
    ) -> None:
        self.schema = schema
        self.samples = samples
        self.rng = rng
        self.focus = focus or {}
        self.focused = False

    # ------------------------------------------------------------------ operations

    def operation(self) -> tuple[str, dict[str, Any]]:
        self.variables: dict[str, tuple[str, Any]] = {}
        self.fragments: dict[str, str] = {}
        self.aliases = 0
        query = self.schema.query_type
        assert query is not None
        self.focused = bool(self.focus) and self.rng.random() < 0.5
        roots = [n for n in self._names(query) if n != "__typename"]
        weights = [
            3 if n in ("node", "nodes") else 1 if node_type(query.fields[n].type) is None else 4
            for n in roots
        ]
        chosen = self.rng.choices(roots, weights, k=self.rng.choice((1, 1, 1, 2, 3)))
        selections = [self._field(query, name, depth=0) for name in dict.fromkeys(chosen)]
        if self.rng.random() < 0.1:
            selections.append("__typename")
        roll = self.rng.random()
        if roll < 0.01:
            selections.append("notAField")  # invalid documents: both paths answer 400
        elif roll < 0.02:
            selections.append('customers(first: "three") { totalCount }')
        header = ""
        if self.variables:
            header = "(" + ", ".join(f"${n}: {t}" for n, (t, _) in self.variables.items()) + ")"
        document = f"query{header} {{ {' '.join(selections)} }}"
        document += "".join(f" {f}" for f in self.fragments.values())
        return document, {name: value for name, (_, value) in self.variables.items()}

    def subscription(self, field: str, arguments: str = "") -> tuple[str, dict[str, Any]]:
        """A subscription of ``field`` (its arguments as written) with a random selection
        of its event type: for the differential test of event renderings."""
        self.variables = {}
        self.fragments = {}
        self.aliases = 0
        self.focused = bool(self.focus) and self.rng.random() < 0.5
        subscription = self.schema.subscription_type
        assert subscription is not None
        selection = self._selection(subscription.fields[field].type, depth=1)
        alias = "live: " if self.rng.random() < 0.2 else ""
        header = ""
        if self.variables:
            header = "(" + ", ".join(f"${n}: {t}" for n, (t, _) in self.variables.items()) + ")"
        document = f"subscription{header} {{ {alias}{field}{arguments} {selection} }}"
        document += "".join(f" {f}" for f in self.fragments.values())
        return document, {name: value for name, (_, value) in self.variables.items()}

    # ---------------------------------------------------------------- selections

    def _selection(self, gql_type: Any, depth: int) -> str:
        """A selection set of an object, interface or connection type."""
        named = get_named_type(gql_type)
        if node_type(named) is not None:
            return self._connection(named, depth)
        if isinstance(named, GraphQLInterfaceType | GraphQLUnionType):
            return self._abstract(named, depth)
        assert isinstance(named, GraphQLObjectType)
        names = [
            n for n in self._names(named) if (named.name, n) not in VOLATILE and n != "__typename"
        ]
        if depth >= 4:  # deep enough: leaves only
            names = [n for n in names if _is_leaf(named.fields[n])] or names[:1]
        picked = self.rng.sample(names, min(len(names), self.rng.randint(1, 4)))
        parts = [self._field(named, name, depth + 1) for name in picked]
        if self.rng.random() < 0.1:
            parts.insert(0, "__typename")
        if self.rng.random() < 0.1 and depth < 4:
            parts.append(self._named_fragment(named, depth))
        return "{ " + " ".join(parts) + " }"

    def _connection(self, connection: GraphQLObjectType, depth: int) -> str:
        node = node_type(connection)
        parts: list[str] = []
        choices = ["edges", "nodes", "pageInfo", "totalCount"]
        for name in self.rng.sample(choices, self.rng.randint(1, 3)):
            if name == "nodes":
                parts.append("nodes " + self._selection(node, depth + 1))
            elif name == "edges":
                inner = ["cursor"] if self.rng.random() < 0.7 else []
                if not inner or self.rng.random() < 0.8:
                    inner.append("node " + self._selection(node, depth + 1))
                parts.append("edges { " + " ".join(inner) + " }")
            elif name == "pageInfo":
                info = ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"]
                picked = self.rng.sample(info, self.rng.randint(1, 4))
                parts.append("pageInfo { " + " ".join(picked) + " }")
            else:
                parts.append(self._directives("totalCount"))
        return "{ " + " ".join(parts) + " }"

    def _abstract(self, abstract: Any, depth: int) -> str:
        possible = list(self.schema.get_possible_types(abstract))
        if self.focused:
            possible = [p for p in possible if p.name in self.focus] or possible
        parts = ["__typename"] if self.rng.random() < 0.7 else []
        if isinstance(abstract, GraphQLInterfaceType) and self.rng.random() < 0.6:
            parts.append("id")
        for concrete in self.rng.sample(possible, min(len(possible), self.rng.randint(1, 3))):
            parts.append(f"... on {concrete.name} {self._selection(concrete, depth)}")
        return "{ " + " ".join(parts) + " }"

    def _names(self, object_type: Any) -> list[str]:
        allowed = self.focus.get(object_type.name) if self.focused else None
        return [n for n in object_type.fields if allowed is None or n in allowed]

    def _named_fragment(self, object_type: GraphQLObjectType, depth: int) -> str:
        name = f"F{len(self.fragments)}"
        self.fragments[name] = "placeholder"  # reserve the name before nesting
        self.fragments[name] = (
            f"fragment {name} on {object_type.name} {self._selection(object_type, depth + 1)}"
        )
        return f"...{name}"

    def _field(self, parent: Any, name: str, depth: int) -> str:
        definition: GraphQLField = parent.fields[name]
        arguments = self._arguments(parent.name, name, definition)
        text = name + (f"({arguments})" if arguments else "")
        if self.aliases < 40 and self.rng.random() < 0.12:
            self.aliases += 1
            text = f"a{self.aliases}: {text}"
        text = self._directives(text)
        if not _is_leaf(definition):
            text += " " + self._selection(definition.type, depth)
        return text

    def _directives(self, text: str) -> str:
        roll = self.rng.random()
        if roll > 0.08:
            return text
        directive = self.rng.choice(("include", "skip"))
        if self.rng.random() < 0.5:
            return f"{text} @{directive}(if: {literal(self.rng.random() < 0.5)})"
        variable = self._variable("Boolean!", self.rng.random() < 0.5)
        return f"{text} @{directive}(if: {variable})"

    # ------------------------------------------------------------------- arguments

    def _arguments(self, type_name: str, field_name: str, definition: GraphQLField) -> str:
        args = definition.args
        node = node_type(definition.type)
        order: tuple[tuple[str, str], ...] = ()
        values: dict[str, Any] = {}
        for name, argument in args.items():
            required = isinstance(argument.type, GraphQLNonNull)
            if name == "id":
                values[name] = self._id()
            elif name == "ids":
                values[name] = [self._id() for _ in range(self.rng.randint(0, 4))]
            elif name in ("first", "last"):
                continue  # below: one of them, mostly
            elif name == "orderBy":
                if self.rng.random() < 0.4:
                    values[name], order = self._order(argument.type)
            elif name in ("after", "before"):
                continue
            elif name == "filter":
                if self.rng.random() < 0.35:
                    values[name] = self._input(argument.type, depth=0)
            elif required or self.rng.random() < 0.15:
                values[name] = self._value(argument.type, depth=0)
        if "first" in args:
            direction = "last" if "last" in args and self.rng.random() < 0.2 else "first"
            if self.rng.random() < 0.85:
                values[direction] = self._page_size()
            if self.rng.random() < 0.02 and "last" in args:
                values["last" if direction == "first" else "first"] = 1  # both: invalid
            if "after" in args and self.rng.random() < 0.3:
                cursor = self._cursor(node.name if node else "", order)
                values["before" if direction == "last" and "before" in args else "after"] = cursor
        parts = []
        for name, value in values.items():
            if self.rng.random() < 0.15 and name not in ("id", "ids"):
                parts.append(f"{name}: {self._variable(str(args[name].type), value)}")
            else:
                parts.append(f"{name}: {literal(value)}")
        return ", ".join(parts)

    def _variable(self, type_text: str, value: Any) -> str:
        name = f"v{len(self.variables)}"
        self.variables[name] = (type_text, _json(value))
        return f"${name}"

    def _page_size(self) -> int:
        return self.rng.choice(EDGE_INTS) if self.rng.random() < 0.04 else self.rng.choice(INTS)

    def _id(self) -> Any:
        roll = self.rng.random()
        if roll < 0.8 and self.samples.ids:
            kind = self.rng.choice(sorted(self.samples.ids))
            return self.rng.choice(self.samples.ids[kind])
        if roll < 0.9:
            foreign = f"{self.rng.choice(('Customer', 'Deal', 'Widget'))}:{_uuid(self.rng)}"
            return base64.urlsafe_b64encode(foreign.encode()).decode().rstrip("=")
        return self.rng.choice(("x", "", "%%%", "Q3VzdG9tZXI6bm9wZQ"))

    def _cursor(self, node: str, order: tuple[tuple[str, str], ...]) -> Any:
        roll = self.rng.random()
        matching = self.samples.cursors.get((node, order))
        if roll < 0.75 and matching:
            return self.rng.choice(matching)
        if roll < 0.85:
            every = [c for cs in self.samples.cursors.values() for c in cs]
            return self.rng.choice(every) if every else None
        signature = "created_at-,id-"
        return self.rng.choice(
            (
                "nope",
                None,
                _cursor({"s": signature, "v": [5, "x"]}),
                _cursor({"s": signature, "v": ["2020-01-01T00:00:00+00:00", 5]}),
                _cursor({"s": signature, "v": [[1], {"a": 1}]}),
                _cursor({"s": signature, "v": ["9999-12-31T23:00:00-05:00", _uuid(self.rng)]}),
                _cursor({"s": "amount+,id+", "v": ["Infinity", _uuid(self.rng)]}),
                _cursor({"s": "employee_count+,id+", "v": [2**40, _uuid(self.rng)]}),
                _cursor({"s": "name+,id+", "v": ["a\u0000", _uuid(self.rng)]}),
                _cursor([1, 2]),
            )
        )

    def _order(self, gql_type: Any) -> tuple[list[Any], tuple[tuple[str, str], ...]]:
        order_input = get_named_type(gql_type)
        assert isinstance(order_input, GraphQLInputObjectType)
        fields = get_named_type(order_input.fields["field"].type)
        assert isinstance(fields, GraphQLEnumType)
        names = list(fields.values)
        count = 2 if self.rng.random() < 0.2 else 1
        chosen = [self.rng.choice(names) for _ in range(count)]  # a repeat is invalid
        terms = []
        for name in chosen:
            direction = self.rng.choice(("ASC", "DESC"))
            term: dict[str, Any] = {"field": Enum(name)}
            if direction == "DESC" or self.rng.random() < 0.5:
                term["direction"] = Enum(direction)
            terms.append(term)
        key = tuple((str(t["field"]), str(t.get("direction", "ASC"))) for t in terms)
        return terms, key

    def _input(self, gql_type: Any, depth: int) -> Any:
        named = get_named_type(gql_type)
        assert isinstance(named, GraphQLInputObjectType)
        names = list(named.fields)
        if depth >= 2:
            names = [n for n in names if n not in ("and", "or", "not")]
        value: dict[str, Any] = {}
        for name in self.rng.sample(names, min(len(names), self.rng.randint(1, 3))):
            field_type = named.fields[name].type
            if name in ("and", "or"):
                value[name] = [
                    self._input(field_type, depth + 1) for _ in range(self.rng.randint(0, 2))
                ]
            elif name == "not":
                value[name] = self._input(field_type, depth + 1)
            else:
                value[name] = self._value(field_type, depth + 1)
        return value

    def _value(self, gql_type: Any, depth: int) -> Any:
        nullable = not isinstance(gql_type, GraphQLNonNull)
        inner = gql_type.of_type if not nullable else gql_type
        if nullable and self.rng.random() < 0.03:
            return None
        if isinstance(inner, GraphQLList):
            return [self._value(inner.of_type, depth) for _ in range(self.rng.randint(0, 3))]
        if isinstance(inner, GraphQLInputObjectType):
            return self._input(inner, depth)
        if isinstance(inner, GraphQLEnumType):
            return Enum(self.rng.choice(list(inner.values)))
        assert isinstance(inner, GraphQLScalarType)
        odd = self.rng.random() < 0.12
        kind = inner.name
        if kind == "ID":
            return self._id()
        if kind == "Boolean":
            return self.rng.random() < 0.5
        if kind == "Int":
            return self.rng.choice(EDGE_INTS if odd else INTS)
        if kind == "DateTime":
            return self.rng.choice(EDGE_TIMES if odd else TIMES)
        if kind == "Date":
            return self.rng.choice(EDGE_DATES if odd else DATES)
        if kind == "Decimal":
            return self.rng.choice(EDGE_DECIMALS if odd else DECIMALS)
        return self.rng.choice(ODD_TEXTS if odd else TEXTS)


def _is_leaf(definition: GraphQLField) -> bool:
    named = get_named_type(definition.type)
    return isinstance(named, GraphQLScalarType | GraphQLEnumType)


def _json(value: Any) -> Any:
    """A generated value as JSON (variables): enums by name."""
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return str(value) if isinstance(value, Enum) else value


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
