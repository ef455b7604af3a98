"""Repository queries against the real PostgreSQL: the refresh worker's SKIP LOCKED claim."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.helpers import store_account_grant, store_advertiser_grant
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.service import Service

NOW = datetime.now(UTC)
DUE_BEFORE = NOW + timedelta(minutes=15)
FAILED_BEFORE = NOW - timedelta(seconds=60)


async def claim(repo: Repository) -> uuid.UUID | None:
    """Claim with a deadline: SKIP LOCKED must answer at once, never wait on another lock."""
    grant = await asyncio.wait_for(
        repo.claim_due_account_grant(due_before=DUE_BEFORE, failed_before=FAILED_BEFORE),
        timeout=5,
    )
    return None if grant is None else grant.id


class TestClaimDueAccountGrant:
    async def test_concurrent_claims_skip_locked_grants_in_expiry_order(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        second = await store_account_grant(service, "-000second", NOW + timedelta(minutes=5))
        first = await store_account_grant(service, "-000first", NOW + timedelta(minutes=1))
        async with service.db.session() as one, one.begin():
            assert await claim(Repository(one)) == first
            async with service.db.session() as two, two.begin():
                assert await claim(Repository(two)) == second
                async with service.db.session() as three, three.begin():
                    assert await claim(Repository(three)) is None
        # Both transactions ended: their locks are gone and the soonest is claimed again.
        async with service.db.session() as four, four.begin():
            assert await claim(Repository(four)) == first

    async def test_grants_not_due_or_failed_recently_are_not_claimed(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        await store_account_grant(service, "-000later", NOW + timedelta(hours=2))
        await store_account_grant(
            service,
            "-000failed",
            NOW - timedelta(minutes=1),
            refresh_failed_at=NOW - timedelta(seconds=10),
        )
        await store_advertiser_grant(service, "advertiser-token", ["7100000000000000001"])
        async with service.db.session() as session, session.begin():
            assert await claim(Repository(session)) is None

    async def test_grant_that_failed_long_enough_ago_is_claimed_again(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        retried = await store_account_grant(
            service,
            "-000retried",
            NOW + timedelta(minutes=1),
            refresh_failed_at=NOW - timedelta(minutes=2),
        )
        async with service.db.session() as session, session.begin():
            assert await claim(Repository(session)) == retried
