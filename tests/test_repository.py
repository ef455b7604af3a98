"""Repository queries against the real PostgreSQL: the worker's SKIP LOCKED claims and leases,
and advertisers moving between grants (what each one left, racing inserts included)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.helpers import store_account_grant, store_advertiser_grant, until
from tiktok_auth_service.repository import Claim, Repository
from tiktok_auth_service.service import Service

NOW = datetime.now(UTC)
LEASE = timedelta(seconds=90)


async def claim(
    repo: Repository, kind: Claim = Claim.REFRESH, at: datetime = NOW, limit: int = 1
) -> list[uuid.UUID]:
    """Claim with a deadline: SKIP LOCKED must answer at once, never wait on another lock."""
    grants = await asyncio.wait_for(repo.claim(kind, at, at + LEASE, limit), timeout=5)
    return [grant.id for grant in grants]


class TestClaim:
    async def test_concurrent_claims_skip_locked_grants_in_due_order(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        second = await store_account_grant(
            service, "-000second", NOW + timedelta(hours=1), refresh_due_at=NOW - timedelta(1)
        )
        first = await store_account_grant(
            service, "-000first", NOW + timedelta(hours=1), refresh_due_at=NOW - timedelta(2)
        )
        async with service.db.session() as one, one.begin():
            assert await claim(Repository(one)) == [first]
            async with service.db.session() as two, two.begin():
                assert await claim(Repository(two)) == [second]
                async with service.db.session() as three, three.begin():
                    assert await claim(Repository(three)) == []
        # The transactions ended, but their leases keep both grants taken until they run out.
        async with service.db.session() as four, four.begin():
            assert await claim(Repository(four)) == []
        async with service.db.session() as five, five.begin():
            later = NOW + LEASE + timedelta(seconds=1)
            assert await claim(Repository(five), at=later, limit=5) == [first, second]

    async def test_a_claim_bumps_the_version_the_claimer_writes_back_with(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        grant_id = await store_account_grant(
            service, "-000v", NOW + timedelta(hours=1), refresh_due_at=NOW
        )
        before = await pg.fetchval("SELECT version FROM oauth_grant WHERE id = $1", grant_id)
        async with service.db.session() as session, session.begin():
            [grant] = await Repository(session).claim(Claim.REFRESH, NOW, NOW + LEASE, 1)
        row = await pg.fetchrow(
            "SELECT version, lease_until FROM oauth_grant WHERE id = $1", grant_id
        )
        assert row["version"] == grant.version == before + 1
        assert row["lease_until"] == NOW + LEASE

    async def test_grants_not_due_are_not_claimed(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        await store_account_grant(
            service, "-000later", NOW + timedelta(hours=2), refresh_due_at=NOW + timedelta(1)
        )
        await store_advertiser_grant(service, "advertiser-token", ["7100000000000000001"])
        async with service.db.session() as session, session.begin():
            repo = Repository(session)
            assert await claim(repo, Claim.REFRESH, limit=5) == []
            assert await claim(repo, Claim.CHECK, limit=5) == []
            assert await claim(repo, Claim.REVOKE, limit=5) == []

    async def test_each_kind_claims_its_own_grants(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        account = await store_account_grant(
            service, "-000due", NOW + timedelta(hours=1), refresh_due_at=NOW
        )
        advertiser = await store_advertiser_grant(
            service, "advertiser-token", ["7100000000000000001"], next_check_at=NOW
        )
        orphan = await store_advertiser_grant(service, "orphan-token", ["7100000000000000002"])
        await pg.execute("UPDATE oauth_grant SET orphaned_at = $1 WHERE id = $2", NOW, orphan)
        async with service.db.session() as session, session.begin():
            repo = Repository(session)
            assert await claim(repo, Claim.REFRESH, limit=5) == [account]
            assert await claim(repo, Claim.CHECK, limit=5) == [advertiser]
            assert await claim(repo, Claim.REVOKE, limit=5) == [orphan]


class TestAssignAdvertisers:
    async def test_it_answers_the_grant_each_advertiser_left(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        A, B = "7100000000000000001", "7100000000000000002"
        first = await store_advertiser_grant(service, "t1", [A])
        second = await store_advertiser_grant(service, "t2", [])
        async with service.db.session() as session, session.begin():
            left = await Repository(session).assign_advertisers(second, [B, A], NOW)
        assert left == {A: first}
        rows = await pg.fetch("SELECT grant_id, status FROM advertiser ORDER BY advertiser_id")
        assert [(r["grant_id"], r["status"]) for r in rows] == [(second, "active")] * 2

    async def test_a_racing_first_insert_counts_as_the_grant_it_left(
        self, service: Service, pg: asyncpg.Connection
    ) -> None:
        A = "7100000000000000001"
        first = await store_advertiser_grant(service, "t1", [])
        second = await store_advertiser_grant(service, "t2", [])
        async with service.db.session() as one:
            await one.begin()
            # A did not exist: the first authorization inserts it, and has not committed yet.
            assert await Repository(one).assign_advertisers(first, [A], NOW) == {}

            async def racing() -> dict[str, uuid.UUID]:
                async with service.db.session() as two, two.begin():
                    return await Repository(two).assign_advertisers(second, [A], NOW)

            task = asyncio.create_task(racing())

            async def waiting() -> bool:
                locked = await pg.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO advertiser%'"
                )
                return bool(locked)

            await until(waiting, "the racing insert waits for the first", within=10)
            await one.commit()
        assert await asyncio.wait_for(task, timeout=10) == {A: first}
        assert await pg.fetchval("SELECT grant_id FROM advertiser") == second
