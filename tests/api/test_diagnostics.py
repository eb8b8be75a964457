"""``GET /debug/runtime`` (crm_graphql/diagnostics.py), what ``make soak`` polls: off
unless ``CRM_DEBUG_RUNTIME`` is set, loopback clients only, and the pauses it reports are
the collections that really happened."""

from __future__ import annotations

import gc
from typing import Any

from tests import support


async def test_runtime_figures_are_off_unless_asked_for(settings: Any) -> None:
    async with support.app_client(settings, env="production") as client:
        response = await client.http.get("/debug/runtime")
    assert response.status_code == 404


async def test_runtime_figures_count_the_collections_and_the_realtime_state(
    settings: Any,
) -> None:
    async with support.app_client(settings, debug_runtime=True) as client:
        before = (await client.http.get("/debug/runtime")).json()
        for _ in range(3):
            gc.collect()
        after = (await client.http.get("/debug/runtime")).json()
    assert after["rss_kib"] > 0 and after["uptime_s"] >= 0
    assert after["gc"]["collections"][2] >= before["gc"]["collections"][2] + 3
    assert after["gc"]["pause_ms_total"] > before["gc"]["pause_ms_total"]
    assert after["gc"]["pause_ms_max"] > 0
    assert {"over_100ms", "over_200ms", "recent", "frozen"} <= after["gc"].keys()
    assert after["loop"]["lag_ms_max"] >= 0
    realtime = after["realtime"]
    assert realtime["streams"] == realtime["groups"] == realtime["open_sockets"] == 0, realtime
    assert {"window_events", "rendered_kept", "ephemeral_listeners"} <= realtime.keys()
    assert "census" not in after


async def test_a_census_counts_the_objects_alive_by_type(settings: Any) -> None:
    async with support.app_client(settings, debug_runtime=True) as client:
        kept = [_Marker() for _ in range(50_000)]  # among the most numerous types
        census = (await client.http.get("/debug/runtime?census=1&collect=1")).json()["census"]
    assert census["by_type"][f"{__name__}._Marker"] == len(kept)
    assert census["objects"] >= sum(census["by_type"].values())


class _Marker:
    """Counted by the census (instances of a class of their own)."""


async def test_runtime_figures_are_not_shown_to_other_addresses(settings: Any) -> None:
    async with support.app_client(
        settings, client_ip=support.random_ip(), debug_runtime=True
    ) as client:
        response = await client.http.get("/debug/runtime")
    assert response.status_code == 404
