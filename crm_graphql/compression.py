"""Compressed answers: zstd, Brotli or gzip, whichever the client accepts (in that order of
preference), for bodies from ``CRM_COMPRESSION_MIN_BYTES`` on (decision 0022).

starlette-compress does the work: it leaves WebSocket traffic alone (it only wraps HTTP),
compresses streamed ``text/event-stream`` bodies message by message with a flush after each
(an event is never held back), and passes bodies that already carry a
``Content-Encoding`` (the explorer's precompressed assets) as they are. Levels are its
defaults (zstd 4, Brotli 4, gzip 4): fast enough for answers made per request, where the
best levels cost far more CPU for a few percent (figures in the decision)."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette_compress import CompressMiddleware, add_compress_type

from crm_graphql.http import GRAPHQL_RESPONSE

# GraphQL's own JSON media type is not in starlette-compress's list of compressible types.
add_compress_type(GRAPHQL_RESPONSE)


def compression_middleware(minimum_size: int) -> Middleware:
    """The compression layer for bodies of at least ``minimum_size`` bytes."""
    return Middleware(CompressMiddleware, minimum_size=minimum_size)
