"""The token cache across processes: this test's app (replica A) changes grants and keys the
way the service does; a real `serve` process (replica B), over the same database, must stop
serving what changed within the documented bound. And the cache in isolation: its races,
bound and fail-closed switch."""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import secrets
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from tests import helpers
from tests.fixtures import (
    APP_ID,
    APP_SECRET,
    KEYS,
    OPEN_ID,
    REDIRECT_URI,
    TIKTOK_API,
    Canaries,
    FakeClock,
    bearer,
)
from tests.helpers import (
    TikTokAccounts,
    envelope,
    free_port,
    new_token,
    spawn_serve,
    store_account_grant,
    store_advertiser_grant,
)
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.callers import ApiKey
from tiktok_auth_service.models.grants import Grant
from tiktok_auth_service.repository import ApiKeyRow, GrantRow, TokenRow
from tiktok_auth_service.service import Service
from tiktok_auth_service.tokens.cache import (
    APPLICATION_NAME,
    CHANNEL,
    HEARTBEAT_SECONDS,
    HEARTBEAT_TIMEOUT_SECONDS,
    ROW_BYTES,
    SUBJECT_BYTES,
    AdvertiserChanged,
    Change,
    GrantChanged,
    KeyChanged,
    TokenCache,
    parse_change,
)

ADVERTISER, OTHER = "7100000000000000001", "7100000000000000002"
# What tokens/cache.py documents: a notification arrives in milliseconds, and a connection that
# dies silently turns the cache off within a heartbeat and its timeout. The polls below give
# that and a margin for a loaded machine; a cache that never evicts fails them at any bound.
BOUND = HEARTBEAT_SECONDS + HEARTBEAT_TIMEOUT_SECONDS + 3.0
LISTENER_ROLE = "token_cache_listener"


@pytest.fixture
def clock() -> FakeClock:
    # Replica B runs on the real clock: A's must agree, or B would find A's tokens expired.
    return FakeClock(datetime.now(UTC))


until = functools.partial(helpers.until, within=BOUND)


class Replica:
    """A `serve` process over the test's database; `http` talks to it."""

    def __init__(self, http: httpx.AsyncClient, output: list[bytes]) -> None:
        self.http = http
        self.output = output

    async def token(self, key: str, subject: str = ADVERTISER) -> httpx.Response:
        return await self.http.get(f"/tokens/{subject}", headers=bearer(key))

    async def cache_live(self) -> bool:
        metrics = (await self.http.get("/metrics")).text
        return "tiktok_auth_token_cache_live 1.0" in metrics


async def _notifications_handled(
    read: Callable[[str], Awaitable[httpx.Response]], service: Service, canaries: Canaries
) -> None:
    """Return once the process `read` asks (with a key, of a connected subject) has handled
    every notification sent so far: PostgreSQL delivers them in commit order, so once it
    refuses a key revoked now, it has handled the earlier ones too."""
    name = f"marker-{new_token()[:8]}"
    key = (await service.api_keys.create(name, [])).key.get_secret_value()
    canaries.add(key)
    assert (await read(key)).status_code == 200  # the process now holds the key
    assert await service.api_keys.revoke(name)
    await until(lambda: _status(read(key), 401), "the revoked marker key refused")


@pytest.fixture
async def listen_url(migrated: str) -> AsyncIterator[str]:
    """A database URL for replica B's notification connection, under a role of its own, so a
    test can stop that connection alone (ALTER ROLE ... NOLOGIN) while B's pools work on."""
    admin = await asyncpg.connect(migrated.replace("+asyncpg", ""))
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {LISTENER_ROLE}")
        await admin.execute(f"CREATE ROLE {LISTENER_ROLE} LOGIN")
        yield make_url(migrated).set(username=LISTENER_ROLE).render_as_string(False)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            LISTENER_ROLE,
        )
        await admin.execute(f"DROP ROLE IF EXISTS {LISTENER_ROLE}")
    finally:
        await admin.close()


