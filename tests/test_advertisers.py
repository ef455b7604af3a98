"""The advertiser tables at agency size: writes are set-based and touch only what changed, the
grants covering an advertiser are found through `grant_coverage` (kept in step with each grant's
advertiser list by a trigger), and only changes a token read can see are announced to the
token caches."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx
import sqlalchemy as sa

from tests.fixtures import TIKTOK_API, Canaries
from tests.helpers import (
    envelope,
    new_token,
    start_authorization,
    store_account_grant,
    store_advertiser_grant,
)
from tiktok_auth_service.models.grants import AdvertiserStatus, GrantStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)


def advertiser(n: int) -> str:
    return f"72{n:017d}"


@contextlib.contextmanager
def statements(service: Service) -> Iterator[list[str]]:
    """The SQL statements the service's engine sends meanwhile."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(statement)

    engine = service.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


async def versions(pg: asyncpg.Connection, table: str) -> dict[tuple[str, ...], str]:
    """Each row's key and the transaction that last wrote it (xmin): a row an UPDATE rewrote,
    even to the same values, shows a new one."""
    key = "advertiser_id" if table == "advertiser" else "advertiser_id, grant_id::text"
    rows = await pg.fetch(f"SELECT {key}, xmin::text AS xmin FROM {table}")  # noqa: S608
    return {tuple(row.values())[:-1]: row["xmin"] for row in rows}


async def set_names(service: Service, grant_id: uuid.UUID, names: dict[str, str]) -> None:
    async with service.db.session() as session, session.begin():
        await Repository(session).set_advertiser_names(grant_id, names, datetime.now(UTC))


async def test_names_are_written_in_one_statement_and_only_where_they_changed(
    service: Service, pg: asyncpg.Connection
) -> None:
    ids = [advertiser(n) for n in range(300)]
    grant_id = await store_advertiser_grant(service, new_token(), ids)
    elsewhere = advertiser(999)
    await store_advertiser_grant(service, new_token(), [elsewhere])
    names = {a: f"Client {n}" for n, a in enumerate(ids)}
    await set_names(service, grant_id, names)
    before = await versions(pg, "advertiser")
    names[ids[7]] = "Client 7, renamed"
    with statements(service) as sent:
        await set_names(service, grant_id, {**names, elsewhere: "not this grant's"})
    assert len([s for s in sent if s.lstrip().startswith("UPDATE")]) == 1
    stored = dict(await pg.fetch("SELECT advertiser_id, name FROM advertiser"))
    assert stored == {**names, elsewhere: None}
    after = await versions(pg, "advertiser")
    assert {key[0] for key in after if after[key] != before[key]} == {ids[7]}


async def test_advertisers_are_assigned_in_one_statement_whatever_their_number(
    service: Service, pg: asyncpg.Connection
) -> None:
    # 7,000 rows of five values each would pass PostgreSQL's 32,767 bind parameters.
    ids = [advertiser(n) for n in range(7_000)]
    older = await store_advertiser_grant(service, new_token(), ids[:10])
    with statements(service) as sent:
        newer = await store_advertiser_grant(service, new_token(), ids)
    assert len([s for s in sent if s.lstrip().startswith("INSERT INTO advertiser")]) == 1
    served = await pg.fetch("SELECT grant_id, status, count(*) FROM advertiser GROUP BY 1, 2")
    assert [tuple(row.values()) for row in served] == [(newer, "active", 7_000)]
    assert older != newer


async def test_coverage_follows_each_grants_advertiser_list(
    service: Service, pg: asyncpg.Connection
) -> None:
    first = await store_advertiser_grant(service, new_token(), [advertiser(n) for n in range(100)])
    second = await store_advertiser_grant(
        service, new_token(), [advertiser(n) for n in range(50, 150)]
    )

    async def coverage() -> set[tuple[str, uuid.UUID]]:
        rows = await pg.fetch("SELECT advertiser_id, grant_id FROM grant_coverage")
        return {(row["advertiser_id"], row["grant_id"]) for row in rows}

    async def lists() -> set[tuple[str, uuid.UUID]]:
        rows = await pg.fetch("SELECT a, id FROM oauth_grant, unnest(advertiser_ids) AS a")
        return {(row["a"], row["id"]) for row in rows}

    assert await coverage() == await lists()
    assert len(await coverage()) == 200
    before = await versions(pg, "grant_coverage")
    # A sync that lost ten advertisers and gained ten, written by whoever writes the column.
    listed = [advertiser(n) for n in [*range(10, 100), *range(200, 210)]]
    await pg.execute("UPDATE oauth_grant SET advertiser_ids = $2 WHERE id = $1", first, listed)
    await pg.execute("UPDATE oauth_grant SET status = 'revoked' WHERE id = $1", second)
    assert await coverage() == await lists()
    after = await versions(pg, "grant_coverage")
    kept = set(before) & set(after)
    assert len(kept) == 190
    assert all(before[key] == after[key] for key in kept)  # rewrote only what changed
    await pg.execute("DELETE FROM oauth_grant WHERE id = $1", first)
    assert await coverage() == await lists()


