"""Persisted queries: a request names its document by SHA-256 instead of sending it.

Two modes (decision 0023):
- **Automatic persisted queries** (Apollo's protocol, on by default): a request carries
  ``extensions.persistedQuery = {"version": 1, "sha256Hash": <hex>}``. Without ``query``,
  the document registered under that hash runs; an unknown hash answers
  ``PERSISTED_QUERY_NOT_FOUND`` (HTTP 200, so that Apollo's link sends the document and
  does not switch persisted queries off, which it does on a 400). With ``query``, the
  hash must be the document's (else ``PERSISTED_QUERY_HASH_MISMATCH``, 400) and the
  document is registered once it has run without a request error. Documents live in
  Redis, shared by every process: one hash of hash -> document and a sorted set of last
  use; past ``max_entries`` the least recently used are dropped, and a document larger
  than ``max_bytes`` is run but never stored. Each process keeps the documents it used
  lately in memory too (a hash names one text forever, so that copy is never stale).
  When Redis cannot be reached, lookups miss (the client then sends the document, which
  runs) and registrations are skipped: the API stays up.
- **Trusted documents** (``CRM_PERSISTED_ONLY``): only the documents of a manifest the
  operator gives (``CRM_PERSISTED_QUERIES_MANIFEST``) run, by hash or by text; anything
  else is ``PERSISTED_QUERY_NOT_ALLOWED`` (400) and nothing is registered. For public
  deployments whose clients are known in advance. The manifest is Apollo's persisted
  query manifest (``{"format": "apollo-persisted-query-manifest", "operations": [{"id",
  "body", ...}]}``) or a plain ``{"<sha256>": "<document>"}`` map (Relay, GraphQL Code
  Generator); every id is checked against its document when the server starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from crm_graphql.logs import RepeatedWarning

if TYPE_CHECKING:
    import redis.asyncio as redis

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# One hash tag: both keys land on one Redis Cluster slot, as the script needs.
PREFIX = "crm:{pq}:"
LOCAL_ENTRIES = 1000

# Last use is a counter in Redis, not a clock: strictly increasing across processes, so
# the least recently used document is always the one dropped (no ties within a
# millisecond, no disagreement between clocks).
# KEYS: documents, last use, counter. ARGV: hash, document, max entries.
_REGISTER = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local dropped = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #dropped, 2 do
    redis.call('HDEL', KEYS[1], dropped[i])
  end
end
return over
"""
# KEYS: as above. ARGV: hash. The document, its use recorded; false when unknown.
_LOOKUP = """
local document = redis.call('HGET', KEYS[1], ARGV[1])
if document then
  redis.call('ZADD', KEYS[2], 'XX', redis.call('INCR', KEYS[3]), ARGV[1])
end
return document
"""


class PersistedQueryError(Exception):
    """The request's persisted query cannot be used: an HTTP status and a code."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def document_hash(document: str) -> str:
    """The SHA-256 of a document's UTF-8 text, lower-case hex (what clients send)."""
    return hashlib.sha256(document.encode()).hexdigest()


