"""The token-read cache: what a token read asks the database, kept in each server process and
dropped as soon as PostgreSQL says it changed.

Triggers (migration 0004) send a NOTIFY on channel `token_cache` for every changed row of the
three tables a read joins, naming what changed: an API key, an advertiser or a grant, in the
format `parse_change` reads (its result types spell it out; tests/test_token_cache.py makes
the real triggers fire and parses what they send).

Each process LISTENs on one connection of its own and evicts what a notification names, so a
revoked, re-authorized or refreshed grant, an advertiser a liveness check removed and a
revoked API key stop being served on every replica once PostgreSQL delivers the notification
(milliseconds). The guarantees:

- Fail closed: the cache is used only while the listening connection is up and has answered a
  heartbeat within HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS; otherwise it is emptied and
  every read goes to the database. So even a connection that dies silently leaves at most
  that long (2 s) of stale answers.
- No lost eviction: a read keeps what it fetched only if no notification arrived since it
  started (`generation`), since what it fetched may predate the change that notification names.
- No stampede: while live, concurrent misses for one subject by one key make one query, the
  others wait for its answer; one that comes after a notification queries afresh, for the
  same reason.
- Only sealed tokens are kept, as stored; the plaintext is made per answer and dropped with it.
- Bounded by memory: what it keeps is counted in bytes (SUBJECT_BYTES a subject, ROW_BYTES a
  grant row, both measured by tests/test_token_cache.py) against TOKEN_CACHE_MAX_MB, and the
  least recently read subjects make room for new ones, one at a time (a row's tags count
  on top, `row_bytes`). Subjects served by one
  grant share its row, so an agency's thousand advertisers cost about a thousand subjects and
  one row. Unknown API keys are never kept, so random keys cannot fill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import lru

from tiktok_auth_service.db import CONNECTION_ERRORS, DATABASE_ERRORS, listening
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.repository.reads import ApiKeyRow, GrantRow, TokenRow

log = logging.getLogger(__name__)

CHANNEL = "token_cache"
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TIMEOUT_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
# What keeping one subject costs, and one grant row beside it: measured with tracemalloc on
# CPython 3.11 at about 190 bytes (an advertiser id; an open id is longer) and 1,000 bytes
# (tests/test_token_cache.py fails if what is counted falls short of what is taken).
SUBJECT_BYTES = 300
ROW_BYTES = 1_200
# What each tag of a row adds besides its characters, counted at four bytes each (CPython
# stores a string with any character past U+FFFF at four bytes a character).
TAG_BYTES = 200
# How the listening connection shows in pg_stat_activity.
APPLICATION_NAME = "tiktok-auth-service token cache"

# A subject as the cache keys it: its kind's prefix and its id, one string. Strings (and dicts
# holding only strings and None) are objects the garbage collector does not track, so a full
# collection does not walk a million cached subjects (a tuple key and a set of them per grant
# made it 150 ms at a million).
Subject = str
_PREFIXES = {"advertiser": "a:", "tiktok_account": "o:"}


def _subject(kind: str, subject: str) -> Subject:
    return _PREFIXES[kind] + subject


@dataclass(frozen=True, slots=True)
class KeyChanged:
    """`c:<key hash, hex>`: an API key's row (created, revoked)."""

    key_hash: bytes


@dataclass(frozen=True, slots=True)
class AdvertiserChanged:
    """`a:<advertiser id>`: which grant serves an advertiser, or its status."""

    advertiser_id: str


@dataclass(frozen=True, slots=True)
class GrantChanged:
    """`g:<grant id>:<open id>`: a grant's row (its tokens, status, checks); the open id is
    empty for a grant without one (an advertiser grant)."""

    grant_id: uuid.UUID
    open_id: str | None


Change = KeyChanged | AdvertiserChanged | GrantChanged


def parse_change(payload: str) -> Change | None:
    """What a notification on CHANNEL names; None for a payload not in this format."""
    what, _, name = payload.partition(":")
    try:
        if what == "c":
            return KeyChanged(bytes.fromhex(name))
        if what == "a":
            return AdvertiserChanged(name)
        if what == "g":
            grant_id, _, open_id = name.partition(":")
            return GrantChanged(uuid.UUID(grant_id), open_id or None)
    except ValueError:
        pass
    return None


def row_bytes(grant: GrantRow) -> int:
    """What keeping `grant` costs: ROW_BYTES, and its tags on top (up to ten of 319
    characters)."""
    return ROW_BYTES + sum(TAG_BYTES + 4 * (len(k) + len(v)) for k, v in grant.tags.items())


