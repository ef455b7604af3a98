"""The audit: every token read, check and revocation is recorded (who, what, how it ended,
never the token), printed by `tiktok-auth-service audit`, and pruned after its retention."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import TIKTOK_API, Canaries, FakeClock, bearer
from tests.helpers import envelope, new_token, store_advertiser_grant
from tests.test_cli import run_cli
from tiktok_auth_service.ops import audit
from tiktok_auth_service.ops.audit import ANONYMOUS_PER_FLUSH
from tiktok_auth_service.service import Service

A, B, C = "7100000000000000001", "7100000000000000002", "7100000000000000003"


async def three_reads_by_two_keys(
    client: httpx.AsyncClient, service: Service, canaries: Canaries, api_key: str
) -> str:
    token = new_token()
    canaries.add(token)
    await store_advertiser_grant(service, token, [A])
    shop = (await service.api_keys.create("shop-b", [B])).key.get_secret_value()
    canaries.add(shop)
    assert (await client.get(f"/tokens/{A}", headers=bearer(api_key))).status_code == 200
    assert (await client.get(f"/tokens/{B}", headers=bearer(api_key))).status_code == 404
    assert (await client.get(f"/tokens/{A}", headers=bearer(shop))).status_code == 403
    return token


class TestRecords:
    async def test_each_read_is_recorded_with_its_caller_and_outcome(
        self,
        client: httpx.AsyncClient,
        service: Service,
        canaries: Canaries,
        api_key: str,
        pg: asyncpg.Connection,
        clock: FakeClock,
    ) -> None:
        token = await three_reads_by_two_keys(client, service, canaries, api_key)
        unauthenticated = await client.get(f"/tokens/{A}", headers={"X-Request-ID": "trace 42"})
        assert unauthenticated.status_code == 401
        assert await service.audit.flush() == 4
        rows = await pg.fetch(
            "SELECT at, caller, action, subject, outcome FROM token_access ORDER BY id"
        )
        assert [tuple(row)[1:] for row in rows] == [
            ("reporting", "read", A, "served"),
            ("reporting", "read", B, "not_connected"),
            ("shop-b", "read", A, "forbidden"),
            (None, "read", A, "unauthenticated"),
        ]
        assert {row["at"] for row in rows} == {clock.now()}
        ids = await pg.fetch("SELECT request_id FROM token_access ORDER BY id")
        assert ids[-1]["request_id"] == "trace 42"  # the caller's X-Request-ID
        assert all(row["request_id"] for row in ids)
        proxied_only = await pg.fetchval(
            "SELECT count(*) FROM token_access"
            " WHERE tiktok_request_id IS NOT NULL OR duration_ms IS NOT NULL"
        )
        assert proxied_only == 0  # a token read has neither; proxied calls have them
        dumped = await pg.fetchval("SELECT string_agg(t::text, ' ') FROM token_access AS t")
        assert token not in dumped and api_key not in dumped

    async def test_checks_and_revocations_are_recorded(
        self,
        client: httpx.AsyncClient,
        service: Service,
        canaries: Canaries,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [A])
        with respx.mock(base_url=TIKTOK_API) as tiktok:
            tiktok.get("/oauth2/advertiser/get/").respond(
                json=envelope({"list": [{"advertiser_id": A, "advertiser_name": "A"}]})
            )
            tiktok.post("/oauth2/revoke_token/").respond(json=envelope())
            assert (await client.post(f"/tokens/{A}/check", headers=bearer(api_key))).is_success
            assert (await client.delete(f"/tokens/{A}", headers=bearer(api_key))).is_success
            assert (await client.delete(f"/tokens/{A}", headers=bearer(api_key))).is_success
        await service.audit.flush()
        rows = await pg.fetch("SELECT action, outcome FROM token_access ORDER BY id")
        assert [tuple(row) for row in rows] == [
            ("check", "served"),
            ("revoke", "revoked"),
            ("revoke", "already_revoked"),
        ]

    async def test_old_records_are_pruned(
        self, service: Service, pg: asyncpg.Connection, clock: FakeClock
    ) -> None:
        service.audit.record("read", A, "old", "served")
        clock.advance(days=91)
        service.audit.record("read", A, "new", "served")
        await service.audit.flush()
        assert await service.audit.prune(clock.now()) == 1
        assert await pg.fetchval("SELECT array_agg(caller) FROM token_access") == ["new"]


@pytest.mark.slow  # command-line subprocesses, one after another
async def test_the_audit_command_prints_newest_first_and_filters(
    client: httpx.AsyncClient,
    service: Service,
    canaries: Canaries,
    api_key: str,
    migrated: str,
    clock: FakeClock,
) -> None:
    await three_reads_by_two_keys(client, service, canaries, api_key)
    service.audit.record(
        "proxy GET campaign/get/", C, "gateway", "0", tiktok_request_id="tt-1", duration_ms=12.25
    )
    await service.audit.flush()
    printed = run_cli(migrated, "audit")
    assert printed.returncode == 0, printed.stderr
    lines = [line.split("\t") for line in printed.stdout.splitlines()]
    assert lines[0][1:5] == ["gateway", "proxy GET campaign/get/", C, "0"]
    assert lines[0][6:] == ["tt-1", "12.2ms"]
    assert lines[1][6:] == ["-", "-"]  # a token read: no TikTok request id, no duration
    assert [line[1:5] for line in lines[1:]] == [
        ["shop-b", "read", A, "forbidden"],
        ["reporting", "read", B, "not_connected"],
        ["reporting", "read", A, "served"],
    ]
    by_key = run_cli(migrated, "audit", "--key", "shop-b", "--json")
    [record] = [json.loads(line) for line in by_key.stdout.splitlines()]
    assert (record["caller"], record["subject"], record["outcome"]) == ("shop-b", A, "forbidden")
    [proxied] = [
        json.loads(line)
        for line in run_cli(migrated, "audit", "--key", "gateway", "--json").stdout.splitlines()
    ]
    assert (proxied["tiktok_request_id"], proxied["duration_ms"]) == ("tt-1", 12.25)
    later = (clock.now() + timedelta(seconds=1)).isoformat()
    assert run_cli(migrated, "audit", "--since", later).stdout == ""
    assert len(run_cli(migrated, "audit", "--subject", A).stdout.splitlines()) == 2
    bad = run_cli(migrated, "audit", "--since", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr


class TestAnonymousTraffic:
    @pytest.fixture(autouse=True)
    def flushed_by_the_test_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The app's own flusher waits far longer than a test: each flush here is the test's
        (200 requests on a loaded machine may take longer than FLUSH_SECONDS)."""
        monkeypatch.setattr(audit, "FLUSH_SECONDS", 3600.0)

    async def test_requests_without_a_valid_key_write_a_bounded_number_of_rows(
        self,
        client: httpx.AsyncClient,
        service: Service,
        api_key: str,
        pg: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The background flush may end a window during the loop on a slow machine: each flush
        # (the loop's or this test's) ends one, and each window takes at most its few.
        flushes = 0
        flush = service.audit.flush

        async def counted_flush() -> int:
            nonlocal flushes
            flushes += 1
            return await flush()

        monkeypatch.setattr(service.audit, "flush", counted_flush)
        for n in range(200):
            subject = str(7100000000000000000 + n)  # attacker-chosen, all different
            answer = await client.get(f"/tokens/{subject}", headers=bearer(f"tas_random{n}"))
            assert answer.status_code == 401
        for _ in range(3):  # what authenticated callers do is still recorded, every time
            assert (await client.get(f"/tokens/{A}", headers=bearer(api_key))).status_code == 404
        await service.audit.flush()
        anonymous = await pg.fetchval("SELECT count(*) FROM token_access WHERE caller IS NULL")
        assert ANONYMOUS_PER_FLUSH <= anonymous <= ANONYMOUS_PER_FLUSH * flushes < 200
        assert await pg.fetchval("SELECT count(*) FROM token_access WHERE caller IS NOT NULL") == 3
        metrics = (await service.render_metrics()).decode()
        unrecorded = f"tiktok_auth_audit_anonymous_unrecorded_total {200 - anonymous}.0"
        assert unrecorded in metrics

    async def test_each_flush_takes_a_few_more(
        self, client: httpx.AsyncClient, service: Service, pg: asyncpg.Connection
    ) -> None:
        for _ in range(2):
            for _ in range(ANONYMOUS_PER_FLUSH + 5):
                assert (await client.get(f"/tokens/{A}")).status_code == 401
            await service.audit.flush()
        anonymous = await pg.fetchval("SELECT count(*) FROM token_access WHERE caller IS NULL")
        assert anonymous == 2 * ANONYMOUS_PER_FLUSH
