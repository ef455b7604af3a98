"""Key rotation against the real PostgreSQL: every grant re-sealed under the new key while reads
and refreshes go on, resumable, and readable once the old key is gone.

The grants are stored by a service configured with the old key only (this module's `settings`,
so `service` and `client` are that deployment); the tests then open the service again with the
new key added in front (the deployment that rotates) and with the new key alone (after the old
one was removed), all on the same database."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from sqlalchemy import select

from tests.fixtures import KEYS, TIKTOK_API, Canaries, FakeClock, bearer, make_settings
from tests.helpers import TikTokAccounts, store_account_grant, store_advertiser_grant
from tests.openapi_check import OpenApiCheck
from tests.test_cli import run_cli
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.models.grants import Grant
from tiktok_auth_service.ops.key_rotation import KeyRotation
from tiktok_auth_service.service import Service

OLD_ONLY = "k1:" + base64.b64encode(b"\x01" * 32).decode()
BOTH = KEYS  # k2 (new, seals) first, then k1
NEW_ONLY = "k2:" + base64.b64encode(b"\x02" * 32).decode()


@pytest.fixture
def settings(migrated: str) -> Settings:
    """The deployment before rotation: only the old key."""
    return make_settings(migrated, token_encryption_keys=OLD_ONLY)


@asynccontextmanager
async def deployment(
    migrated: str, clock: FakeClock, keys: str, **overrides: Any
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The service on the same database with other TOKEN_ENCRYPTION_KEYS, and its client
    (every response checked against the OpenAPI document, as the `client` fixture's)."""
    app = create_app(make_settings(migrated, token_encryption_keys=keys, **overrides), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="https://broker.example",
            event_hooks={"response": [OpenApiCheck(app.openapi()).on_response]},
        ) as http:
            yield app_service(app), http


def advertiser(n: int) -> str:
    return f"71000000000{n:08d}"


async def store_advertisers(service: Service, count: int) -> dict[str, str]:
    """`count` advertiser grants (one advertiser each); advertiser id -> its token."""
    tokens = {advertiser(n): f"adv-token-{n:05d}-{uuid.uuid4().hex}" for n in range(count)}
    for advertiser_id, token in tokens.items():
        await store_advertiser_grant(service, token, [advertiser_id])
    return tokens


async def plaintexts(service: Service) -> dict[uuid.UUID, tuple[str, str | None]]:
    """Every grant's tokens, opened by `service`'s sealer (raises if one does not open)."""
    async with service.db.session() as session:
        grants = (await session.execute(select(Grant))).scalars()
        opened = {}
        for grant in grants:
            access = service.sealer.open_access_token(
                grant.id, grant.key_id, grant.access_token_enc
            )
            refresh = (
                service.sealer.open_refresh_token(
                    grant.id, grant.key_id, grant.refresh_token_enc
                ).get_secret_value()
                if grant.refresh_token_enc is not None
                else None
            )
            opened[grant.id] = (access, refresh)
    return opened


async def rows(pg: asyncpg.Connection) -> dict[uuid.UUID, tuple[str, int, Any]]:
    """id -> (key id, version, updated_at) of every grant."""
    found = await pg.fetch("SELECT id, key_id, version, updated_at FROM oauth_grant")
    return {r["id"]: (r["key_id"], r["version"], r["updated_at"]) for r in found}


async def census(service: Service) -> dict[str, int]:
    return (await service.key_rotation.census()).grants


