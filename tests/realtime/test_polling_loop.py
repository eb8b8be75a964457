"""``PollingLoop.settled``: the round in progress, and one that is due (woken), end before
it returns; between rounds it returns at once. The test suite waits on it before each
test so that a paused event loop never holds a job's transaction open."""

from __future__ import annotations

import asyncio

from crm_graphql.realtime.outbox import PollingLoop


class Gated(PollingLoop):
    def __init__(self) -> None:
        super().__init__(poll_seconds=3600)
        self.gate = asyncio.Event()
        self.rounds = 0

    async def run_once(self) -> bool:
        self.rounds += 1
        if self.rounds > 1:  # every round after the first waits for the gate
            await self.gate.wait()
            self.gate.clear()
        return False


async def test_settled_waits_for_the_round_in_progress_and_a_due_one() -> None:
    loop = Gated()
    await loop.start()
    try:
        await asyncio.wait_for(loop.settled(), 1)  # the first round has ended
        assert loop.rounds == 1
        loop.wake()  # a round is due: settled waits for it to run and end
        waiting = asyncio.create_task(loop.settled())
        await asyncio.sleep(0.1)
        assert loop.rounds == 2 and not waiting.done()
        loop.gate.set()
        await asyncio.wait_for(waiting, 1)
        await asyncio.wait_for(loop.settled(), 0.1)  # between rounds: at once
    finally:
        loop.gate.set()
        await loop.close()
    await asyncio.wait_for(loop.settled(), 0.1)  # stopped
