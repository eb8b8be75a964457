"""JSON bytes that are kept (caches, event windows, dashboards) rather than sent once.

``orjson.dumps`` returns a bytes object whose allocation is its working buffer: at least
about 4 KiB, and for larger documents up to the next power of two, whatever the length of
the JSON in it (``sys.getsizeof`` reports the length, not the allocation; measured with
``tracemalloc``: a 194-byte event payload held 4,098 bytes). Harmless for an answer written
to a socket and dropped; for a value kept thousands of times it is most of the memory.
``kept`` copies such a value into a bytes object of its own size (about 1 us).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps_kept", "kept"]


def kept(data: bytes) -> bytes:
    """``data`` in an allocation of its own length. A join of two items always builds a
    new object (a join of one returns the item itself)."""
    return b"".join((data, b""))


def dumps_kept(value: Any, option: int | None = None) -> bytes:
    """``orjson.dumps`` for a value that will be kept."""
    return kept(orjson.dumps(value, option=option))