class TestRotation:
    async def test_every_token_is_resealed_while_reads_go_on_and_opens_without_the_old_key(
        self,
        service: Service,
        migrated: str,
        clock: FakeClock,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        tokens = await store_advertisers(service, 300)
        for n in range(5):
            await store_account_grant(service, f"-000acct{n}", clock.now() + timedelta(hours=20))
        before = await plaintexts(service)
        stored = await rows(pg)
        assert {key_id for key_id, _, _ in stored.values()} == {"k1"}

        async with deployment(migrated, clock, BOTH) as (rotating, http):
            assert await census(rotating) == {"k2": 0, "k1": 305}
            totals: list[int] = []

            async def read_all() -> list[httpx.Response]:
                return [
                    await http.get(f"/tokens/{advertiser_id}", headers=bearer(api_key))
                    for advertiser_id in tokens
                ]

            result, responses = await asyncio.gather(
                rotating.key_rotation.rotate(batch_size=64, on_batch=totals.append), read_all()
            )
            assert result.resealed == 305 and result.complete
            assert totals == [64, 128, 192, 256, 305]
            assert [r.status_code for r in responses] == [200] * 300
            assert [r.json()["access_token"] for r in responses] == list(tokens.values())
            assert await census(rotating) == {"k2": 305, "k1": 0}
            again = await rotating.key_rotation.rotate()
            assert again.resealed == 0 and again.complete

        # Nothing a refresh or a caller relies on moved: same versions, same updated_at.
        after = await rows(pg)
        assert {grant_id: row[1:] for grant_id, row in after.items()} == {
            grant_id: row[1:] for grant_id, row in stored.items()
        }
        assert {key_id for key_id, _, _ in after.values()} == {"k2"}

        async with deployment(migrated, clock, NEW_ONLY) as (upgraded, http):
            assert await plaintexts(upgraded) == before
            for advertiser_id, token in tokens.items():
                response = await http.get(f"/tokens/{advertiser_id}", headers=bearer(api_key))
                assert response.status_code == 200, response.text
                assert response.json()["access_token"] == token
            for n in range(5):
                response = await http.get(f"/tokens/accounts/-000acct{n}", headers=bearer(api_key))
                assert response.status_code == 200, response.text

    async def test_a_refresh_racing_the_rotation_keeps_its_new_tokens(
        self,
        service: Service,
        migrated: str,
        clock: FakeClock,
        api_key: str,
        canaries: Canaries,
        pg: asyncpg.Connection,
    ) -> None:
        """The refresh takes its lease, rotation re-seals the leased row while TikTok answers,
        then the refresh writes back: the version still matches, so the new pair is kept (a
        version bump would have made it revoke them) and sealed with the new key."""
        open_id = "-000racing"
        # Stored now (store_account_grant's own clock) for ten minutes; read eight minutes
        # later, inside the refresh leeway.
        grant_id = await store_account_grant(
            service, open_id, datetime.now(UTC) + timedelta(minutes=10)
        )
        clock.current = datetime.now(UTC) + timedelta(minutes=8)
        await store_advertisers(service, 120)
        in_tiktok, release = asyncio.Event(), asyncio.Event()

        with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
            tiktok = TikTokAccounts(mock, canaries, clock)

            async def slow_refresh(request: httpx.Request) -> httpx.Response:
                in_tiktok.set()
                await release.wait()  # TikTok is still answering
                return tiktok.issue(request)

            tiktok.refresh.side_effect = slow_refresh
            async with deployment(migrated, clock, BOTH, refresh_wait_seconds=60) as (
                rotating,
                http,
            ):
                read = asyncio.create_task(
                    http.get(f"/tokens/accounts/{open_id}", headers=bearer(api_key))
                )
                await asyncio.wait_for(in_tiktok.wait(), timeout=30)
                leased = await pg.fetchrow(
                    "SELECT version, key_id, lease_until FROM oauth_grant WHERE id = $1", grant_id
                )
                assert leased["key_id"] == "k1" and leased["lease_until"] > clock.now()

                result = await asyncio.wait_for(rotating.key_rotation.rotate(50), timeout=30)
                assert result.resealed == 121 and result.complete
                during = await pg.fetchrow(
                    "SELECT version, key_id FROM oauth_grant WHERE id = $1", grant_id
                )
                assert during["key_id"] == "k2"

                release.set()
                response = await read
                assert response.status_code == 200, response.text
                assert response.json()["access_token"] == tiktok.access_tokens[-1]
                assert tiktok.refresh.call_count == 1
                assert not tiktok.revoke.called  # the new pair was not thrown away
                assert during["version"] == leased["version"]  # why: rotation left it alone

        async with deployment(migrated, clock, NEW_ONLY) as (upgraded, http):
            opened = await plaintexts(upgraded)
            assert opened[grant_id] == (tiktok.access_tokens[-1], tiktok.refresh_tokens[-1])
            response = await http.get(f"/tokens/accounts/{open_id}", headers=bearer(api_key))
            assert response.json()["access_token"] == tiktok.access_tokens[-1]
            assert await census(upgraded) == {"k2": 121}

    async def test_a_locked_grant_is_skipped_not_waited_for_and_a_later_run_finishes_it(
        self, service: Service, migrated: str, clock: FakeClock, pg: asyncpg.Connection
    ) -> None:
        await store_advertisers(service, 10)
        held = await pg.fetchval("SELECT id FROM oauth_grant ORDER BY id LIMIT 1 OFFSET 4")
        async with deployment(migrated, clock, BOTH) as (rotating, _):
            rotation = dataclasses.replace(rotating.key_rotation, passes=2, busy_pause=0)
            async with pg.transaction():
                # What a refresh writing its new pair (or a revocation at TikTok) holds.
                await pg.execute("SELECT 1 FROM oauth_grant WHERE id = $1 FOR UPDATE", held)
                # A deadline, not a timing: SKIP LOCKED must answer at once, never wait.
                result = await asyncio.wait_for(rotation.rotate(batch_size=3), timeout=30)
                assert (result.resealed, result.busy, result.complete) == (9, 1, False)
            assert await pg.fetchval("SELECT key_id FROM oauth_grant WHERE id = $1", held) == "k1"
            finished = await rotation.rotate(batch_size=3)
            assert (finished.resealed, finished.complete) == (1, True)
            assert await census(rotating) == {"k2": 10, "k1": 0}

    async def test_an_interrupted_rotation_resumes_where_it_stopped(
        self, service: Service, migrated: str, clock: FakeClock, pg: asyncpg.Connection
    ) -> None:
        tokens = await store_advertisers(service, 120)
        before = await plaintexts(service)
        async with deployment(migrated, clock, BOTH) as (rotating, _):
            # Killed inside a batch: that batch's transaction never commits.
            sealer = _CrashesAfter(rotating.settings.encryption_keys, survives=30)
            crashing = KeyRotation(rotating.db, sealer)
            with pytest.raises(_Crash):
                await crashing.rotate(batch_size=50)
            assert await census(rotating) == {"k2": 0, "k1": 120}

            # Killed between batches: what was committed stays done.
            def stop_after_first(total: int) -> None:
                raise _Crash(total)

            with pytest.raises(_Crash):
                await rotating.key_rotation.rotate(batch_size=50, on_batch=stop_after_first)
            assert await census(rotating) == {"k2": 50, "k1": 70}
            assert await plaintexts(rotating) == before  # half and half, all readable

            resumed = await rotating.key_rotation.rotate(batch_size=50)
            assert resumed.resealed == 70 and resumed.complete
        async with deployment(migrated, clock, NEW_ONLY) as (upgraded, _):
            assert await plaintexts(upgraded) == before
            assert len(before) == len(tokens)

    async def test_grants_under_a_key_that_is_not_configured_are_reported_and_left_alone(
        self, service: Service, migrated: str, clock: FakeClock, pg: asyncpg.Connection
    ) -> None:
        await store_advertisers(service, 3)
        # The old key was removed too early: its grants cannot be opened, so not re-sealed.
        async with deployment(migrated, clock, NEW_ONLY) as (too_early, _):
            found = await too_early.key_rotation.census()
            assert found.grants == {"k2": 0, "k1": 3} and found.unconfigured == {"k1"}
            result = await too_early.key_rotation.rotate()
            assert (result.resealed, len(result.unreadable), result.complete) == (0, 3, False)
        assert {key_id for key_id, _, _ in (await rows(pg)).values()} == {"k1"}


class _Crash(Exception):
    pass


class _CrashesAfter(TokenSealer):
    """A sealer whose process dies after re-sealing `survives` grants."""

    def __init__(self, keys: dict[str, bytes], survives: int) -> None:
        super().__init__(keys)
        self.survives = survives

    def reseal(self, grant: Grant) -> bool:
        if self.survives == 0:
            raise _Crash()
        self.survives -= 1
        return super().reseal(grant)


@pytest.mark.slow  # command-line subprocesses, one after another
async def test_rotate_keys_command_checks_rotates_and_checks_again(
    service: Service, migrated: str, pg: asyncpg.Connection
) -> None:
    await store_advertisers(service, 5)
    too_early = run_cli(migrated, "rotate-keys", "--check", keys=NEW_ONLY)
    assert too_early.returncode == 1, too_early.stderr
    assert "k1: 5 grants (NOT CONFIGURED: these tokens cannot be read)" in too_early.stdout

    before = run_cli(migrated, "rotate-keys", "--check", keys=BOTH)
    assert before.returncode == 1, before.stderr
    assert before.stdout.splitlines()[:2] == [
        "k2: 0 grants (current: seals new tokens)",
        "k1: 5 grants",
    ]
    assert await pg.fetchval("SELECT count(*) FROM oauth_grant WHERE key_id = 'k2'") == 0

    rotated = run_cli(migrated, "rotate-keys", "--batch-size", "2", keys=BOTH)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-sealed 4 grants so far" in rotated.stderr
    assert rotated.stdout.splitlines() == [
        "re-sealed 5 grants with key k2",
        "k2: 5 grants (current: seals new tokens)",
        "k1: 0 grants",
        "every grant is sealed with k2: the other keys can go",
    ]

    after = run_cli(migrated, "rotate-keys", "--check", keys=NEW_ONLY)
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines()[0] == "k2: 5 grants (current: seals new tokens)"