class TokenCache:
    """Callers by key hash, serving grants by subject (None: not connected), least recently
    read first out. Only the event loop's thread touches it, so no lock: a lookup never
    waits."""

    def __init__(self, max_bytes: int, metrics: Metrics) -> None:
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.live = False
        # Bumped by every notification and every change of `live`.
        self.generation = 0
        self.bytes = 0  # what the subjects and rows kept are counted at
        self._callers: dict[bytes, ApiKeyRow] = {}
        # lru-dict's own capacity is not the bound (bytes are): it is never reached.
        self._grants: lru.LRU[Subject, GrantRow | None] = lru.LRU(
            max(1, max_bytes // SUBJECT_BYTES) + 1
        )
        # Each grant's subjects, as the keys of a dict (values None): untracked, unlike a set.
        self._subjects_of_grant: dict[uuid.UUID, dict[Subject, None]] = {}
        # One row per grant and status, shared by the subjects it serves.
        self._rows: dict[uuid.UUID, dict[str, GrantRow]] = {}
        # The queries under way for misses, by (kind, key hash, subject), with the generation
        # each started at.
        self._queries: dict[tuple[str, bytes, str], tuple[int, asyncio.Task[TokenRow | None]]] = {}

    def __len__(self) -> int:
        return len(self._grants)

    def lookup(self, kind: str, key_hash: bytes, subject: str) -> TokenRow | None:
        """The cached answer of a read, or None when the database must be asked."""
        if not self.live:
            return None
        caller = self._callers.get(key_hash)
        key = _subject(kind, subject)
        if caller is None or key not in self._grants:
            return None
        return TokenRow(caller, self._grants[key])

    async def fetch(
        self,
        kind: str,
        key_hash: bytes,
        subject: str,
        query: Callable[[], Awaitable[TokenRow | None]],
    ) -> TokenRow | None:
        """A miss's answer: `query`'s, kept. While the cache is live, a miss for what a query
        under way asks (same kind, key and subject, no notification since it started) waits for
        that query instead. The query runs on even if the reads waiting for it are cancelled."""
        name = (kind, key_hash, subject)
        under_way = self._queries.get(name)
        if under_way is not None and self.live and under_way[0] == self.generation:
            self.metrics.token_cache_misses.labels("joined").inc()
            return await asyncio.shield(under_way[1])
        self.metrics.token_cache_misses.labels("queried").inc()
        generation = self.generation

        async def kept() -> TokenRow | None:
            row = await query()
            if row is not None:
                self.remember(kind, key_hash, subject, row, generation)
            return row

        task = asyncio.ensure_future(kept())
        self._queries[name] = (generation, task)
        task.add_done_callback(lambda done: self._landed(name, done))
        return await asyncio.shield(task)

    def _landed(self, name: tuple[str, bytes, str], task: asyncio.Task[TokenRow | None]) -> None:
        if self._queries.get(name, (0, None))[1] is task:
            del self._queries[name]
        if not task.cancelled():
            task.exception()  # retrieved: every read that waited has been given it

    def remember(
        self, kind: str, key_hash: bytes, subject: str, row: TokenRow, generation: int
    ) -> None:
        """Keep a read's answer, fetched when `generation` was current."""
        if not self.live or generation != self.generation:
            return
        self._callers[key_hash] = row.caller
        key = _subject(kind, subject)
        self._evict(key)
        grant = row.grant
        if grant is not None:
            rows = self._rows.setdefault(grant.grant_id, {})
            shared = rows.get(grant.status)
            if shared == grant:
                grant = shared
            else:
                self.bytes += row_bytes(grant) - (0 if shared is None else row_bytes(shared))
                rows[grant.status] = grant
            self._subjects_of_grant.setdefault(grant.grant_id, {})[key] = None
        self._grants[key] = grant
        self.bytes += SUBJECT_BYTES
        while self.bytes > self.max_bytes and len(self._grants) > 1:
            oldest = self._grants.peek_last_item()
            assert oldest is not None
            self._evict(oldest[0])

    def notified(self, payload: str) -> None:
        self.generation += 1
        match parse_change(payload):
            case KeyChanged(key_hash):
                self._callers.pop(key_hash, None)
            case AdvertiserChanged(advertiser_id):
                self._evict(_subject("advertiser", advertiser_id))
            case GrantChanged(grant_id, open_id):
                for subject in list(self._subjects_of_grant.get(grant_id, ())):
                    self._evict(subject)
                if open_id:
                    self._evict(_subject("tiktok_account", open_id))
            case None:  # not ours to understand: drop everything rather than guess
                self._empty()

    def set_live(self, live: bool) -> None:
        """Turned on once LISTEN is in place, off when the connection is lost; both ways the
        cache starts over, since notifications may have been missed."""
        self.live = live
        self.generation += 1
        self._empty()

    def _evict(self, subject: Subject) -> None:
        if subject not in self._grants:
            return
        grant = self._grants.pop(subject)
        self.bytes -= SUBJECT_BYTES
        if grant is None:
            return
        subjects = self._subjects_of_grant.get(grant.grant_id, {})
        subjects.pop(subject, None)
        if not subjects:
            self._subjects_of_grant.pop(grant.grant_id, None)
            rows = self._rows.pop(grant.grant_id, {})
            self.bytes -= sum(row_bytes(row) for row in rows.values())

    def _empty(self) -> None:
        self._callers.clear()
        self._grants.clear()
        self._subjects_of_grant.clear()
        self._rows.clear()
        self.bytes = 0


class CacheListener:
    """Keeps `cache` live while one connection of its own LISTENs (and answers heartbeats);
    reconnects after a loss, the cache off meanwhile."""

    def __init__(self, cache: TokenCache, url: str, metrics: Metrics) -> None:
        self.cache = cache
        self.url = url
        self.metrics = metrics
        metrics.token_cache_live.set(0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._listen(stop)
            except (*CONNECTION_ERRORS, *DATABASE_ERRORS) as exc:
                log.warning(
                    "token cache off: notification connection lost (%s)",
                    type(exc).__name__,
                    extra={"event": "token_cache_off"},
                )
            finally:
                self._set_live(False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RECONNECT_SECONDS)

    def _set_live(self, live: bool) -> None:
        self.cache.set_live(live)
        self.metrics.token_cache_live.set(int(live))

    async def _listen(self, stop: asyncio.Event) -> None:
        async with listening(
            self.url,
            CHANNEL,
            self.cache.notified,
            lambda: self._set_live(False),
            application_name=APPLICATION_NAME,
            heartbeat_seconds=HEARTBEAT_TIMEOUT_SECONDS,
        ) as heartbeat:
            self._set_live(True)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_SECONDS)
                await heartbeat()
