"""The token-read cache: what a token read asks the database, kept in each server process and
dropped as soon as PostgreSQL says it changed.

Triggers (migration 0004) send a NOTIFY on channel `token_cache` for every changed row of the
three tables a read joins, naming what changed:

    c:<key hash, hex>           an API key (created, revoked)
    a:<advertiser id>           which grant serves an advertiser, or its status
    g:<grant id>:<open id>      a grant: its tokens, status, checks (open id empty if none)

Each process LISTENs on one connection of its own and evicts what a notification names, so a
revoked, re-authorized or refreshed grant, an advertiser a liveness check removed and a revoked
API key stop being served on every replica once PostgreSQL delivers the notification
(milliseconds). The guarantees:

- Fail closed: the cache is used only while the listening connection is up and has answered a
  heartbeat within HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS; otherwise it is emptied and
  every read goes to the database. So even a connection that dies silently leaves at most
  that long (2 s) of stale answers.
- No lost eviction: a read keeps what it fetched only if no notification arrived since it
  started (`generation`), since what it fetched may predate the change that notification names.
- Only sealed tokens are kept, as stored; the plaintext is made per answer and dropped with it.
- Bounded: at most MAX_SUBJECTS subjects (then it starts over empty); unknown API keys are
  never kept, so random keys cannot fill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from tiktok_auth_service.db import CONNECTION_ERRORS, DATABASE_ERRORS, listening
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.repository.reads import CallerRow, GrantRow, TokenRow

log = logging.getLogger(__name__)

CHANNEL = "token_cache"
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TIMEOUT_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
MAX_SUBJECTS = 100_000
# How the listening connection shows in pg_stat_activity.
APPLICATION_NAME = "tiktok-auth-service token cache"

Subject = tuple[str, str]  # ("advertiser", advertiser id) or ("account", open id)


class TokenCache:
    """Callers by key hash, serving grants by subject (None: not connected). Only the event
    loop's thread touches it, so no lock: a lookup never waits."""

    def __init__(self, max_subjects: int = MAX_SUBJECTS) -> None:
        self.max_subjects = max_subjects
        self.live = False
        # Bumped by every notification and every change of `live`.
        self.generation = 0
        self._callers: dict[bytes, CallerRow] = {}
        self._grants: dict[Subject, GrantRow | None] = {}
        self._subjects_of_grant: dict[uuid.UUID, set[Subject]] = {}

    def lookup(self, kind: str, key_hash: bytes, subject: str) -> TokenRow | None:
        """The cached answer of a read, or None when the database must be asked."""
        if not self.live:
            return None
        caller = self._callers.get(key_hash)
        if caller is None or (kind, subject) not in self._grants:
            return None
        return TokenRow(caller, self._grants[(kind, subject)])

    def remember(
        self, kind: str, key_hash: bytes, subject: str, row: TokenRow, generation: int
    ) -> None:
        """Keep a read's answer, fetched when `generation` was current."""
        if not self.live or generation != self.generation:
            return
        if len(self._grants) >= self.max_subjects:
            self._empty()
        self._callers[key_hash] = row.caller
        self._grants[(kind, subject)] = row.grant
        if row.grant is not None:
            self._subjects_of_grant.setdefault(row.grant.grant_id, set()).add((kind, subject))

    def notified(self, payload: str) -> None:
        self.generation += 1
        what, _, name = payload.partition(":")
        if what == "c":
            self._callers.pop(bytes.fromhex(name), None)
        elif what == "a":
            self._evict(("advertiser", name))
        elif what == "g":
            grant_id, _, open_id = name.partition(":")
            for subject in self._subjects_of_grant.pop(uuid.UUID(grant_id), set()):
                self._grants.pop(subject, None)
            if open_id:
                self._evict(("account", open_id))
        else:  # not ours to understand: drop everything rather than guess
            self._empty()

    def set_live(self, live: bool) -> None:
        """Turned on once LISTEN is in place, off when the connection is lost; both ways the
        cache starts over, since notifications may have been missed."""
        self.live = live
        self.generation += 1
        self._empty()

    def _evict(self, subject: Subject) -> None:
        grant = self._grants.pop(subject, None)
        if grant is not None:
            self._subjects_of_grant.get(grant.grant_id, set()).discard(subject)

    def _empty(self) -> None:
        self._callers.clear()
        self._grants.clear()
        self._subjects_of_grant.clear()


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
