"""``auditLog`` on the compiled read path: the executed path's list (``audit.AUDIT_LOG``:
scope, the admins-only read check, filter, order, keyset), each entry written as JSON in
PostgreSQL. An entry's ``changes`` are translated as ``resolvers.security.entry_changes``
translates them, from the same declaration: the API's field names (``camel_case``) and
each column's translator (``value_translators``: a foreign key to a node as its global
ID, an enum by its schema name) are computed here in Python from the models, for every
node type, into constants of the plan. What only Python's parsers decide (a key that is
no column, a reference that is not a UUID in its canonical text, an IPv6 address) fails
the statement, and the executed path answers."""

from __future__ import annotations

import functools
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
from graphql import FieldNode, GraphQLObjectType, SelectionSetNode, get_named_type

from crm_graphql.resolvers import security
from crm_graphql.resolvers.nodes import NODE_MODELS
from crm_graphql.resolvers.readmodel import OBJECT_TYPES
from crm_graphql.services import audit
from crm_graphql.storage import querying

if TYPE_CHECKING:
    from crm_graphql.compiled.compiler import Compiler

_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


@functools.cache
def _names() -> str:
    """Stored key -> the API's name, for every column (and column attribute) of every
    node type (JSON). Keys whose names would collide are left out: the executed path
    answers for them."""
    keys = {c.key for model in NODE_MODELS.values() for c in model.__table__.columns}
    keys |= {a.key for model in NODE_MODELS.values() for a in model.__mapper__.column_attrs}
    names = {key: querying.camel_case(key) for key in sorted(keys)}
    taken = Counter(names.values())
    return orjson.dumps({k: v for k, v in names.items() if taken[v] == 1}).decode()


@functools.cache
def _translators() -> str:
    """Per node type and column, how its values read (JSON): ``{"node": type}`` for a
    reference, ``{"enum": {value: name}}`` for an enum: what ``value_translators``
    returns for the type, read back from its functions."""
    found: dict[str, dict[str, Any]] = {}
    for type_name in NODE_MODELS:
        for key, translate in security.value_translators(type_name).items():
            (target,) = translate.args
            if translate.func is security.reference_id:
                found.setdefault(type_name, {})[key] = {"node": target}
            elif translate.func is security.enum_name and all(
                isinstance(member.value, str) for member in target
            ):
                names = {str(member.value): member.name for member in target}
                found.setdefault(type_name, {})[key] = {"enum": names}
            else:  # a translator this module does not know: the executed path answers
                found.setdefault(type_name, {})[key] = {"unknown": True}
    return orjson.dumps(found).decode()


def _changes(c: Compiler, entry: str) -> str:
    """``entry_changes`` of the entry as JSON text (re-encoded once)."""
    from crm_graphql.compiled.compiler import _base64url, _literal, _quoted, _unrepresentable

    c.state.reencode = True
    names = f"{_literal(_names())}::jsonb"
    translator = f"({_literal(_translators())}::jsonb -> {entry}.entity_type -> e.key)"
    text = "(x.value #>> '{}')"
    reference = (
        f"CASE WHEN jsonb_typeof(x.value) = 'string' AND {text} ~ {_literal(_UUID)} THEN "
        + _quoted(_base64url(f"({translator} ->> 'node') || ':' || lower({text})"))
        + " WHEN jsonb_typeof(x.value) IN ('object', 'array', 'boolean') THEN x.value::text "
        f"ELSE {_unrepresentable('x.value')} END"
    )
    named = (
        f"CASE WHEN jsonb_typeof(x.value) = 'string' AND ({translator} -> 'enum') ? {text} "
        f"THEN to_json({translator} -> 'enum' ->> {text})::text ELSE x.value::text END"
    )
    translated = (
        f"CASE WHEN jsonb_typeof(x.value) = 'null' THEN 'null' "
        f"WHEN {translator} ? 'node' THEN {reference} "
        f"WHEN {translator} ? 'enum' THEN {named} "
        f"ELSE {_unrepresentable('x.value')} END"
    )
    value = (
        f"CASE WHEN {translator} IS NULL OR jsonb_typeof(e.value) <> 'object' "
        f"THEN e.value::text ELSE (SELECT '{{' || coalesce(string_agg(to_json(x.key)::text "
        f"|| ':' || {translated}, ',' ORDER BY x.n), '') || '}}' "
        f"FROM jsonb_each(e.value) WITH ORDINALITY x(key, value, n)) END"
    )
    name = f"({names} ->> e.key)"
    key = (
        f"CASE WHEN {name} IS NULL THEN {_unrepresentable('e.key')} ELSE to_json({name})::text END"
    )
    column = f"{entry}.changes"
    return (
        f"CASE WHEN jsonb_typeof({column}) <> 'object' THEN {_unrepresentable(column)} "
        f"ELSE (SELECT '{{' || coalesce(string_agg({key} || ':' || {value}, ',' "
        f"ORDER BY e.n), '') || '}}' FROM jsonb_each({column}) WITH ORDINALITY "
        f"e(key, value, n)) END"
    )


