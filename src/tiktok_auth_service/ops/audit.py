"""Who fetched which token, when, and how it ended: every token read, check, revocation and
proxied call is recorded (never the token).

The token read is the hot path, so recording costs an append to an in-memory buffer; a
background task writes the buffer to PostgreSQL with COPY every FLUSH_SECONDS (and on
shutdown). What a crash can lose: the records of the last FLUSH_SECONDS at most. While the
database is unreachable records wait in the buffer, up to MAX_BUFFERED; beyond that the oldest
are dropped, and the number dropped is logged.

Requests without a valid API key are recorded too, but only ANONYMOUS_PER_FLUSH of them per
flush (a second): anyone can send those, with subjects of their choosing, and each row is kept
for the retention period. The rest are counted (`tiktok_auth_audit_anonymous_unrecorded_total`)
and their number is logged once per flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tiktok_auth_service.clock import Clock
from tiktok_auth_service.db import Database, lost_connection
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.repository import TokenAccessRow, delete_access_before, write_access

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
MAX_BUFFERED = 100_000
ANONYMOUS_PER_FLUSH = 10


@dataclass(eq=False)
class AuditLog:
    db: Database
    clock: Clock
    retention: timedelta
    metrics: Metrics
    # The id of the request being served (None outside one), recorded with each entry: the
    # app hands in its request-id middleware's getter.
    request_id: Callable[[], str | None] = lambda: None
    _buffer: deque[TokenAccessRow] = field(default_factory=deque)
    _dropped: int = 0
    _anonymous: int = 0  # taken since the last flush
    _unrecorded: int = 0  # anonymous ones counted instead since the last flush

    def record(
        self,
        action: str,
        subject: str,
        caller: str | None,
        outcome: str,
        *,
        tiktok_request_id: str | None = None,
        duration_ms: float | None = None,
    ) -> None:
        """One `action` (read, check, revoke, proxy) on `subject` by the key named `caller`
        (None: no valid key) ended in `outcome` (`served`, `refreshed`, TikTok's code, or the
        problem code); a proxied call adds TikTok's request id and its duration. Costs an
        append."""
        if caller is None:
            if self._anonymous >= ANONYMOUS_PER_FLUSH:
                self._unrecorded += 1
                self.metrics.audit_anonymous_unrecorded.inc()
                return
            self._anonymous += 1
        if len(self._buffer) >= MAX_BUFFERED:
            self._buffer.popleft()
            self._dropped += 1
        self._buffer.append(
            TokenAccessRow(
                self.clock.now(),
                caller,
                action,
                subject,
                outcome,
                self.request_id(),
                tiktok_request_id,
                duration_ms,
            )
        )

    async def flush(self) -> int:
        """Write what is buffered; returns how many records were written. Records stay
        buffered when the database cannot take them."""
        if self._dropped:
            log.warning("audit buffer full: %d oldest records dropped", self._dropped)
            self._dropped = 0
        if self._unrecorded:
            log.warning(
                "audit: %d more requests without a valid API key were counted, not recorded",
                self._unrecorded,
                extra={"event": "audit_anonymous_unrecorded", "count": self._unrecorded},
            )
            self._unrecorded = 0
        self._anonymous = 0
        batch = list(self._buffer)
        if not batch:
            return 0
        await write_access(self.db, batch)
        for _ in batch:
            self._buffer.popleft()
        return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every FLUSH_SECONDS until `stop`, then once more."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception as exc:
                if not lost_connection(exc):
                    raise
                log.warning("audit records kept for later: the database is unreachable")
            if stop.is_set():
                return

    async def prune(self, now: datetime) -> int:
        """Drop records older than AUDIT_RETENTION_DAYS (the worker calls this each pass)."""
        return await delete_access_before(self.db, now - self.retention)
