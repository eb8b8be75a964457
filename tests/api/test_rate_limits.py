"""Rate limits over HTTP: per user, per API key and per address for anonymous callers,
429 + Retry-After + RateLimit-* headers; batches count per operation; logins are
throttled per address and per email without telling which emails exist."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.models import Role, User
from crm_graphql.services import api_keys
from crm_graphql.services.actor import Actor
from crm_graphql.settings import Settings
from tests import support

LOGIN = "mutation($i: LoginInput!) { login(input: $i) { accessToken errors { code } } }"


def _limited(settings: Settings, **overrides: Any) -> Any:
    return support.app_client(
        settings, client_ip=support.random_ip(), rate_limits=True, **overrides
    )


async def _login(client: support.GraphQLClient, email: str, password: str) -> Any:
    return await client(LOGIN, {"i": {"email": email, "password": password}})


def _assert_rate_limited(result: support.GraphQLResponse) -> None:
    assert result.status == 429, result.body
    error = result.errors[0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert int(result.headers["retry-after"]) == error["extensions"]["retryAfter"] >= 1


async def test_user_requests_are_counted_with_headers(
    settings: Settings, users: dict[Role, User]
) -> None:
    async with _limited(settings, rate_limit_user_per_minute=3) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        for remaining in (2, 1, 0):
            result = await client("{ me { email } }")
            assert result.status == 200
            assert result.headers["ratelimit-limit"] == "3"
            assert result.headers["ratelimit-remaining"] == str(remaining)
            assert result.headers["ratelimit-policy"] == "3;w=60"
            assert 0 < int(result.headers["ratelimit-reset"]) <= 60
        refused = await client("{ me { email } }")
        _assert_rate_limited(refused)
        assert "data" not in refused.body
        assert 15 <= refused.errors[0]["extensions"]["retryAfter"] <= 20
        # Another user of the same address has a bucket of their own.
        other = await anonymous.logged_in(users[Role.VIEWER].email, support.PASSWORD)
        assert (await other("{ me { email } }")).status == 200


async def test_a_batch_counts_one_hit_per_operation(
    settings: Settings, users: dict[Role, User]
) -> None:
    async with _limited(settings, rate_limit_user_per_minute=5) as anonymous:
        client = await anonymous.logged_in(users[Role.AGENT].email, support.PASSWORD)
        batch = [{"query": "{ me { email } }"}] * 3
        first = await client.http.post("/graphql", json=batch, headers=client.headers())
        assert first.status_code == 200 and first.headers["ratelimit-remaining"] == "2"
        second = await client.http.post("/graphql", json=batch, headers=client.headers())
        assert second.status_code == 429
        assert second.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # Refused whole: the two hits left are still there.
        assert (await client("{ me { email } }")).headers["ratelimit-remaining"] == "1"


async def test_api_keys_have_buckets_of_their_own(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    admin: Actor,
    users: dict[Role, User],
) -> None:
    async with sessionmaker() as session, session.begin():
        _key, token = await api_keys.create_api_key(
            admin, session, name="Partner", scopes=[api_keys.CUSTOMERS_READ]
        )
    async with _limited(
        settings, rate_limit_api_key_per_minute=2, rate_limit_user_per_minute=50
    ) as anonymous:
        partner = support.GraphQLClient(anonymous.http, token)
        for _ in range(2):
            result = await partner("{ customers { totalCount } }")
            assert result.status == 200 and result.headers["ratelimit-limit"] == "2"
        _assert_rate_limited(await partner("{ customers { totalCount } }"))
        user = await anonymous.logged_in(users[Role.ADMIN].email, support.PASSWORD)
        assert (await user("{ customers { totalCount } }")).headers["ratelimit-limit"] == "50"


async def test_anonymous_requests_are_counted_per_address(settings: Settings) -> None:
    async with _limited(settings, rate_limit_anonymous_per_minute=2) as anonymous:
        assert (await anonymous("{ __typename }")).status == 200
        assert (await anonymous("{ __typename }")).status == 200
        _assert_rate_limited(await anonymous("{ __typename }"))
    async with _limited(settings, rate_limit_anonymous_per_minute=2) as elsewhere:
        assert (await elsewhere("{ __typename }")).status == 200


async def test_bad_credentials_count_against_the_address(settings: Settings) -> None:
    async with _limited(settings, rate_limit_anonymous_per_minute=2) as anonymous:
        guessing = support.GraphQLClient(anonymous.http, "crm_abcdefghij_" + "s" * 43)
        for _ in range(2):
            assert (await guessing("{ __typename }")).status == 401
        _assert_rate_limited(await guessing("{ __typename }"))
        _assert_rate_limited(await anonymous("{ __typename }"))


async def test_login_attempts_are_limited_per_address(settings: Settings) -> None:
    async with _limited(settings, login_attempts_per_minute=3) as anonymous:
        for _ in range(3):
            result = await _login(anonymous, f"{uuid.uuid4().hex}@example.com", "guess")
            assert result.ok()["login"]["errors"] == [{"code": "INVALID_CREDENTIALS"}]
        refused = await _login(anonymous, f"{uuid.uuid4().hex}@example.com", "guess")
        _assert_rate_limited(refused)
        assert refused.data is None


async def test_failed_logins_block_an_email_alike_whether_it_exists_or_not(
    settings: Settings, users: dict[Role, User]
) -> None:
    real = users[Role.AGENT].email
    unknown = f"nobody-{uuid.uuid4().hex}@example.com"
    answers = {}
    for email in (real, unknown):
        async with _limited(settings, login_failures_per_email=3) as anonymous:
            for _ in range(3):
                result = await _login(anonymous, email, "wrong password")
                assert result.ok()["login"]["errors"] == [{"code": "INVALID_CREDENTIALS"}]
            # The right password is not even checked while the email is blocked.
            blocked = await _login(anonymous, email, support.PASSWORD)
            _assert_rate_limited(blocked)
            answers[email] = blocked
    real_error, unknown_error = (answers[e].errors[0] for e in (real, unknown))
    assert real_error["message"] == unknown_error["message"]
    assert real_error["extensions"]["code"] == unknown_error["extensions"]["code"]
    assert (
        abs(real_error["extensions"]["retryAfter"] - unknown_error["extensions"]["retryAfter"]) <= 1
    )
    assert answers[real].data == answers[unknown].data is None
    # Blocked from any address (the limit follows the email) ...
    async with _limited(settings, login_failures_per_email=3) as elsewhere:
        _assert_rate_limited(await _login(elsewhere, real, support.PASSWORD))
        # ... while other accounts log in normally.
        other = await _login(elsewhere, users[Role.VIEWER].email, support.PASSWORD)
        assert other.ok()["login"]["accessToken"]


async def test_failed_logins_block_an_address(settings: Settings, users: dict[Role, User]) -> None:
    async with _limited(settings, login_failures_per_ip=3) as anonymous:
        for _ in range(3):
            await _login(anonymous, f"{uuid.uuid4().hex}@example.com", "guess")
        _assert_rate_limited(await _login(anonymous, users[Role.AGENT].email, support.PASSWORD))
    async with _limited(settings, login_failures_per_ip=3) as elsewhere:
        ok = await _login(elsewhere, users[Role.AGENT].email, support.PASSWORD)
        assert ok.ok()["login"]["accessToken"]


async def test_rate_limits_can_be_switched_off(settings: Settings) -> None:
    async with support.app_client(
        settings, rate_limits=False, rate_limit_anonymous_per_minute=1
    ) as anonymous:
        for _ in range(3):
            result = await anonymous("{ __typename }")
            assert result.status == 200 and "ratelimit-limit" not in result.headers