def load_manifest(path: Path) -> dict[str, str]:
    """hash -> document of a manifest file (module docstring); ``ValueError`` for a file
    that is not one, or whose ids are not the hashes of their documents."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if isinstance(content, dict) and isinstance(content.get("operations"), list):
        entries = [
            (op.get("id"), op.get("body")) if isinstance(op, dict) else (None, None)
            for op in content["operations"]
        ]
    elif isinstance(content, dict):
        entries = list(content.items())
    else:
        raise ValueError(f"{path}: neither an Apollo manifest nor a hash -> document map")
    documents: dict[str, str] = {}
    for key, document in entries:
        if not isinstance(key, str) or not isinstance(document, str):
            raise ValueError(f"{path}: every operation needs a string id and body")
        if document_hash(document) != key.lower():
            raise ValueError(f"{path}: {key} is not the SHA-256 of its document")
        documents[key.lower()] = document
    return documents


@dataclass
class Resolved:
    """The document a request runs, and the hash to register it under once it ran
    (None: nothing to register)."""

    query: str
    register: str | None = None


@dataclass
class PersistedQueries:
    """The persisted-query rules of one process (module docstring). ``client`` None:
    automatic persisted queries are off; ``trusted`` set: trusted-documents mode."""

    client: redis.Redis | None
    max_entries: int = 10_000
    max_bytes: int = 100_000
    trusted: dict[str, str] | None = None
    prefix: str = PREFIX
    _local: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._warning = RepeatedWarning(log, interval=60.0)
        self._keys = [f"{self.prefix}documents", f"{self.prefix}last-use", f"{self.prefix}clock"]
        # redis-py's scripts load themselves again after a Redis restart (NOSCRIPT).
        self._register = self.client.register_script(_REGISTER) if self.client else None
        self._lookup_script = self.client.register_script(_LOOKUP) if self.client else None

    async def resolve(self, params: dict[str, Any]) -> Resolved:
        """The document of one operation's parameters (``query`` and ``extensions``
        already checked for their types), or ``PersistedQueryError``."""
        query = params.get("query")
        extension = (params.get("extensions") or {}).get("persistedQuery")
        if extension is None:
            if not isinstance(query, str) or not query.strip():
                raise PersistedQueryError(400, "`query` must be a non-empty string", "BAD_REQUEST")
            if self.trusted is not None and document_hash(query) not in self.trusted:
                raise _not_allowed()
            return Resolved(query)
        hash_ = _checked_hash(extension)
        if isinstance(query, str) and query:
            if document_hash(query) != hash_:
                raise PersistedQueryError(
                    400,
                    "extensions.persistedQuery.sha256Hash is not the SHA-256 of `query`",
                    "PERSISTED_QUERY_HASH_MISMATCH",
                )
            if self.trusted is not None:
                if hash_ not in self.trusted:
                    raise _not_allowed()
                return Resolved(query)
            return Resolved(query, hash_ if self.client is not None else None)
        if self.trusted is not None:
            trusted = self.trusted.get(hash_)
            if trusted is None:
                raise _not_allowed()
            return Resolved(trusted)
        if self.client is None:
            raise PersistedQueryError(
                200, "PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED"
            )
        found = await self._lookup(hash_)
        if found is None:
            raise PersistedQueryError(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
        return Resolved(found)

    async def register(self, hash_: str, document: str) -> None:
        """Keep ``document`` under ``hash_`` (already checked to be its hash)."""
        if self._register is None or len(document.encode()) > self.max_bytes:
            return
        self._remember(hash_, document)
        try:
            await self._register(keys=self._keys, args=[hash_, document, self.max_entries])
        except (RedisError, OSError):
            self._warning(
                "persisted query not stored: Redis is unreachable (%d time(s)%s)", exc_info=True
            )

    async def _lookup(self, hash_: str) -> str | None:
        local = self._local.get(hash_)
        if local is not None:
            self._local.move_to_end(hash_)
            return local
        assert self._lookup_script is not None
        try:
            found = await self._lookup_script(keys=self._keys, args=[hash_])
        except (RedisError, OSError):
            self._warning(
                "persisted queries not found: Redis is unreachable (%d time(s)%s)", exc_info=True
            )
            return None
        if not found:
            return None
        document = found.decode() if isinstance(found, bytes) else str(found)
        if document_hash(document) != hash_:  # never trust what a store hands back
            return None
        self._remember(hash_, document)
        return document

    def _remember(self, hash_: str, document: str) -> None:
        self._local[hash_] = document
        self._local.move_to_end(hash_)
        while len(self._local) > LOCAL_ENTRIES:
            self._local.popitem(last=False)


def _checked_hash(extension: Any) -> str:
    if not isinstance(extension, dict) or extension.get("version") != 1:
        raise PersistedQueryError(400, "extensions.persistedQuery.version must be 1", "BAD_REQUEST")
    hash_ = extension.get("sha256Hash")
    if not isinstance(hash_, str) or not _SHA256.match(hash_):
        raise PersistedQueryError(
            400, "extensions.persistedQuery.sha256Hash must be 64 hex digits", "BAD_REQUEST"
        )
    return hash_.lower()


def _not_allowed() -> PersistedQueryError:
    return PersistedQueryError(
        400,
        "Only the persisted documents of this server's manifest may be run",
        "PERSISTED_QUERY_NOT_ALLOWED",
    )
