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


class _Cycle:
    """An object in a reference cycle of its own: only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


async def test_garbage_counts_what_only_a_collection_frees_over_the_window(
    settings: Any,
) -> None:
    import asyncio

    async def leave_cycles() -> None:
        await asyncio.sleep(0.05)  # once the window has opened
        for _ in range(300):
            _Cycle()

    async with support.app_client(settings, debug_runtime=True) as client:
        _Cycle()  # before the window: not counted
        task = asyncio.ensure_future(leave_cycles())
        answer = (await client.http.get("/debug/runtime?garbage=0.5")).json()["garbage"]
        await task
        refused = await client.http.get("/debug/runtime?garbage=600")
        unreadable = await client.http.get("/debug/runtime?garbage=soon")
    assert answer["by_type"][f"{__name__}._Cycle"] == 300
    assert answer["objects"] >= 300
    assert answer["seconds"] == 0.5
    assert refused.status_code == unreadable.status_code == 400
    assert not gc.garbage and not gc.get_debug() & gc.DEBUG_SAVEALL


async def test_runtime_figures_are_not_shown_to_other_addresses(settings: Any) -> None:
    async with support.app_client(
        settings, client_ip=support.random_ip(), debug_runtime=True
    ) as client:
        response = await client.http.get("/debug/runtime")
    assert response.status_code == 404


async def test_young_describes_what_the_next_young_collection_walks(settings: Any) -> None:
    import asyncio

    kept: list[Any] = []

    async def collect_young() -> None:
        await asyncio.sleep(0.05)  # once the request is waiting
        kept.append([_Marker() for _ in range(3_000)])  # one list holding 3,000
        gc.collect(0)

    async with support.app_client(settings, debug_runtime=True) as client:
        task = asyncio.ensure_future(collect_young())
        answer = (await client.http.get("/debug/runtime?young=10")).json()["young"]
        await task
        refused = await client.http.get("/debug/runtime?young=0")
        gc.disable()  # no collection comes in the window
        try:
            none = (await client.http.get("/debug/runtime?young=0.05")).json()["young"]
        finally:
            gc.enable()
    assert answer["by_type"][f"{__name__}._Marker"] == 3_000
    assert answer["objects"] >= 3_001 and answer["references"] >= 3_000
    assert [3_000, "builtins.list"] in answer["largest"]
    assert answer["pause_ms"] >= 0 and answer["collected"] >= 0
    assert refused.status_code == 400
    assert none is None


async def test_middle_describes_what_the_next_middle_collection_walks(settings: Any) -> None:
    """``?middle=S``: the objects of the middle generation and the young one, met by the
    next collection of the middle generation (not by a young one in between)."""
    import asyncio

    kept: list[Any] = []

    async def collect() -> None:
        await asyncio.sleep(0.05)  # once the request is waiting
        kept.append([_Marker() for _ in range(2_000)])
        gc.collect(0)  # a young collection: the markers survive into the middle generation
        kept.append([_Marker() for _ in range(1_000)])  # young ones
        gc.collect(1)

    async with support.app_client(settings, debug_runtime=True) as client:
        task = asyncio.ensure_future(collect())
        answer = (await client.http.get("/debug/runtime?middle=10")).json()["middle"]
        await task
        refused = await client.http.get("/debug/runtime?middle=x")
    assert answer["by_type"][f"{__name__}._Marker"] == 3_000
    assert answer["pause_ms"] >= 0
    assert refused.status_code == 400
