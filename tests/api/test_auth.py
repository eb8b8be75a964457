"""Logging in, refreshing, logging out, and what anonymous callers may do."""

from __future__ import annotations

from crm_graphql.models import Role, User
from tests import support

LOGIN = """mutation($i: LoginInput!) {
  login(input: $i) { accessToken refreshToken expiresAt user { email role } errors { code field message } }
}"""
REFRESH = """mutation($t: String!) {
  refreshToken(input: {refreshToken: $t}) { accessToken refreshToken errors { code message } }
}"""


async def test_login_returns_tokens_and_me_answers(
    client: support.GraphQLClient, users: dict[Role, User]
) -> None:
    user = users[Role.AGENT]
    data = (
        await client(LOGIN, {"i": {"email": user.email.upper(), "password": support.PASSWORD}})
    ).ok()
    login = data["login"]
    assert login["errors"] == []
    assert login["accessToken"] and login["refreshToken"] and login["expiresAt"]
    assert login["user"] == {"email": user.email, "role": "AGENT"}
    authed = support.GraphQLClient(client.http, login["accessToken"])
    me = (await authed("{ me { email role name } }")).ok()["me"]
    assert me["email"] == user.email and me["role"] == "AGENT"


async def test_wrong_email_and_wrong_password_get_the_same_answer(
    client: support.GraphQLClient, users: dict[Role, User]
) -> None:
    wrong_password = await client(
        LOGIN, {"i": {"email": users[Role.ADMIN].email, "password": "nope-nope"}}
    )
    wrong_email = await client(
        LOGIN, {"i": {"email": "nobody@example.com", "password": "nope-nope"}}
    )
    assert wrong_password.status == wrong_email.status == 200
    assert wrong_password.body == wrong_email.body
    assert wrong_password.data["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"
    assert wrong_password.data["login"]["accessToken"] is None


async def test_anonymous_requests_can_only_log_in(client: support.GraphQLClient) -> None:
    for query in ("{ me { email } }", "{ customers { totalCount } }"):
        result = await client(query)
        assert result.errors[0]["extensions"]["code"] == "UNAUTHENTICATED", result.body
    created = await client('mutation { createCustomer(input: {name: "X"}) { errors { code } } }')
    assert created.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_invalid_bearer_token_is_401(client: support.GraphQLClient) -> None:
    bad = support.GraphQLClient(client.http, "not-a-jwt")
    result = await bad("{ me { email } }")
    assert result.status == 401
    assert result.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: support.GraphQLClient, users: dict[Role, User]
) -> None:
    login = (
        await client(
            LOGIN, {"i": {"email": users[Role.MANAGER].email, "password": support.PASSWORD}}
        )
    ).ok()["login"]
    first = login["refreshToken"]
    rotated = (await client(REFRESH, {"t": first})).ok()["refreshToken"]
    assert rotated["errors"] == [] and rotated["refreshToken"] != first
    second = rotated["refreshToken"]
    # Replaying the used token is treated as theft: it fails and kills the newer token too.
    replay = (await client(REFRESH, {"t": first})).ok()["refreshToken"]
    assert replay["errors"][0]["code"] == "UNAUTHENTICATED"
    after = (await client(REFRESH, {"t": second})).ok()["refreshToken"]
    assert after["errors"][0]["code"] == "UNAUTHENTICATED"


async def test_logout_revokes_refresh_token(
    client: support.GraphQLClient, users: dict[Role, User]
) -> None:
    login = (
        await client(
            LOGIN, {"i": {"email": users[Role.VIEWER].email, "password": support.PASSWORD}}
        )
    ).ok()["login"]
    authed = support.GraphQLClient(client.http, login["accessToken"])
    out = (
        await authed(
            "mutation($t: String) { logout(input: {refreshToken: $t}) { ok errors { code } } }",
            {"t": login["refreshToken"]},
        )
    ).ok()
    assert out["logout"] == {"ok": True, "errors": []}
    again = (await client(REFRESH, {"t": login["refreshToken"]})).ok()["refreshToken"]
    assert again["errors"][0]["code"] == "UNAUTHENTICATED"


async def test_passwords_are_stored_as_argon2id(users: dict[Role, User]) -> None:
    assert users[Role.ADMIN].password_hash.startswith("$argon2id$")


async def test_viewer_cannot_mutate(as_role: dict[Role, support.GraphQLClient]) -> None:
    result = (
        await as_role[Role.VIEWER](
            'mutation { createCustomer(input: {name: "V"}) { customer { id } errors { code } } }'
        )
    ).ok()
    assert result["createCustomer"] == {"customer": None, "errors": [{"code": "FORBIDDEN"}]}
