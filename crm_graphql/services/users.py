"""People who log in to a workspace (read side; account management comes later)."""

from __future__ import annotations

from crm_graphql.models import User
from crm_graphql.services import querying

USERS = querying.ListSpec(
    model=User,
    filter_fields={
        "id": User.id,
        "email": User.email,
        "name": User.name,
        "role": User.role,
        "created_at": User.created_at,
    },
    order_fields={
        "name": User.name,
        "email": User.email,
        "created_at": User.created_at,
    },
    default_order=[("name", False)],
    archivable=True,
)
