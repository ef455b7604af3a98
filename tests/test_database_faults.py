"""The database cut off, swallowed, slowed, stopped and started under load on every route of
the API. Each answer is the route's normal one or a 503 problem+json `database_unavailable`
with Retry-After (the server's access log records no 500 either); no request waits longer
than DATABASE_TIMEOUT_SECONDS allows; every route answers normally again within 5 s of the
database returning, from the same running service; and every grant stored before the fault
is intact (the rows, their sealed tokens and refresh chains) and still served.

The service runs under uvicorn on loopback and reaches a PostgreSQL of this module's own
through `tests.db_proxy.DatabaseProxy`; TikTok is the emulator, which no route under load
calls. Run with `-s` to see what each fault did."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.db_proxy import DatabaseProxy, RestartableDatabase, database_proxy, restartable_database
from tests.fixtures import KEYS, Canaries, bearer
from tests.helpers import new_token, store_account_grant, store_advertiser_grant
from tests.openapi_check import OpenApiCheck
from tiktok_auth_dev.stack import run_stack
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.models.grants import Flow

# The two wall-clock bounds here measure waits, not speed: each is several times what a loaded
# machine takes, and what it catches takes longer still.
# - The longest request while the database is faulty: at most DEADLINE (the waits that
#   DATABASE_TIMEOUT_SECONDS bounds) and MARGIN. A request that waited for the database to
#   return instead of giving up would take the rest of the fault, FAULT_SECONDS.
# - Recovery: from the database's return until a round of every operation answers normally,
#   at most RECOVERY_SECONDS. A pool that kept its dead connections, or a service that had to
#   be restarted, would never get there.
DATABASE_TIMEOUT = 1.0
# A request that finds the database unresponsive waits on it at most three times, each bounded
# by DATABASE_TIMEOUT_SECONDS: for a pooled connection, for a new one (or a pooled one's
# liveness ping), and for one statement (or, after it, for asyncpg's cancellation of it).
DEADLINE = 3 * DATABASE_TIMEOUT
# Scheduling slack on a loaded 2-core machine.
MARGIN = 1.0
# Longer than the deadline and its margin: a request that waited for the database to come
# back, instead of giving up, would break the bound.
FAULT_SECONDS = DEADLINE + MARGIN + 1.0
RECOVERY_SECONDS = 5.0
# Requests in flight at once against pools of POOL_SIZE: the write pool (POOL_SIZE plus
# SQLAlchemy's 10 overflow connections) and the read pool run out while the database hangs.
CLIENTS = 16
POOL_SIZE = 2
# The slow database: each chunk either way waits this long, so a round trip takes a tenth of
# the timeout (a hundred times loopback's); statements finish, slowly.
LATENCY = DATABASE_TIMEOUT / 20

ADVERTISERS = ["7100000000000000101", "7100000000000000102"]
ACCOUNT = "-000faults0001"
# Path parameters: GET reads a stored grant (and a connect session opened at the start); the
# other methods (which would end a grant or ask TikTok) name a subject that is not connected
# and answer 404 once the database says so.
STORED = {"advertiser_id": ADVERTISERS[0], "open_id": ACCOUNT}
NOT_CONNECTED = {"advertiser_id": "7100000000000000999", "open_id": "-000faults9999"}


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    path: str
    params: dict[str, str]
    body: dict[str, Any] | None
    browser: bool = False  # asks for HTML, as a browser does

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}" + (" (browser)" if self.browser else "")

    def headers(self, key: str) -> dict[str, str]:
        return {"accept": "text/html"} if self.browser else bearer(key)


def operations(spec: dict[str, Any], stored: dict[str, str]) -> list[Operation]:
    """Every operation of the OpenAPI document with its path filled in, so a new route is
    put under load without a change here (a new path parameter needs a value above); those
    that answer browsers with HTML pages are asked once more as a browser."""
    found = []
    for template, methods in spec["paths"].items():
        for method, operation in methods.items():
            values = stored if method == "get" else NOT_CONNECTED
            path = template
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    name = parameter["name"]
                    assert name in values, f"{method.upper()} {template}: give {name} a value"
                    path = path.replace("{" + name + "}", values[name])
            # An unknown state: /callback looks it up and refuses it.
            params = {"state": secrets.token_urlsafe(32)} if template == "/callback" else {}
            body: dict[str, Any] | None = {} if "requestBody" in operation else None
            found.append(Operation(method.upper(), template, path, params, body))
            pages = [r.get("content", {}) for r in operation["responses"].values()]
            if any("text/html" in content for content in pages):
                found.append(Operation(method.upper(), template, path, params, body, True))
    return found


@dataclass(frozen=True)
class Answer:
    operation: Operation
    status: int
    seconds: float
    media_type: str
    body: Any
    retry_after: str | None

    @property
    def code(self) -> str | None:
        """The problem's code, from its JSON or from the HTML page that shows it."""
        if self.media_type == "text/html":
            shown = re.search(r"<code>([a-z_]+)</code>", self.body)
            return shown[1] if shown else None
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def database_unavailable(self) -> bool:
        expected = "text/html" if self.operation.browser else "application/problem+json"
        return (
            self.status == 503
            and self.media_type == expected
            and self.code == "database_unavailable"
            and (self.retry_after or "").isdigit()
        )