@pytest.fixture
async def replica(migrated: str, listen_url: str, canaries: Canaries) -> AsyncIterator[Replica]:
    port = free_port()
    env = {
        "TIKTOK_APP_ID": APP_ID,
        "TIKTOK_APP_SECRET": APP_SECRET,
        "TIKTOK_REDIRECT_URI": REDIRECT_URI,
        "TIKTOK_API_BASE_URL": "http://127.0.0.1:9/unreachable",
        "DATABASE_URL": migrated,
        "DATABASE_LISTEN_URL": listen_url,
        "TOKEN_ENCRYPTION_KEYS": KEYS,
        "WORKER_ENABLED": "false",
        "LOG_FORMAT": "text",
    }
    process = await spawn_serve(port, 1, env)
    assert process.stderr is not None
    output: list[bytes] = []
    while b"started: process" not in (line := await process.stderr.readline()):
        assert line, b"serve exited during start-up:\n" + b"".join(output)
        output.append(line)
    drain = asyncio.create_task(_drain(process.stderr, output))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            replica = Replica(http, output)
            await until(replica.cache_live, "replica B's cache on")
            yield replica
    finally:
        process.terminate()
        await process.wait()
        await drain
    text = b"".join(output).decode()
    assert not [secret for secret in canaries.values if secret in text]


async def _drain(stream: asyncio.StreamReader, into: list[bytes]) -> None:
    while line := await stream.readline():
        into.append(line)


async def _reseal_without_notifying(
    service: Service, pg: asyncpg.Connection, grant_id: uuid.UUID, token: str
) -> None:
    """Change a grant's token behind every cache's back: with replication role `replica` the
    session fires no triggers, so no notification is sent."""
    async with service.db.session() as session:
        grant = await session.get_one(Grant, grant_id)
    service.sealer.seal(grant, SecretStr(token))
    async with pg.transaction():
        await pg.execute("SET LOCAL session_replication_role = replica")
        await pg.execute(
            "UPDATE oauth_grant SET access_token_enc = $2, key_id = $3 WHERE id = $1",
            grant_id,
            grant.access_token_enc,
            grant.key_id,
        )


def _served(token: str) -> Callable[[httpx.Response], bool]:
    return lambda answer: answer.status_code == 200 and answer.json()["access_token"] == token