def _entity(c: Compiler, entry: str, selection_sets: list[SelectionSetNode]) -> str:
    """``resolvers.security.entity``: the entity read by id as its type, null for a type
    that is no node or an entry without one."""
    from crm_graphql.compiled.compiler import _literal, _unrepresentable

    cases = []
    for type_name in NODE_MODELS:
        if type_name in OBJECT_TYPES:
            # A selection the compiler refuses under a read-model type refuses the page.
            found = c._by_id(type_name, f"{entry}.entity_id", selection_sets)
        else:  # no read-model type (its own loader, say): the executed path answers
            found = _unrepresentable(f"{entry}.entity_type")
        cases.append(f"WHEN {_literal(type_name)} THEN {found}")
    return (
        f"CASE WHEN {entry}.entity_id IS NULL THEN 'null' ELSE CASE {entry}.entity_type "
        f"{' '.join(cases)} ELSE 'null' END END"
    )


def audit_log(
    c: Compiler, node: FieldNode, gql_type: Any, selection_sets: list[SelectionSetNode]
) -> str:
    """``resolvers.security.audit_log``: a page of ``audit.AUDIT_LOG``."""
    from crm_graphql.compiled.compiler import (
        Unsupported,
        _base64url,
        _quoted,
        _unrepresentable,
        plain_columns,
    )

    entry_type = c.gschema.get_type("AuditLogEntry")
    assert isinstance(entry_type, GraphQLObjectType)
    plain = plain_columns(c.schema, "AuditLogEntry", audit.AUDIT_LOG.model)

    def entry_json(entry: str, selections: list[SelectionSetNode]) -> str:
        def value(name: str, nodes: list[FieldNode]) -> str:
            subselections = c._subselections(nodes)
            if name == "id":
                # ``Node.id`` names the row's model: ``AuditLog``.
                return c._global_id(audit.AUDIT_LOG.model.__name__, entry)
            if name in plain:
                return c._value(entry_type.fields[name].type, f'{entry}."{plain[name]}"')
            if name == "changes":
                return _changes(c, entry)
            if name == "entityId":
                global_id = _quoted(
                    _base64url(f"{entry}.entity_type || ':' || {entry}.entity_id::text")
                )
                return f"CASE WHEN {entry}.entity_id IS NULL THEN 'null' ELSE {global_id} END"
            if name == "entity":
                return _entity(c, entry, subselections)
            if name == "actor":
                return c._by_id("User", f"{entry}.actor_user_id", subselections)
            if name == "apiKey":
                return c._by_id("ApiKey", f"{entry}.actor_api_key_id", subselections)
            if name == "clientIp":
                ip = f"{entry}.client_ip"
                # ``str()`` of the driver's address: PostgreSQL's ``abbrev`` for IPv4
                # (the mask only when not /32); IPv6 texts differ (IPv4-mapped ones).
                return (
                    f"CASE WHEN {ip} IS NULL THEN 'null' WHEN family({ip}) = 4 THEN "
                    f"to_json(abbrev({ip}))::text ELSE {_unrepresentable(ip)} END"
                )
            raise Unsupported(f"AuditLogEntry.{name}")

        return c._json_object(entry_type, selections, value)

    args = c._arguments("Query", "auditLog", node)
    return c._connection(
        "AuditLogEntry", audit.AUDIT_LOG, args, gql_type, selection_sets, row_json=entry_json
    )


def _object_type(gql_type: Any) -> GraphQLObjectType:
    named = get_named_type(gql_type)
    assert isinstance(named, GraphQLObjectType)
    return named
