"""The refresh time while a webhook receiver drips: does a hostile receiver delay the worker?

    uv run python bench/webhook_drip.py [--rounds 100] [--timeout 60]

Starts an embedded PostgreSQL, the TikTok emulator and `serve --workers 1` with its background
worker on (WORKER_POLL_SECONDS=0.05, TIKTOK_RATE_LIMIT_QPS=1000) and WEBHOOK_URL pointing at a
receiver in this process that reads each delivery, then answers one byte every 0.5 s forever. It
connects one TikTok account, then times `--rounds` refreshes by the worker: each round marks the
grant due (`refresh_due_at = now()`) and waits until its `refreshed_at` moves. First with an
empty outbox (the baseline), then with 200 deliveries waiting for the dripping receiver, every
one of the WEBHOOK_CONCURRENCY=4 slots hanging on it. Prints the median and the slowest refresh
of both, their ratio (about 1 when a receiver delays nothing), and how many connections the
receiver held on average during the dripping rounds. A refresh that does not happen within
`--timeout` s ends the dripping rounds: the run prints what it measured, says the worker
stalled, and exits with status 1."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from refresh_storm import connect_accounts
from running import emulator_app, free_port, running, service_env

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.db import migrate

SECRET = "whsec_" + base64.b64encode(b"bench-webhook-signing-key-0123456789").decode()
DRIP_SECONDS = 0.5
OPEN_ID = "-000drip0001"
CONCURRENCY = 4


class Stalled(Exception):
    """No refresh landed within the patience; carries the rounds measured before."""

    def __init__(self, seconds: list[float]) -> None:
        super().__init__(len(seconds))
        self.seconds = seconds


class DrippingReceiver:
    """Reads a request, then answers one byte every DRIP_SECONDS until the sender hangs up."""

    def __init__(self) -> None:
        self.connections: set[asyncio.StreamWriter] = set()
        self.requests = 0

    @property
    def holding(self) -> int:
        return len(self.connections)

    def hang_up(self) -> None:
        """Close every connection held, so that a sender stuck on one can stop."""
        for writer in self.connections:
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            dripping = asyncio.create_task(self._drip(writer))
            while await reader.read(4096):  # the body, then end of file once the sender gives up
                pass
            dripping.cancel()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while True:
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(DRIP_SECONDS)  # the hostile receiver's pace


async def refresh_times(
    pg: asyncpg.Connection, rounds: int, patience: float, receiver: DrippingReceiver
) -> tuple[list[float], float]:
    """Seconds from marking the grant due to its refresh landing, `rounds` times; and how
    many connections the receiver held meanwhile, on average over the moments looked at."""
    seconds = []
    held = []
    for _ in range(rounds):
        before = await pg.fetchval("SELECT refreshed_at FROM oauth_grant")
        started = time.perf_counter()
        await pg.execute("UPDATE oauth_grant SET refresh_due_at = now()")
        while await pg.fetchval("SELECT refreshed_at FROM oauth_grant") == before:
            held.append(receiver.holding)
            if time.perf_counter() - started > patience:
                raise Stalled(seconds)
            await asyncio.sleep(0.005)  # polling the database for the refresh
        seconds.append(time.perf_counter() - started)
    return seconds, statistics.mean(held or [receiver.holding])


async def fill_outbox(pg: asyncpg.Connection, url: str, count: int) -> None:
    now = datetime.now(UTC)
    await pg.executemany(
        "INSERT INTO webhook_delivery (event_id, url, subject, event_type, payload, status,"
        " attempts, created_at, next_attempt_at) VALUES ($1, $2, $3, 'connection.updated',"
        " '{}', 'pending', 0, $4, $4)",
        [(f"msg_{uuid.uuid4().hex}", url, f"subject-{n}", now) for n in range(count)],
    )


def summary(name: str, seconds: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(seconds) * 1000:7.1f} ms"
        f"   slowest {max(seconds) * 1000:7.1f} ms"
    )


async def measure(args: argparse.Namespace, database_url: str) -> bool:
    """Prints the figures; False when the worker stalled behind the receiver."""
    receiver = DrippingReceiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    hook_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks"
    emulator_url = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    env = service_env(
        database_url,
        emulator_url,
        WORKER_POLL_SECONDS="0.05",
        # Far above what the rounds ask: the pacer's interval would be most of what is timed.
        TIKTOK_RATE_LIMIT_QPS="1000",
        TIKTOK_RATE_LIMIT_QPM="60000",
        WEBHOOK_URL=hook_url,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_CONCURRENCY=str(CONCURRENCY),
    )
    emulator_env = {
        "EMULATOR_APPS": json.dumps([emulator_app(env)]),
        "EMULATOR_ACCOUNTS": json.dumps([{"open_id": OPEN_ID, "display_name": "drip"}]),
        "EMULATOR_QPS": "0",
        "EMULATOR_QPM": "0",
        "EMULATOR_QPD": "0",
    }
    emulator = [sys.executable, "-m", "tiktok_auth_service", "emulator"]
    serve = [sys.executable, "-m", "tiktok_auth_service", "serve", "--workers", "1"]
    pg = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        with running(
            [*emulator, "--port", emulator_url.rsplit(":", 1)[1]],
            emulator_env,
            f"{emulator_url}/_emulator/clock",
        ):
            await connect_accounts(env, [OPEN_ID])
            await pg.execute("DELETE FROM webhook_delivery")  # connection.created: no baseline
            with running([*serve, "--port", str(port)], env, f"http://127.0.0.1:{port}/healthz"):
                await refresh_times(pg, 3, args.timeout, receiver)  # warm-up
                baseline, _ = await refresh_times(pg, args.rounds, args.timeout, receiver)
                await fill_outbox(pg, hook_url, 200)
                waiting = time.perf_counter()
                while receiver.holding == 0:
                    if time.perf_counter() - waiting > args.timeout:
                        raise SystemExit("the deliveries never reached the receiver")
                    await asyncio.sleep(0.01)  # until a delivery hangs on it
                try:
                    dripping, held = await refresh_times(pg, args.rounds, args.timeout, receiver)
                except Stalled as stall:
                    dripping, held = stall.seconds, float(receiver.holding)
                    stalled = True
                else:
                    stalled = False
                finally:
                    # A stalled worker stops only once its delivery ends, and the next one
                    # must not hang again.
                    server.close()
                    receiver.hang_up()
    finally:
        await pg.close()
        server.close()
    print(
        f"refresh by the worker, {args.rounds} rounds each "
        "(poll 0.05 s, TIKTOK_RATE_LIMIT_QPS=1000)"
    )
    print(summary("baseline (empty outbox)", baseline))
    if stalled:
        print(
            f"receiver dripping ({held:.0f} held): no refresh within {args.timeout:.0f} s"
            f" after {len(dripping)} rounds: the worker is stalled"
        )
        print(f"deliveries the receiver was sent meanwhile: {receiver.requests}")
        return False
    print(summary(f"receiver dripping ({held:.1f} held)", dripping))
    ratio = statistics.median(dripping) / statistics.median(baseline)
    print(f"dripping / baseline median refresh time: {ratio:.2f}")
    print(f"deliveries the receiver was sent meanwhile: {receiver.requests}")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        delayed_nothing = asyncio.run(measure(args, database_url))
    if not delayed_nothing:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
