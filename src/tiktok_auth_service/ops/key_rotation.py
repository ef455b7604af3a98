"""Online key rotation: re-seal every grant's tokens under the first key of
TOKEN_ENCRYPTION_KEYS, so that the keys after it can be removed.

The table is walked in id order, in batches, each batch one short transaction that locks its
rows with `FOR UPDATE SKIP LOCKED`, opens each row's tokens with the key that sealed them and
seals the same plaintexts again with the current key (`TokenSealer.reseal`). So:

* It is online. The token read takes no lock and reads a row's key id and ciphertext from one
  snapshot, before or after the batch commits, and both open (the old key is still
  configured). A refresh or a revocation holding a row is skipped, never waited for, and
  picked up by a later pass; a refresh waiting for a batch's lock waits one short transaction.
* It is resumable. A batch commits whole or not at all, and rows already on the current key
  are not selected again, so after an interruption running it again carries on.
* It keeps refreshes correct without touching `version`. A lease holder (refresh, liveness
  check, revocation) took its lease at some version and writes back only if the row still
  carries it; on a mismatch a refresh revokes the pair TikTok just issued, because the grant
  was revoked or re-authorized meanwhile. Re-sealing changes no token, no status and no
  lease, so it must not look like such a change: bumping the version would make every
  refresh in flight throw its new tokens away (and with them, since TikTok has already
  retired the old refresh token, the grant). Not bumping is safe because the row is locked
  and read in the batch's own transaction, so rotation re-seals exactly what is stored and
  never writes an older token over a newer one; a lease holder that then writes fresh tokens
  seals them with the current key itself. `updated_at` is left alone as well: nothing a
  caller can see has changed.

Every process must have the new key first before rotation starts (see docs/operations.md,
"Rotating encryption keys"): a process still sealing with the old key would write old-key rows
again, which `--check` shows and a second run re-seals.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tiktok_auth_service.config import ROTATION_BATCH_SIZE
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database
from tiktok_auth_service.errors import TokenUnreadable
from tiktok_auth_service.repository import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyCensus:
    """How many grants each key id seals: every configured key (the current one first, with
    zero if none) and any other key id found in the table."""

    current_key_id: str
    grants: dict[str, int]
    unconfigured: frozenset[str]

    @property
    def pending(self) -> int:
        """Grants sealed with any key but the current one."""
        return sum(n for key_id, n in self.grants.items() if key_id != self.current_key_id)


@dataclass(frozen=True)
class RotationResult:
    resealed: int
    # Rows that do not open with their own key id (not configured, or damaged): left as
    # they are, and reported.
    unreadable: list[uuid.UUID] = field(default_factory=list)
    # Rows still on another key that were locked by someone else on every pass.
    busy: int = 0

    @property
    def complete(self) -> bool:
        return not self.unreadable and not self.busy


@dataclass(eq=False)
class KeyRotation:
    db: Database
    sealer: TokenSealer
    # After a pass that had to skip locked rows, how often to walk the table again and how
    # long to let their holders (short write transactions, mostly) finish first.
    passes: int = 5
    busy_pause: float = 1.0

    async def census(self) -> KeyCensus:
        async with transaction(self.db) as repo:
            found = await repo.grants_per_key_id()
        configured = self.sealer.key_ids
        grants = {key_id: found.get(key_id, 0) for key_id in configured}
        grants.update(found)
        return KeyCensus(
            self.sealer.current_key_id,
            grants,
            frozenset(key_id for key_id in found if not self.sealer.knows(key_id)),
        )

    async def rotate(
        self, batch_size: int = ROTATION_BATCH_SIZE, on_batch: Callable[[int], None] | None = None
    ) -> RotationResult:
        """Re-seal every grant not on the current key; `on_batch` is told the running total
        after each committed batch."""
        resealed = 0
        unreadable: set[uuid.UUID] = set()
        left = 0
        for attempt in range(self.passes):
            if attempt:
                await asyncio.sleep(self.busy_pause)  # let the holders of skipped rows finish
            after: uuid.UUID | None = None
            while True:
                batch = await self._reseal_batch(after, batch_size, unreadable)
                if batch is None:
                    break
                after, count = batch
                resealed += count
                if on_batch is not None:
                    on_batch(resealed)
            # What this pass skipped because someone held it (or what a process still
            # sealing with an older key wrote meanwhile).
            async with transaction(self.db) as repo:
                left = await repo.count_sealed_with_other_keys(
                    self.sealer.current_key_id, sorted(unreadable)
                )
            if not left:
                break
        return RotationResult(resealed, sorted(unreadable), left)

    async def _reseal_batch(
        self, after: uuid.UUID | None, batch_size: int, unreadable: set[uuid.UUID]
    ) -> tuple[uuid.UUID, int] | None:
        """One transaction: lock the next rows after `after`, re-seal them, commit. Returns
        the last id seen and how many were re-sealed, or None at the end of the table."""
        async with transaction(self.db) as repo:
            grants = await repo.lock_grants_to_reseal(self.sealer.current_key_id, after, batch_size)
            if not grants:
                return None
            count = 0
            for grant in grants:
                if grant.id in unreadable:
                    continue
                try:
                    self.sealer.reseal(grant)
                except TokenUnreadable as exc:
                    unreadable.add(grant.id)
                    log.error(
                        "grant %s (key id %r): %s Left as it is.", grant.id, grant.key_id, exc
                    )
                    continue
                count += 1
        return grants[-1].id, count