async def test_the_grants_covering_advertisers_are_exactly_the_live_overlapping_ones(
    service: Service, pg: asyncpg.Connection
) -> None:
    """Grants over a pool of advertisers, re-authorized over each other (so many cover
    advertisers a newer grant serves), some dead, orphaned or re-listed by a sync; each
    query's answer is held against the lists themselves."""
    rng = random.Random(21)
    pool = [advertiser(n) for n in range(2_000)]
    grants: dict[uuid.UUID, list[str]] = {}
    for _ in range(120):
        ids = sorted(rng.sample(pool, rng.randint(1, 120)))
        status = rng.choice([GrantStatus.ACTIVE] * 3 + list(GrantStatus))
        grants[await store_advertiser_grant(service, new_token(), ids, status)] = ids
    for grant_id in rng.sample(sorted(grants), 20):
        grants[grant_id] = sorted(rng.sample(pool, rng.randint(0, 60)))
        await pg.execute(
            "UPDATE oauth_grant SET advertiser_ids = $2 WHERE id = $1", grant_id, grants[grant_id]
        )
    orphaned = set(rng.sample(sorted(grants), 15))
    await pg.execute(
        "UPDATE oauth_grant SET orphaned_at = now() WHERE id = ANY($1)", list(orphaned)
    )
    await store_account_grant(service, "-account", datetime.now(UTC) + timedelta(hours=1))
    statuses = dict(await pg.fetch("SELECT id, status FROM oauth_grant"))
    live = {g for g in grants if statuses[g] == "active"}
    serving = live - orphaned
    async with service.db.session() as session, session.begin():
        repo = Repository(session)
        for _ in range(40):
            wanted = set(rng.sample(pool, rng.choice([1, 10, 300, 1_000])))
            besides = rng.choice(sorted(grants))
            expected = {g for g in serving - {besides} if wanted & set(grants[g])}
            found = await repo.live_grants_covering_any(sorted(wanted), besides=besides)
            assert sorted(found) == sorted(expected)
        for one in rng.sample(pool, 40):
            covering = await repo.lock_live_grants_covering(one)
            assert {g.id for g in covering} == {g for g in live if one in grants[g]}
        for grant_id in rng.sample(sorted(grants), 40):
            grant = await repo.lock_grant(grant_id)
            assert grant is not None
            sharing = await repo.live_grants_sharing_advertisers(grant)
            assert {g.id for g in sharing} == {
                g for g in serving - {grant_id} if set(grants[g]) & set(grant.advertiser_ids)
            }