class TestAcrossProcesses:
    async def test_the_replica_answers_from_its_cache_until_notified(
        self,
        replica: Replica,
        service: Service,
        api_key: str,
        pg: asyncpg.Connection,
        canaries: Canaries,
    ) -> None:
        old, new = new_token(), new_token()
        canaries.add(old, new)
        grant_id = await store_advertiser_grant(service, old, [ADVERTISER])
        await _notifications_handled(replica.token, service, canaries)
        assert _served(old)(await replica.token(api_key))
        await _reseal_without_notifying(service, pg, grant_id, new)
        # Nothing told B: it still answers from its cache (a database read would see `new`).
        for _ in range(3):
            assert _served(old)(await replica.token(api_key))
        await pg.execute("SELECT pg_notify('token_cache', $1)", f"g:{grant_id}:")
        await until(lambda: _check(replica.token(api_key), _served(new)), "B serving the new token")

    async def test_a_revoked_grant_stops_being_served(
        self, replica: Replica, client: httpx.AsyncClient, service: Service, api_key: str
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER])
        assert (await replica.token(api_key)).status_code == 200
        with respx.mock(base_url=TIKTOK_API) as tiktok:
            tiktok.post("/oauth2/revoke_token/").respond(json=envelope())
            assert (
                await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
            ).is_success
        await until(lambda: _status(replica.token(api_key), 409), "B answering 409")

    async def test_a_reauthorized_advertiser_gets_the_new_token(
        self, replica: Replica, service: Service, api_key: str, canaries: Canaries
    ) -> None:
        old, new = new_token(), new_token()
        canaries.add(old, new)
        await store_advertiser_grant(service, old, [ADVERTISER])
        assert _served(old)(await replica.token(api_key))
        await store_advertiser_grant(service, new, [ADVERTISER])  # re-points the advertiser
        await until(lambda: _check(replica.token(api_key), _served(new)), "B serving the new grant")

    async def test_a_refreshed_account_token_is_served(
        self,
        replica: Replica,
        service: Service,
        api_key: str,
        canaries: Canaries,
        clock: FakeClock,
    ) -> None:
        grant_id = await store_account_grant(service, OPEN_ID, clock.now() + timedelta(hours=20))
        path = f"accounts/{OPEN_ID}"
        before = (await replica.token(api_key, path)).json()["access_token"]
        canaries.add(before)
        with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
            tiktok = TikTokAccounts(mock, canaries, clock)
            clock.advance(hours=15)  # for A only: 5 h of 20 left, short of the 6 h asked
            await service.tokens.refresher.valid_grant(grant_id, timedelta(hours=6))
            assert tiktok.refresh.call_count == 1
        await until(
            lambda: _check(replica.token(api_key, path), _served(tiktok.access_tokens[-1])),
            "B serving the refreshed token",
        )

    async def test_an_advertiser_removed_by_a_liveness_check_stops_being_served(
        self, replica: Replica, client: httpx.AsyncClient, service: Service, api_key: str
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER, OTHER])
        assert (await replica.token(api_key)).status_code == 200
        with respx.mock(base_url=TIKTOK_API) as tiktok:
            tiktok.get("/oauth2/advertiser/get/").respond(
                json=envelope({"list": [{"advertiser_id": OTHER, "advertiser_name": "B"}]})
            )
            assert (await client.post(f"/tokens/{OTHER}/check", headers=bearer(api_key))).is_success
        await until(lambda: _status(replica.token(api_key), 409), "B answering 409")
        assert (await replica.token(api_key, OTHER)).status_code == 200

    async def test_a_revoked_api_key_stops_being_accepted(
        self, replica: Replica, service: Service, api_key: str
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER])
        assert (await replica.token(api_key)).status_code == 200
        (client,) = await service.api_keys.list()
        assert await service.api_keys.revoke(client.name)
        await until(lambda: _status(replica.token(api_key), 401), "B answering 401")

    async def test_while_the_notification_connection_is_lost_every_read_asks_the_database(
        self,
        replica: Replica,
        service: Service,
        api_key: str,
        pg: asyncpg.Connection,
        canaries: Canaries,
    ) -> None:
        tokens = [new_token() for _ in range(3)]
        canaries.add(*tokens)
        grant_id = await store_advertiser_grant(service, tokens[0], [ADVERTISER])
        assert _served(tokens[0])(await replica.token(api_key))
        # Cut B's notification connection and keep it from coming back.
        await pg.execute(f"ALTER ROLE {LISTENER_ROLE} NOLOGIN")
        await pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            APPLICATION_NAME,
        )
        await until(lambda: _not(replica.cache_live()), "B's cache off")
        await _reseal_without_notifying(service, pg, grant_id, tokens[1])
        # No notification was sent, yet B sees the change at once: it reads the database.
        assert _served(tokens[1])(await replica.token(api_key))

        await pg.execute(f"ALTER ROLE {LISTENER_ROLE} LOGIN")
        await until(replica.cache_live, "B's cache on again")
        assert _served(tokens[1])(await replica.token(api_key))  # cached again from here
        await _reseal_without_notifying(service, pg, grant_id, tokens[2])
        assert _served(tokens[1])(await replica.token(api_key))
        assert b"token cache off" in b"".join(replica.output)


async def _check(
    answer: Awaitable[httpx.Response], predicate: Callable[[httpx.Response], bool]
) -> bool:
    return predicate(await answer)


async def _status(answer: Awaitable[httpx.Response], status: int) -> bool:
    return (await answer).status_code == status


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


