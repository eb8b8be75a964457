"""Sending to Redis in batches: what callers hand in while a batch is being sent waits
together and goes out as the next batch, in the order it came, in one round trip.

Under load this is one pipeline for many callers (presence changes of a burst of
connections, the notices of concurrent commits) instead of a round trip each; a lone
caller's batch goes out at once. A caller returns once its batch went out, so whatever it
does next (answering a mutation) comes after its notice was sent. A batch holds at most
``limit`` items (the rest form the batches after it, queued in order), so one round trip
stays small enough to finish well inside its caller's timeout even when thousands come
at once on a busy machine. The first caller of a batch sends it; if that caller is
cancelled before its turn the batch is dropped (best effort, as every use here is: a lost
notice is repaired by the next one or a heartbeat).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Batch(Generic[T]):
    done: asyncio.Future[None]
    items: list[T] = field(default_factory=list)


class Batches(Generic[T]):
    """``add`` hands ``send`` its item with the others that came while the previous batch
    was being sent. ``send`` gets the items in order; what it raises reaches the caller
    that sent the batch (the others just return): it should handle its own failures."""

    def __init__(self, send: Callable[[list[T]], Awaitable[None]], limit: int = 500) -> None:
        if limit < 1:
            raise ValueError("a batch holds at least one item")
        self._send = send
        self._limit = limit
        self._lock = asyncio.Lock()  # one batch on its way at a time; waiters in order
        self._batch: _Batch[T] | None = None  # the last batch still taking items

    async def add(self, item: T) -> None:
        batch = self._batch
        if batch is not None and len(batch.items) < self._limit:
            batch.items.append(item)  # its first item's caller sends it: wait for that
            await asyncio.shield(batch.done)
            return
        batch = self._batch = _Batch(asyncio.get_running_loop().create_future(), [item])
        try:
            async with self._lock:  # asyncio.Lock is fair: batches go in the order made
                if self._batch is batch:
                    self._batch = None  # items from now on form the next batch
                await self._send(batch.items)
        finally:
            if self._batch is batch:  # given up before its turn (cancelled)
                self._batch = None
            if not batch.done.done():
                batch.done.set_result(None)