@dataclass
class Running:
    database: RestartableDatabase
    proxy: DatabaseProxy
    http: httpx.AsyncClient
    key: str
    tokens: list[str]
    operations: list[Operation]
    # Each operation's status with a healthy database, and what the token reads served.
    normal: dict[str, int] = field(default_factory=dict)
    served: dict[str, str] = field(default_factory=dict)

    async def ask(self, operation: Operation) -> Answer:
        started = time.monotonic()
        response = await self.http.request(
            operation.method,
            operation.path,
            params=operation.params,
            json=operation.body,
            headers=operation.headers(self.key),
        )
        seconds = time.monotonic() - started
        media_type = response.headers.get("content-type", "").split(";")[0]
        body: Any = response.json() if media_type.endswith("json") else response.text
        retry_after = response.headers.get("retry-after")
        return Answer(operation, response.status_code, seconds, media_type, body, retry_after)

    async def round(self) -> list[Answer]:
        """Every operation once, all at the same time."""
        return await asyncio.gather(*(self.ask(operation) for operation in self.operations))

    def is_normal(self, answer: Answer) -> bool:
        return answer.status == self.normal[answer.operation.name]

    def tokens_served(self, answers: list[Answer]) -> dict[str, str]:
        return {
            answer.operation.name: answer.body["access_token"]
            for answer in answers
            if answer.status == 200
            and isinstance(answer.body, dict)
            and "access_token" in answer.body
        }


async def stored_rows(database: RestartableDatabase) -> list[dict[str, Any]]:
    """Every grant and advertiser row as it is, sealed tokens included (read directly, not
    through the proxy)."""
    connection = await asyncpg.connect(database.url.replace("+asyncpg", ""))
    try:
        grants = await connection.fetch("SELECT * FROM oauth_grant ORDER BY id")
        advertisers = await connection.fetch("SELECT * FROM advertiser ORDER BY advertiser_id")
    finally:
        await connection.close()
    return [dict(row) for row in [*grants, *advertisers]]


@pytest.fixture(scope="module")
async def running() -> AsyncIterator[Running]:
    async with (
        restartable_database() as database,
        database_proxy(database.socket_path) as proxy,
        run_stack(
            database_url=proxy.url,
            encryption_keys=KEYS,
            worker_enabled=False,
            connect_sessions_required=False,  # so /authorize writes its state: a write route
            database_pool_size=POOL_SIZE,
            database_timeout_seconds=DATABASE_TIMEOUT,
        ) as stack,
    ):
        service = app_service(stack.service)
        key = (await service.api_keys.create("faults", [])).key.get_secret_value()
        token = new_token()
        await store_advertiser_grant(service, token, ADVERTISERS)
        await store_account_grant(service, ACCOUNT, datetime.now(UTC) + timedelta(hours=23))
        link = await service.connect_sessions.open_session(key, Flow.ADVERTISER, None, None)
        stored = {**STORED, "session_id": str(link.id)}
        spec = stack.service.openapi()
        async with httpx.AsyncClient(
            base_url=stack.service_url,
            timeout=60,  # far past the deadline: a hang shows up as a slow answer
            # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes
            # them, so no request is sent on a connection the server is closing.
            limits=httpx.Limits(max_connections=CLIENTS * 2, keepalive_expiry=2),
            event_hooks={"response": [OpenApiCheck(spec).on_response]},
        ) as http:
            running = Running(database, proxy, http, key, [token], operations(spec, stored))
            answers = await running.round()
            running.normal = {answer.operation.name: answer.status for answer in answers}
            running.served = running.tokens_served(answers)
            assert running.served["GET /tokens/{advertiser_id}"] == token
            assert running.normal["GET /connect-sessions/{session_id}"] == 200
            running.tokens.extend(running.served.values())
            yield running


