"""Admins manage the workspace's users: create, rename, change role, disable."""

from __future__ import annotations

import uuid

from crm_graphql.models import Role, User
from tests import support

CREATE = """mutation($i: CreateUserInput!) { createUser(input: $i) {
  user { id email name role isActive } errors { code field message } } }"""
UPDATE = """mutation($i: UpdateUserInput!) { updateUser(input: $i) {
  user { id name role isActive } errors { code field message } } }"""


def new_user(**extra: object) -> dict[str, object]:
    return {
        "email": f"New-{uuid.uuid4().hex[:8]}@Example.com",
        "name": "New Agent",
        "role": "AGENT",
        "password": "correct horse battery",
        **extra,
    }


async def test_admin_creates_a_user_who_can_log_in(
    as_role: dict[Role, support.GraphQLClient], client: support.GraphQLClient
) -> None:
    given = new_user()
    payload = (await as_role[Role.ADMIN](CREATE, {"i": given})).ok()["createUser"]
    assert payload["errors"] == []
    assert payload["user"]["email"] == str(given["email"]).lower()
    assert (payload["user"]["role"], payload["user"]["isActive"]) == ("AGENT", True)
    logged_in = await client.logged_in(str(given["email"]), str(given["password"]))
    assert (await logged_in("{ me { name role } }")).ok()["me"] == {
        "name": "New Agent",
        "role": "AGENT",
    }


async def test_create_user_validates(
    as_role: dict[Role, support.GraphQLClient], users: dict[Role, User]
) -> None:
    admin = as_role[Role.ADMIN]
    cases = [
        (new_user(email="not-an-email"), "VALIDATION", "email"),
        (new_user(password="short"), "VALIDATION", "password"),
        (new_user(name="  "), "VALIDATION", "name"),
        (new_user(email=users[Role.AGENT].email.upper()), "DUPLICATE", "email"),
    ]
    for given, code, field in cases:
        payload = (await admin(CREATE, {"i": given})).ok()["createUser"]
        assert payload["user"] is None
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], given


async def test_disabling_a_user_ends_their_logins(
    as_role: dict[Role, support.GraphQLClient], client: support.GraphQLClient
) -> None:
    admin = as_role[Role.ADMIN]
    given = new_user()
    user = (await admin(CREATE, {"i": given})).ok()["createUser"]["user"]
    login = await client(
        "mutation($i: LoginInput!) { login(input: $i) { refreshToken } }",
        {"i": {"email": given["email"], "password": given["password"]}},
    )
    refresh = login.ok()["login"]["refreshToken"]
    disabled = (await admin(UPDATE, {"i": {"id": user["id"], "isActive": False}})).ok()
    assert disabled["updateUser"]["user"]["isActive"] is False
    refreshed = await client(
        "mutation($t: String!) { refreshToken(input: {refreshToken: $t}) { accessToken errors { code } } }",
        {"t": refresh},
    )
    assert refreshed.ok()["refreshToken"]["accessToken"] is None
    again = await client(
        "mutation($i: LoginInput!) { login(input: $i) { accessToken errors { code } } }",
        {"i": {"email": given["email"], "password": given["password"]}},
    )
    assert again.ok()["login"]["accessToken"] is None


async def test_the_workspace_keeps_an_active_admin(
    as_role: dict[Role, support.GraphQLClient],
) -> None:
    admin = as_role[Role.ADMIN]
    me = (await admin("{ me { id } }")).ok()["me"]["id"]
    for change in ({"role": "MANAGER"}, {"isActive": False}):
        payload = (await admin(UPDATE, {"i": {"id": me, **change}})).ok()["updateUser"]
        assert [e["code"] for e in payload["errors"]] == ["VALIDATION"], change
    second = (await admin(CREATE, {"i": new_user(role="ADMIN")})).ok()["createUser"]["user"]
    # With another admin around, either may be demoted, but not by themselves.
    demoted = (await admin(UPDATE, {"i": {"id": second["id"], "role": "VIEWER"}})).ok()
    assert demoted["updateUser"]["errors"] == []
    assert demoted["updateUser"]["user"]["role"] == "VIEWER"
