"""Who may read /metrics (``CRM_METRICS``), and what is counted without a server process
of its own: rate-limit refusals (issue 16, point 6)."""

from __future__ import annotations

from typing import Any

import pytest

from crm_graphql.settings import ConfigurationError, Settings
from tests import support


async def _status(settings: Settings, client_ip: str, headers: dict[str, str] | None = None, **overrides: Any) -> int:
    async with support.app_client(settings, client_ip=client_ip, **overrides) as client:
        return (await client.http.get("/metrics", headers=headers or {})).status_code


async def test_by_default_only_loopback_peers_read_metrics(settings: Settings) -> None:
    assert settings.metrics == "local"
    assert await _status(settings, "127.0.0.1") == 200
    assert await _status(settings, "::1") == 200
    assert await _status(settings, "203.0.113.9") == 404
    assert await _status(settings, "10.1.2.3") == 404


async def test_token_mode_wants_the_bearer_token_from_anywhere(settings: Settings) -> None:
    mode = {"metrics": "token", "metrics_token": "scrape-secret"}
    right = {"Authorization": "Bearer scrape-secret"}
    assert await _status(settings, "203.0.113.9", right, **mode) == 200
    assert await _status(settings, "203.0.113.9", {"Authorization": "Bearer nope"}, **mode) == 404
    assert await _status(settings, "127.0.0.1", **mode) == 404  # loopback is no exception


async def test_token_mode_without_a_token_does_not_start(settings: Settings) -> None:
    from crm_graphql.app import build_app

    with pytest.raises(ConfigurationError, match="CRM_METRICS_TOKEN"):
        build_app(settings.model_copy(update={"metrics": "token"}))


async def test_open_and_off(settings: Settings) -> None:
    assert await _status(settings, "203.0.113.9", metrics="open") == 200
    assert await _status(settings, "127.0.0.1", metrics="off") == 404


async def test_rate_limit_refusals_are_counted_by_bucket(settings: Settings) -> None:
    limited = {"rate_limits": True, "rate_limit_anonymous_per_minute": 2}
    async with support.app_client(
        settings, client_ip="127.0.0.1", metrics="open", **limited
    ) as local:
        before = support.metric_samples((await local.http.get("/metrics")).text)
    async with support.app_client(
        settings, client_ip=support.random_ip(), metrics="open", **limited
    ) as anonymous:
        for _ in range(2):
            assert (await anonymous("{ __typename }")).status == 200
        assert (await anonymous("{ __typename }")).status == 429
        assert (await anonymous("{ __typename }")).status == 429
        after = support.metric_samples((await anonymous.http.get("/metrics")).text)
    refusals = "crm_graphql_rate_limit_refusals_total"
    assert support.metric(after, refusals, bucket="ip") - support.metric(before, refusals, bucket="ip") == 2
    assert support.metric(after, refusals, bucket="user") == support.metric(before, refusals, bucket="user")
    refused = {"operation": "", "type": "unknown", "outcome": "RATE_LIMITED"}
    operations = "crm_graphql_operations_total"
    assert support.metric(after, operations, **refused) - support.metric(before, operations, **refused) == 2