async def load(
    running: Running, started: asyncio.Event, stop: asyncio.Event, answers: list[Answer]
) -> None:
    """CLIENTS callers, each going round every operation (from its own starting point) until
    `stop`, adding their answers to `answers`; `started` is set after the first CLIENTS."""

    async def caller(turn: int) -> None:
        while not stop.is_set():
            answers.append(await running.ask(running.operations[turn % len(running.operations)]))
            if len(answers) >= CLIENTS:
                started.set()
            turn += 1

    await asyncio.gather(*(caller(n) for n in range(CLIENTS)))


async def recovery_seconds(running: Running) -> float:
    """Seconds from the database's return until a round of every operation answers normally;
    fails past RECOVERY_SECONDS (see the top of this module)."""
    started = time.monotonic()
    while True:
        answers = await running.round()
        elapsed = time.monotonic() - started
        late = [(a.operation.name, a.status) for a in answers if not running.is_normal(a)]
        if not late:
            return elapsed
        assert elapsed < RECOVERY_SECONDS, (
            f"still failing {elapsed:.1f} s after the database returned: {late}"
        )
        await asyncio.sleep(0.05)


async def inject(running: Running, fault: str) -> None:
    """Start `fault`, hold it for FAULT_SECONDS, end it; returns when the database is back."""
    if fault == "restart":
        await running.database.restart(lambda: asyncio.sleep(FAULT_SECONDS))
        return
    proxy = running.proxy
    if fault == "cut":
        proxy.cut()
    elif fault == "blackhole":
        proxy.blackhole()
    else:
        proxy.delay(LATENCY)
    await asyncio.sleep(FAULT_SECONDS)
    proxy.passthrough()


@pytest.mark.parametrize("fault", ["cut", "blackhole", "slow", "restart"])
async def test_every_route_rides_out_a_database_fault(
    running: Running, fault: str, canaries: Canaries, caplog: pytest.LogCaptureFixture
) -> None:
    canaries.add(running.key, *running.tokens, "emulator-secret")
    before = await stored_rows(running.database)
    started, stop, answers = asyncio.Event(), asyncio.Event(), list[Answer]()
    under_load = asyncio.create_task(load(running, started, stop, answers))
    await started.wait()  # the callers are at work before the fault begins
    delayed = running.proxy.delayed
    await inject(running, fault)
    recovery = await recovery_seconds(running)
    stop.set()
    await under_load
    after = await stored_rows(running.database)
    final = await running.round()

    statuses = Counter(
        f"{answer.status} {answer.code}" if answer.status >= 500 else str(answer.status)
        for answer in answers
    )
    causes = Counter(
        str(record.args[-1])
        for record in caplog.records
        if record.getMessage().startswith("database unavailable on")
        and isinstance(record.args, tuple)
    )
    slowest = max(answers, key=lambda answer: answer.seconds)
    report = (
        f"{fault}: {len(answers)} requests, statuses {dict(sorted(statuses.items()))}; causes "
        f"{dict(causes.most_common())}; slowest {slowest.seconds:.2f} s "
        f"({slowest.operation.name}; deadline {DEADLINE:.1f} s); recovered {recovery:.2f} s "
        "after the database returned"
    )
    print("\n" + report)

    odd = [a for a in answers if not (running.is_normal(a) or a.database_unavailable)]
    assert not odd, (report, sorted({(a.operation.name, a.status, str(a.body)[:300]) for a in odd}))
    logged_500 = [r.getMessage() for r in caplog.records if getattr(r, "status", None) == 500]
    assert not logged_500, (report, logged_500[:5])
    server_errors = [r for r in caplog.records if r.name == "uvicorn.error" and r.levelno >= 40]
    assert not server_errors, (report, server_errors[0].getMessage())
    if fault == "slow":
        assert running.proxy.delayed > delayed, report  # the traffic went through the delay
    else:
        assert statuses["503 database_unavailable"], report  # the fault was felt
    # The longest request while the fault lasted (see the top of this module).
    assert slowest.seconds <= DEADLINE + MARGIN, f"a request waited for the database: {report}"
    assert after == before
    assert [(a.operation.name, a.status) for a in final if not running.is_normal(a)] == []
    assert running.tokens_served(final) == running.served
