"""What the gateway's upstream hop costs with each HTTP client, in one process, against the
emulator (issue 19's added-latency target; docs/performance.md says what was chosen and why).

    uv run --with aiohttp python bench/gateway_clients.py [--calls 3000] [--seconds 3]

Starts the emulator as bench/gateway.py does (no limits) and asks its GET advertiser/info/
with each client below, on uvloop: one call after another (p50 and mean of `--calls`, what one
proxied call waits), then 64 callers at once for `--seconds` (calls a second). Rounds are
interleaved, twice.

    httpx client     what the gateway did before: AsyncClient.build_request + send(stream)
    httpx transport  what it does now: httpx.Request straight to an AsyncHTTPTransport
    aiohttp          a ClientSession (only with `--with aiohttp`: not a dependency)
    raw socket       one kept-alive connection, the request written by hand: a floor, no
                     client (sequential only)

The pool limits are the service's (50 connections, 20 kept alive); `transport 50/50` keeps
all 50 alive, to show what that does under load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import uvloop
from gateway import BENCH, QUERY, TOKEN
from running import APP_ID, free_port, running

PATH = f"/open_api/v1.3/advertiser/info/?{QUERY}"
HEADERS = [(b"access-token", TOKEN.encode()), (b"accept-encoding", b"identity")]
TIMEOUT = {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 10.0}
Call = Callable[[], Awaitable[None]]
_CLOSE: list[Callable[[], Awaitable[None]]] = []  # what measure() closes once done


def httpx_client(url: str) -> Call:
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20)
    )

    async def call() -> None:
        request = client.build_request("GET", url, headers=HEADERS, timeout=httpx.Timeout(10.0))
        response = await client.send(request, stream=True)
        b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()

    return call


def httpx_transport(url: str, keep_alive: int) -> Call:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=keep_alive)
    transport = httpx.AsyncHTTPTransport(limits=limits)

    async def call() -> None:
        request = httpx.Request("GET", url, headers=HEADERS, extensions={"timeout": TIMEOUT})
        response = await transport.handle_async_request(request)
        b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()

    return call


def aiohttp_session(url: str) -> Call | None:
    try:
        import aiohttp
    except ImportError:
        return None
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50), auto_decompress=False)
    _CLOSE.append(session.close)
    headers = {name.decode(): value.decode() for name, value in HEADERS}

    async def call() -> None:
        async with session.get(url, headers=headers) as response:
            await response.read()

    return call


def raw_socket(port: int) -> Call:
    request = (
        f"GET {PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccess-token: {TOKEN}\r\n"
        "accept-encoding: identity\r\n\r\n"
    ).encode()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def call() -> None:
        if not held or time.monotonic() - held[0][2] > 2:  # the server's keep-alive is 5 s
            held[:] = [(*await asyncio.open_connection("127.0.0.1", port), 0.0)]
        reader, writer, _ = held[0]
        held[0] = (reader, writer, time.monotonic())
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)

    return call


async def one_after_another(call: Call, calls: int) -> tuple[float, float]:
    for _ in range(min(300, calls)):
        await call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, statistics.mean(times) * 1000


async def at_once(call: Call, seconds: float, callers: int = 64) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / seconds


async def measure(port: int, calls: int, seconds: float) -> None:
    url = f"http://127.0.0.1:{port}{PATH}"
    clients: dict[str, Call | None] = {
        "httpx client": httpx_client(url),
        "httpx transport": httpx_transport(url, 20),
        "aiohttp": aiohttp_session(url),
    }
    concurrent = {**clients, "transport 50/50": httpx_transport(url, 50)}
    sequential = {**clients, "raw socket": raw_socket(port)}
    for _ in range(2):
        for name, call in sequential.items():
            if call is not None:
                p50, mean = await one_after_another(call, calls)
                print(f"one after another  {name:<16} p50 {p50:6.3f} ms  mean {mean:6.3f} ms")
        for name, call in concurrent.items():
            if call is not None:
                rate = await at_once(call, seconds)
                print(f"64 at once         {name:<16} {rate:8.0f} calls/s", flush=True)
    for close in _CLOSE:
        await close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    port = free_port()
    app = {
        "app_id": APP_ID,
        "secret": "unused",
        "redirect_uris": ["http://127.0.0.1:1/callback"],
        "account_redirect_uri": "http://127.0.0.1:1/callback",
        "scopes": [4],
    }
    child = (
        f"import sys; sys.path.insert(0, {BENCH!r}); import gateway; "
        f"gateway.serve_emulator({port}, {app!r}, 0)"
    )
    with running([sys.executable, "-c", child], {}, f"http://127.0.0.1:{port}/_emulator/clock"):
        uvloop.run(measure(port, args.calls, args.seconds))


if __name__ == "__main__":
    main()
