"""``node(id)`` and ``nodes(ids)``: any visible object by global ID."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crm_graphql import models
from crm_graphql.global_ids import MalformedId, from_global_id
from crm_graphql.resolvers.info import Info
from crm_graphql.resolvers.loaders import Batch
from crm_graphql.services import email, jobs, segments

NODE_MODELS: dict[str, type[Any]] = {
    model.__name__: model
    for model in (
        models.Customer,
        models.Company,
        models.User,
        models.Deal,
        models.Pipeline,
        models.Stage,
        models.Activity,
        models.Order,
        models.Product,
        models.Conversation,
        models.Message,
        models.MessageAttachment,
        models.ApiKey,
        models.AuditLog,
        models.Webhook,
        models.WebhookDelivery,
        models.CustomFieldDefinition,
        models.Job,
    )
}


def rows_of(type_name: str) -> Any:
    """``is_type_of`` for the GraphQL type ``type_name``, whose values are ORM rows of its
    model (``NODE_MODELS``): the schema names its types, the models stay here."""
    model = NODE_MODELS[type_name]

    def is_type_of(cls: type, obj: Any, info: Info) -> bool:
        return isinstance(obj, model)

    return classmethod(is_type_of)


# Node types loaded by a service function of their own: visibility beyond the workspace
# (a private segment is its owner's) or objects that are not rows (built-in segments).
LOADED_NODES: dict[str, Batch] = {
    "Segment": segments.get_many_visible,
    "Job": jobs.get_many_visible,
    "MessageAttachment": email.attachments_by_id,
}


async def node(info: Info, id: str) -> Any:
    """The object, or None for an unknown, malformed or other workspace's ID."""
    info.context.require_actor()
    try:
        type_name, uuid_ = from_global_id(id)
    except MalformedId:
        return None
    if type_name in LOADED_NODES:
        loader = info.context.loaders.per_key(f"node:{type_name}", LOADED_NODES[type_name])
        return await loader.load(uuid_)
    model = NODE_MODELS.get(type_name)
    if model is None:
        return None
    return await info.context.loaders.by_id(model).load(uuid_)


async def nodes(info: Info, ids: Sequence[str]) -> list[Any]:
    if len(ids) > info.context.app.settings.max_page_size:
        from crm_graphql.services.errors import Invalid

        raise Invalid(f"At most {info.context.app.settings.max_page_size} ids", "ids")
    return [await node(info, i) for i in ids]
