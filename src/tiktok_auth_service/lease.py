"""A grant's lease: who may call TikTok about a grant right now.

A process takes the lease in a short transaction that holds the grant's row lock: it sets
`lease_until` (nobody else takes the grant before then) and bumps `version`, and remembers the
version it took. TikTok is then called with no row lock or connection held. The outcome is
settled in a second short transaction, only if the row still carries that version: a
revocation, a re-authorization or a lease that ran out and was taken over bumps it, and the
outcome then belongs to the past (`Superseded`). Writing the outcome ends the lease (`release`,
or, after a transient failure, keeping the grant away for its backoff).

The worker takes leases in bulk in SQL (`repository/work.py`, with `claimed`); everything else
takes them here. A process that dies leaves a lease that simply runs out.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Protocol

from tiktok_auth_service.backoff import Backoff
from tiktok_auth_service.models.grants import Grant

# How long a caller is told to wait when no valid token can be served.
RETRY_AFTER_SECONDS = 30

# How often a process looks again while another holds a grant's lease.
LEASE_POLL_SECONDS = 0.1

# How long a grant is left alone after its n-th transient failure in a row.
FAILURE_BACKOFF = Backoff(base=30, cap=600)


class Superseded(Exception):
    """The grant no longer carries the version its lease was taken at (or is gone)."""


class LocksGrants(Protocol):
    async def lock_grant(self, grant_id: uuid.UUID) -> Grant | None: ...


def failure_backoff(failures: int) -> timedelta:
    """How long a grant is left alone after its `failures`-th transient failure in a row."""
    return timedelta(seconds=FAILURE_BACKOFF.delay(failures))


def held(grant: Grant, now: datetime) -> bool:
    """Whether someone holds the grant's lease at `now`."""
    return grant.lease_until is not None and grant.lease_until > now


def take(grant: Grant, now: datetime, seconds: float) -> None:
    """Take the lease of `grant`, whose row the caller has locked and found free: the grant
    then carries the version the outcome is settled under."""
    grant.lease_until = now + timedelta(seconds=seconds)
    grant.version += 1


def claimed(until: datetime) -> dict[str, object]:
    """What `take` writes, as the values of an SQL UPDATE that claims grants in bulk."""
    # `Grant.version` is the column here: each row's version goes up by one.
    return {"lease_until": until, "version": Grant.version + 1}


async def settle(repo: LocksGrants, leased: Grant, version: int | None = None) -> Grant:
    """The leased grant's row, locked, to write the outcome on. Raises Superseded when the
    row is gone or no longer carries the leased `version` (default `leased.version`)."""
    grant = await repo.lock_grant(leased.id)
    if grant is None or grant.version != (leased.version if version is None else version):
        raise Superseded()
    return grant


def release(grant: Grant) -> None:
    """End the lease: the outcome is written (and the version bumped past the leased one)."""
    grant.lease_until = None
    grant.version += 1


def record_transient_failure(
    grant: Grant, now: datetime, code: int | None, message: str
) -> datetime:
    """Note a failure that a later try may not meet (`Grant.record_failure`); returns when the
    grant may be tried again."""
    grant.record_failure(now, code, message)
    return now + failure_backoff(grant.failures)


def keep_for_backoff(grant: Grant, now: datetime) -> None:
    """Count one more failure and keep the lease as the backoff: nobody takes the grant before
    it runs out (orphans, which no other due column brings back)."""
    grant.failures += 1
    grant.lease_until = now + failure_backoff(grant.failures)