class Notifications:
    """What the token caches would hear on channel `token_cache`, up to a marker."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.heard: list[str] = []
        self.marker: asyncio.Event = asyncio.Event()

    def _heard(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        if payload == "marker":
            self.marker.set()
        else:
            self.heard.append(payload)

    async def start(self) -> None:
        await self.connection.add_listener("token_cache", self._heard)

    async def since_last(self, pg: asyncpg.Connection) -> list[str]:
        """Everything announced before now: PostgreSQL delivers notifications in commit
        order, so once a marker sent now arrives, everything committed earlier has."""
        self.marker.clear()
        await pg.execute("SELECT pg_notify('token_cache', 'marker')")
        await asyncio.wait_for(self.marker.wait(), timeout=10)
        heard, self.heard = self.heard, []
        return heard


async def test_only_changes_a_token_read_sees_are_announced(
    service: Service, pg: asyncpg.Connection, migrated: str
) -> None:
    ids = [advertiser(n) for n in range(50)]
    grant_id = await store_advertiser_grant(service, new_token(), ids)
    listener = await asyncpg.connect(migrated.replace("+asyncpg", ""))
    try:
        notifications = Notifications(listener)
        await notifications.start()
        await set_names(service, grant_id, {a: f"Client {a}" for a in ids})
        assert await notifications.since_last(pg) == []
        now = datetime.now(UTC)
        async with service.db.session() as session, session.begin():
            repo = Repository(session)
            await repo.assign_advertisers(grant_id, ids[:5], now)  # already so: no change
            await repo.set_advertiser_status(grant_id, ids[:2], AdvertiserStatus.REMOVED, now)
        assert sorted(await notifications.since_last(pg)) == [f"a:{a}" for a in ids[:2]]
        newer = await store_advertiser_grant(service, new_token(), [ids[3], advertiser(77)])
        heard = await notifications.since_last(pg)
        assert {p for p in heard if p.startswith("a:")} == {f"a:{ids[3]}", f"a:{advertiser(77)}"}
        assert f"g:{newer}:" in heard
        await pg.execute("DELETE FROM advertiser WHERE advertiser_id = $1", ids[4])
        assert await notifications.since_last(pg) == [f"a:{ids[4]}"]
    finally:
        await listener.close()


async def test_a_sync_of_a_changed_list_touches_only_what_changed(
    service: Service, pg: asyncpg.Connection, canaries: Canaries
) -> None:
    """500 advertisers, 10 % changed at TikTok (25 gone, 25 new, 5 renamed): a few statements
    whatever the size, and only the changed rows rewritten."""
    token = new_token()
    canaries.add(token)
    ids = [advertiser(n) for n in range(500)]
    grant_id = await store_advertiser_grant(service, token, ids)
    names = {a: f"Client {a}" for a in ids}
    await set_names(service, grant_id, names)
    gone, renamed = ids[:25], ids[100:105]
    new = [advertiser(n) for n in range(1_000, 1_025)]
    listed = {**{a: names[a] for a in ids[25:]}, **{a: "Renamed" for a in renamed}}
    listed |= {a: f"New {a}" for a in new}
    before = {table: await versions(pg, table) for table in ("advertiser", "grant_coverage")}
    with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as tiktok:
        tiktok.get("/oauth2/advertiser/get/").respond(
            json=envelope(
                {"list": [{"advertiser_id": a, "advertiser_name": n} for a, n in listed.items()]}
            )
        )
        with statements(service) as sent:
            await service.tokens.liveness.check_now(grant_id)
    assert len(sent) <= 12, sent
    rows = {r["advertiser_id"]: r for r in await pg.fetch("SELECT * FROM advertiser")}
    assert {a for a, r in rows.items() if r["status"] == "removed"} == set(gone)
    assert {a: r["name"] for a, r in rows.items() if a not in gone} == listed
    after = {table: await versions(pg, table) for table in ("advertiser", "grant_coverage")}
    rewritten = {
        key[0] for key, xmin in after["advertiser"].items() if before["advertiser"].get(key) != xmin
    }
    assert rewritten == {*gone, *new, *renamed}
    coverage_before, coverage_after = before["grant_coverage"], after["grant_coverage"]
    assert {key[0] for key in set(coverage_before) - set(coverage_after)} == set(gone)
    assert {key[0] for key in set(coverage_after) - set(coverage_before)} == set(new)
    kept = set(coverage_before) & set(coverage_after)
    assert all(coverage_before[key] == coverage_after[key] for key in kept)


async def test_a_grant_of_seven_thousand_advertisers_connects(
    client: httpx.AsyncClient, pg: asyncpg.Connection, canaries: Canaries
) -> None:
    token = new_token()
    canaries.add(token)
    ids = [advertiser(n) for n in range(7_000)]
    with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as tiktok:
        tiktok.post("/oauth2/access_token/").respond(
            json=envelope({"access_token": token, "advertiser_ids": ids, "scope": [4]})
        )
        tiktok.get("/oauth2/advertiser/get/").respond(
            json=envelope({"list": [{"advertiser_id": a, "advertiser_name": a} for a in ids]})
        )
        state = await start_authorization(client)
        answer = await client.get("/callback", params={"auth_code": "c", "state": state})
    assert answer.status_code == 200, answer.text
    named = await pg.fetchval(
        "SELECT count(*) FROM advertiser WHERE status = 'active' AND name = advertiser_id"
    )
    assert named == 7_000