# The tags a row of the measurements carries: none, two, or ten as long as they may be (with
# a character past U+FFFF, which makes CPython store each of its string's characters in four
# bytes).
_TAGS = ("none", "two", "ten of the most")


def _tags(kind: str, grant_id: uuid.UUID) -> dict[str, str]:
    if kind == "two":
        return {"tenant": "acme-" + grant_id.hex, "env": "production"}
    if kind == "ten of the most":
        return {
            f"{n}{grant_id.hex}".ljust(63, "k") + "\U0001f389": "v" * 254 + "\U0001f389"
            for n in range(10)
        }
    return {}


def _grant(grant_id: uuid.UUID, status: str = "active", tags: str = "none") -> GrantRow:
    """A row shaped like the ones reads fetch, made anew as each read makes it (new objects,
    equal values for one grant): a sealed token of a real one's size, the times, ten scopes,
    the labels, the tags."""
    return GrantRow(
        grant_id,
        status,
        "k1",
        grant_id.bytes * 5 + b"tag.",
        None,
        None,
        datetime.fromtimestamp(1_790_000_000, UTC),
        None,
        0,
        datetime.fromtimestamp(1_790_000_100, UTC),
        "reporting-service",
        "customer-" + grant_id.hex,
        list(range(1, 11)),
        _tags(tags, grant_id),
    )


def _row(grant_id: uuid.UUID | None = None, name: str = "k") -> TokenRow:
    grant = None if grant_id is None else _grant(grant_id)
    return TokenRow(ApiKeyRow(True, frozenset(), frozenset(), name), grant)


@pytest.fixture
def cache() -> Iterator[TokenCache]:
    cache = TokenCache(max_bytes=3 * (SUBJECT_BYTES + ROW_BYTES), metrics=Metrics())
    cache.set_live(True)
    yield cache


