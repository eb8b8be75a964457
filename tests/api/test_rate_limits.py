"""Rate limits over HTTP: per user, per API key and per address for anonymous callers,
429 + Retry-After + RateLimit-* headers; batches count per operation; logins are
throttled per address and per email without telling which emails exist, hold under
concurrent attempts, and cannot be used to lock an account's owner out."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_graphql.app import build_app
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


@contextlib.asynccontextmanager
async def _limited_app(
    settings: Settings, **overrides: Any
) -> AsyncIterator[Callable[[str], Awaitable[support.GraphQLClient]]]:
    """One app with rate limits on, and clients of it seen from any address."""
    application = build_app(settings.model_copy(update={"rate_limits": True, **overrides}))
    async with (
        application.router.lifespan_context(application),
        contextlib.AsyncExitStack() as stack,
    ):

        async def from_address(address: str) -> support.GraphQLClient:
            transport = httpx.ASGITransport(app=application, client=(address, 40000))
            http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            return support.GraphQLClient(await stack.enter_async_context(http))

        yield from_address


def _outcomes(results: list[support.GraphQLResponse]) -> Counter[str]:
    """How many attempts were checked (INVALID_CREDENTIALS or a token) or refused."""
    outcomes: Counter[str] = Counter()
    for result in results:
        if result.status == 429:
            _assert_rate_limited(result)
            outcomes["RATE_LIMITED"] += 1
        elif result.ok()["login"]["accessToken"]:
            outcomes["LOGGED_IN"] += 1
        else:
            [error] = result.ok()["login"]["errors"]
            outcomes[error["code"]] += 1
    return outcomes


async def test_concurrent_failures_from_many_addresses_check_at_most_the_email_budget(
    settings: Settings, users: dict[Role, User]
) -> None:
    email = users[Role.AGENT].email
    async with _limited_app(settings, login_failures_per_email=10) as from_address:
        clients = [await from_address(support.random_ip()) for _ in range(50)]
        results = await asyncio.gather(*(_login(c, email, "wrong password") for c in clients))
    assert _outcomes(results) == {"INVALID_CREDENTIALS": 10, "RATE_LIMITED": 40}


async def test_concurrent_failures_from_one_address_check_at_most_its_budgets(
    settings: Settings, users: dict[Role, User]
) -> None:
    email = users[Role.AGENT].email
    async with _limited_app(
        settings, login_attempts_per_minute=1000, login_failures_per_ip=20
    ) as from_address:
        client = await from_address(support.random_ip())
        one_email = await asyncio.gather(*(_login(client, email, "wrong") for _ in range(50)))
        other = await from_address(support.random_ip())
        many = await asyncio.gather(
            *(_login(other, f"{uuid.uuid4().hex}@example.com", "wrong") for _ in range(50))
        )
    # One email from one address: its budget of 10; many emails: the address's 20.
    assert _outcomes(one_email) == {"INVALID_CREDENTIALS": 10, "RATE_LIMITED": 40}
    assert _outcomes(many) == {"INVALID_CREDENTIALS": 20, "RATE_LIMITED": 30}


async def test_a_third_party_cannot_lock_the_owner_out(
    settings: Settings, users: dict[Role, User]
) -> None:
    email = users[Role.AGENT].email
    usual, attackers = support.random_ip(), [support.random_ip() for _ in range(30)]
    async with _limited_app(settings, login_failures_per_email=10) as from_address:
        owner = await from_address(usual)
        assert (await _login(owner, email, support.PASSWORD)).ok()["login"]["accessToken"]
        # Someone else fails 60 times from 30 addresses, concurrently, again and again.
        clients = [await from_address(address) for address in attackers]
        for _ in range(2):
            attack = await asyncio.gather(*(_login(c, email, "guess") for c in clients))
            assert _outcomes(attack)["INVALID_CREDENTIALS"] <= 10
        # The owner, from the address they logged in from, still logs in at once ...
        again = await _login(owner, email, support.PASSWORD)
        assert again.ok()["login"]["accessToken"], again.body
        # ... and their own typos there count against that address's budget only.
        typos = [await _login(owner, email, "typo") for _ in range(10)]
        assert _outcomes(typos) == {"INVALID_CREDENTIALS": 10}
        _assert_rate_limited(await _login(owner, email, support.PASSWORD))
        # A device it never logged in from waits for the attack to stop: the same answer
        # as for every other email whose budget is spent.
        new_device = await from_address(support.random_ip())
        _assert_rate_limited(await _login(new_device, email, support.PASSWORD))