class TestTheTriggers:
    """Migration 0004's triggers write the payloads in SQL, `parse_change` reads them: each
    change the triggers report is made for real, and what PostgreSQL delivers on the channel
    must parse to what was changed."""

    @pytest.fixture
    async def heard(self, migrated: str) -> AsyncIterator[asyncio.Queue[str]]:
        payloads: asyncio.Queue[str] = asyncio.Queue()
        listener = await asyncpg.connect(migrated.replace("+asyncpg", ""))
        await listener.add_listener(CHANNEL, lambda *args: payloads.put_nowait(args[3]))
        try:
            yield payloads
        finally:
            await listener.close()

    async def test_each_change_the_triggers_report_parses_to_what_changed(
        self, pg: asyncpg.Connection, heard: asyncio.Queue[str]
    ) -> None:
        async def changes(sql: str, *args: object) -> set[Change | None]:
            """What `sql` (one transaction) made the triggers send, parsed. A notification
            sent after it, from the same session, arrives after all of its own."""
            await pg.execute(sql, *args)
            end = f"end:{uuid.uuid4()}"
            await pg.execute("SELECT pg_notify($1, $2)", CHANNEL, end)
            sent = []
            while (payload := await asyncio.wait_for(heard.get(), timeout=10)) != end:
                sent.append(payload)
            return {parse_change(payload) for payload in sent}

        now = datetime.now(UTC)
        key, other_key = secrets.token_bytes(32), secrets.token_bytes(32)
        key_id = uuid.uuid4()
        assert await changes(
            "INSERT INTO api_client (id, name, key_hash, unrestricted, created_at)"
            " VALUES ($1, 'k', $2, true, $3)",
            key_id,
            key,
            now,
        ) == {KeyChanged(key)}
        assert await changes(
            "UPDATE api_client SET revoked_at = $2 WHERE id = $1", key_id, now
        ) == {KeyChanged(key)}
        assert await changes(
            "UPDATE api_client SET key_hash = $2 WHERE id = $1", key_id, other_key
        ) == {KeyChanged(key), KeyChanged(other_key)}
        assert await changes("DELETE FROM api_client WHERE id = $1", key_id) == {
            KeyChanged(other_key)
        }

        insert_grant = (
            "INSERT INTO oauth_grant (id, flow, open_id, key_id, access_token_enc, scope, status,"
            " version, failures, tags, created_at, updated_at)"
            " VALUES ($1, $2, $3, 'k1', '\\x00', '[]', 'active', 1, 0, '{}', $4, $4)"
        )
        advertiser_grant, account_grant = uuid.uuid4(), uuid.uuid4()
        assert await changes(insert_grant, advertiser_grant, "advertiser", None, now) == {
            GrantChanged(advertiser_grant, None)
        }
        assert await changes(insert_grant, account_grant, "tiktok_account", OPEN_ID, now) == {
            GrantChanged(account_grant, OPEN_ID)
        }
        assert await changes(
            "UPDATE oauth_grant SET status = 'revoked' WHERE id = $1", account_grant
        ) == {GrantChanged(account_grant, OPEN_ID)}
        assert await changes(
            "UPDATE oauth_grant SET open_id = $2 WHERE id = $1", account_grant, "-other"
        ) == {GrantChanged(account_grant, OPEN_ID), GrantChanged(account_grant, "-other")}

        assert await changes(
            "INSERT INTO advertiser (advertiser_id, grant_id, created_at, updated_at)"
            " VALUES ($1, $2, $3, $3)",
            ADVERTISER,
            advertiser_grant,
            now,
        ) == {AdvertiserChanged(ADVERTISER)}
        assert await changes(
            "UPDATE advertiser SET grant_id = $2 WHERE advertiser_id = $1",
            ADVERTISER,
            account_grant,
        ) == {AdvertiserChanged(ADVERTISER)}
        assert await changes(
            "UPDATE advertiser SET advertiser_id = $2 WHERE advertiser_id = $1", ADVERTISER, OTHER
        ) == {AdvertiserChanged(ADVERTISER), AdvertiserChanged(OTHER)}
        assert await changes("DELETE FROM advertiser WHERE advertiser_id = $1", OTHER) == {
            AdvertiserChanged(OTHER)
        }
        assert await changes("DELETE FROM oauth_grant WHERE id = $1", advertiser_grant) == {
            GrantChanged(advertiser_grant, None)
        }


class TestTheCache:
    def test_a_read_that_raced_a_notification_is_not_kept(self, cache: TokenCache) -> None:
        started = cache.generation
        cache.notified(f"a:{ADVERTISER}")  # arrives while the read is at the database
        cache.remember("advertiser", b"h", ADVERTISER, _row(uuid.uuid4()), started)
        assert cache.lookup("advertiser", b"h", ADVERTISER) is None
        cache.remember("advertiser", b"h", ADVERTISER, _row(uuid.uuid4()), cache.generation)
        assert cache.lookup("advertiser", b"h", ADVERTISER) is not None

    def test_each_notification_evicts_what_it_names(self, cache: TokenCache) -> None:
        grant = uuid.uuid4()
        for kind, subject in (("advertiser", ADVERTISER), ("advertiser", OTHER)):
            cache.remember(kind, b"h", subject, _row(grant), cache.generation)
        cache.remember("tiktok_account", b"h", OPEN_ID, _row(None), cache.generation)
        cache.notified(f"g:{grant}:")
        assert cache.lookup("advertiser", b"h", ADVERTISER) is None
        assert cache.lookup("advertiser", b"h", OTHER) is None
        assert cache.lookup("tiktok_account", b"h", OPEN_ID) is not None
        cache.notified(f"g:{uuid.uuid4()}:{OPEN_ID}")  # a grant for that account appeared
        assert cache.lookup("tiktok_account", b"h", OPEN_ID) is None
        cache.remember("advertiser", b"h", ADVERTISER, _row(grant), cache.generation)
        cache.notified(f"c:{b'h'.hex()}")
        assert cache.lookup("advertiser", b"h", ADVERTISER) is None

    def test_when_full_the_least_recently_read_make_room(self, cache: TokenCache) -> None:
        for subject in ("1", "2", "3"):
            cache.remember("advertiser", b"h", subject, _row(uuid.uuid4()), cache.generation)
        assert cache.lookup("advertiser", b"h", "1") is not None  # 2 is now the oldest read
        cache.remember("advertiser", b"h", "4", _row(uuid.uuid4()), cache.generation)
        assert [cache.lookup("advertiser", b"h", s) is not None for s in "1234"] == [
            True,
            False,
            True,
            True,
        ]
        assert cache.bytes == 3 * (SUBJECT_BYTES + ROW_BYTES) == cache.max_bytes

    def test_subjects_of_one_grant_share_its_row(self, cache: TokenCache) -> None:
        grant = uuid.uuid4()
        for n in range(10):  # ten subjects fit in the room of three with rows of their own
            cache.remember("advertiser", b"h", str(n), _row(grant), cache.generation)
        assert len(cache) == 10
        assert cache.bytes == 10 * SUBJECT_BYTES + ROW_BYTES
        cache.notified(f"g:{grant}:")
        assert len(cache) == 0 and cache.bytes == 0

    def test_it_starts_over_when_puzzled(self, cache: TokenCache) -> None:
        cache.remember("advertiser", b"h", "4", _row(uuid.uuid4()), cache.generation)
        cache.notified("x:something new")
        assert cache.lookup("advertiser", b"h", "4") is None
        assert cache.bytes == 0

    @pytest.mark.parametrize("tags", list(_TAGS))
    @pytest.mark.parametrize("per_grant", [1, 1000])
    def test_what_it_counts_covers_what_it_takes(self, per_grant: int, tags: str) -> None:
        """SUBJECT_BYTES and `row_bytes` are at least what CPython really allocates for a
        subject and a row kept, measured over 20,000 subjects (advertiser ids of 19 digits),
        each in a grant of its own or a thousand to a grant, with no tags, two, or ten of
        the largest."""
        subjects = 20_000
        cache = TokenCache(max_bytes=1 << 30, metrics=Metrics())
        cache.set_live(True)
        assert cache.generation == 1
        caller = ApiKeyRow(True, frozenset(), frozenset(), "reporting")
        grants = [uuid.uuid4() for _ in range(subjects // per_grant)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(subjects):  # each read's id and row made here, as a read makes them
                row = TokenRow(caller, _grant(grants[n // per_grant], tags=tags))
                cache.remember("advertiser", b"h", str(7100000000000000000 + n), row, 1)
            taken = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(cache) == subjects
        assert taken <= cache.bytes, f"{taken / subjects:.0f} bytes a subject taken"

    @pytest.mark.parametrize("per_grant", [1, 1000])
    def test_a_full_garbage_collection_walks_no_cached_subject(self, per_grant: int) -> None:
        """What the cache keeps per subject is invisible to the garbage collector: a full
        collection (which pauses every request of the process) walks the references of each
        tracked object, and at a million cached subjects walking them took 100 ms."""
        subjects = 20_000
        cache = TokenCache(max_bytes=1 << 30, metrics=Metrics())
        cache.set_live(True)
        caller = ApiKeyRow(True, frozenset(), frozenset(), "reporting")
        grants = [uuid.uuid4() for _ in range(subjects // per_grant)]
        gc.collect()
        tracked_before = {id(o) for o in gc.get_objects()}
        for n in range(subjects):
            row = TokenRow(caller, _grant(grants[n // per_grant], tags="two"))
            cache.remember("advertiser", b"h", str(7100000000000000000 + n), row, 1)
        gc.collect()  # as a full collection would: it untracks what it may
        walked = sum(
            len(gc.get_referents(o))
            for o in gc.get_objects()
            if id(o) not in tracked_before and o is not tracked_before
        )
        assert len(cache) == subjects
        # A grant's row and the entry naming it are walked, once per grant, not per subject.
        assert walked <= 40 * len(grants), f"{walked} references walked for {subjects} subjects"

    def test_off_it_neither_answers_nor_keeps(self, cache: TokenCache) -> None:
        cache.remember("advertiser", b"h", "1", _row(uuid.uuid4()), cache.generation)
        cache.set_live(False)
        assert cache.lookup("advertiser", b"h", "1") is None
        cache.remember("advertiser", b"h", "1", _row(uuid.uuid4()), cache.generation)
        cache.set_live(True)
        assert cache.lookup("advertiser", b"h", "1") is None


DIGITS = "7100000000000000003"  # an advertiser id, and also what a key may name as an open id
ACCOUNT, OTHER_ACCOUNT = OPEN_ID, "-000openid0002"
# Per restricted key, reads whose answers must not depend on what was read before: the
# cached permission is the one the database answers for that kind of subject.
_READS_BY_KEY: dict[str, tuple[list[str], list[str], list[tuple[str, int]]]] = {
    # (advertisers, accounts, [(path, status)])
    "mixed": (
        [ADVERTISER],
        [ACCOUNT],
        [
            (ADVERTISER, 200),
            (f"accounts/{ACCOUNT}", 200),
            (DIGITS, 403),
            (f"accounts/{OTHER_ACCOUNT}", 403),
        ],
    ),
    "digits-account": (
        [],
        [DIGITS],
        [
            (DIGITS, 403),
            ("accounts/no-such-123", 403),
            (f"accounts/{DIGITS}", 404),
            (ADVERTISER, 403),
        ],
    ),
    "account-only": (
        [],
        [ACCOUNT],
        [(ADVERTISER, 403), (f"accounts/{ACCOUNT}", 200), (OTHER, 403)],
    ),
}


class TestPermissionsByKind:
    """A key's advertiser list answers advertiser reads and its account list account reads,
    whatever order the reads came in and whichever of them filled the cache (each read is
    made twice: once from the database, once from the cache)."""

    @pytest.fixture
    async def connected(self, service: Service, clock: FakeClock, canaries: Canaries) -> None:
        tokens = [new_token() for _ in range(2)]
        canaries.add(*tokens)
        await store_advertiser_grant(service, tokens[0], [ADVERTISER, OTHER])
        await store_advertiser_grant(service, tokens[1], [DIGITS])
        for open_id in (ACCOUNT, OTHER_ACCOUNT):
            await store_account_grant(service, open_id, clock.now() + timedelta(hours=20))

    async def _orders(
        self,
        service: Service,
        canaries: Canaries,
        read: Callable[[str, str], Awaitable[httpx.Response]],
    ) -> list[str]:
        """Every order of every key's reads, each with a fresh key; the mismatches."""
        wrong = []
        for name, (advertisers, accounts, reads) in _READS_BY_KEY.items():
            for number, order in enumerate(itertools.permutations(reads)):
                key = await _stored_key(service, f"{name}-{number}", advertisers, accounts)
                canaries.add(key)
                for path, status in order:
                    for attempt in ("cold", "warm"):
                        got = (await read(key, path)).status_code
                        if got != status:
                            wrong.append(f"{name} {order}: {path} ({attempt}) gave {got}")
        return wrong

    async def test_the_audited_leak_is_closed(
        self, connected: None, client: httpx.AsyncClient, service: Service, api_key: str
    ) -> None:
        await until(lambda: _true(service.tokens.cache.live), "the cache on")
        narrow = bearer(await _stored_key(service, "narrow", [], [DIGITS]))
        assert (await client.get(f"/tokens/{DIGITS}", headers=bearer(api_key))).status_code == 200
        assert (await client.get(f"/tokens/{DIGITS}", headers=narrow)).status_code == 403
        assert (await client.get("/tokens/accounts/no-such-123", headers=narrow)).status_code == 403
        answer = await client.get(f"/tokens/{DIGITS}", headers=narrow)
        assert answer.status_code == 403, "a key restricted to an account read an advertiser"

    async def test_every_order_in_this_process(
        self, connected: None, client: httpx.AsyncClient, service: Service, canaries: Canaries
    ) -> None:
        await until(lambda: _true(service.tokens.cache.live), "the cache on")

        async def read(key: str, path: str) -> httpx.Response:
            return await client.get(f"/tokens/{path}", headers=bearer(key))

        assert await self._orders(service, canaries, read) == []

    async def test_every_order_in_another_process(
        self, connected: None, replica: Replica, service: Service, canaries: Canaries
    ) -> None:
        assert await self._orders(service, canaries, replica.token) == []


class TestNoStampede:
    """Misses for one subject by one key, all at once (a cold cache after a restart, a subject
    just evicted): one database query answers them all."""

    READS = 20

    def _misses(self, service: Service, outcome: str) -> float:
        return float(service.metrics.token_cache_misses.labels(outcome)._value.get())

    async def test_concurrent_misses_make_one_query(
        self,
        client: httpx.AsyncClient,
        service: Service,
        api_key: str,
        pg: asyncpg.Connection,
        canaries: Canaries,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [ADVERTISER])
        await until(lambda: _true(service.tokens.cache.live), "the cache on")

        async def read(key: str) -> httpx.Response:
            return await client.get(f"/tokens/{ADVERTISER}", headers=bearer(key))

        # Else the store's notification, arriving late, would part the reads into two groups.
        await _notifications_handled(read, service, canaries)
        queried = self._misses(service, "queried")
        joined = self._misses(service, "joined")
        # Hold the read's query at its first table, so that every read arrives while it runs.
        async with pg.transaction():
            await pg.execute("LOCK TABLE api_client IN ACCESS EXCLUSIVE MODE")
            reads = [asyncio.ensure_future(read(api_key)) for _ in range(self.READS)]
            await until(
                lambda: _true(self._misses(service, "joined") - joined == self.READS - 1),
                "every read but one waiting for the first one's query",
            )
            waiting = await pg.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%api_client%'"
            )
            assert waiting == 1
        answers = await asyncio.gather(*reads)
        assert [a.status_code for a in answers] == [200] * self.READS
        assert {a.json()["access_token"] for a in answers} == {token}
        assert self._misses(service, "queried") - queried == 1

    async def test_a_miss_after_a_notification_does_not_wait_for_an_older_query(
        self, cache: TokenCache
    ) -> None:
        """What a query under way fetched may predate the change a notification names."""
        started, release = asyncio.Event(), asyncio.Event()
        old, new = _row(uuid.uuid4()), _row(uuid.uuid4())

        async def slow_old() -> TokenRow:
            started.set()
            await release.wait()
            return old

        async def fresh() -> TokenRow:
            return new

        first = asyncio.ensure_future(cache.fetch("advertiser", b"h", ADVERTISER, slow_old))
        await started.wait()
        cache.notified(f"a:{ADVERTISER}")
        # A read that waited for the first query would wait for ever here.
        fetched = cache.fetch("advertiser", b"h", ADVERTISER, fresh)
        assert await asyncio.wait_for(fetched, BOUND) is new
        release.set()
        assert await first is old
        assert cache.lookup("advertiser", b"h", ADVERTISER) == new  # the stale one not kept


async def _true(value: bool) -> bool:
    return value


async def _stored_key(
    service: Service, name: str, advertisers: list[str], accounts: list[str]
) -> str:
    """A key stored as `api-keys create` stores one, but without its checks: keys made
    before open ids were validated can list an advertiser id as an account."""
    key = f"tas_{secrets.token_urlsafe(32)}"
    async with service.db.session() as session, session.begin():
        session.add(
            ApiKey(
                id=uuid.uuid4(),
                name=name,
                key_hash=digest(key),
                unrestricted=False,
                allowed_advertiser_ids=advertisers,
                allowed_open_ids=accounts,
                created_at=datetime.now(UTC),
            )
        )
    return key
