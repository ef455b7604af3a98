"""What `serve` bounds by itself against slow and idle clients, on a real `serve` process: the
time a connection may take to send its request's headers (or stay idle between requests),
the connections one server process holds at once, and the open file limit it raises."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fixtures import APP_SECRET, KEYS
from tests.helpers import free_port, spawn_serve
from tiktok_auth_service.config import ConfigError, Settings
from tiktok_auth_service.server import connection_cap

# Every wait on the server in this module; none of them is what a test measures.
BOUND = 30.0


def proc(path: str) -> str:
    """A file of /proc (small, read at once)."""
    return Path("/proc", path).read_text()


@dataclass
class Served:
    port: int
    pid: int  # the process that serves: the one child of `serve`
    stderr: list[bytes] = field(default_factory=list)  # once `serve` has exited


@asynccontextmanager
async def serving(
    database_url: str,
    settings: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> AsyncIterator[Served]:
    """`serve --workers 1` with `settings`, until the block ends."""
    port = free_port()
    env = {
        "TIKTOK_APP_ID": "app",
        "TIKTOK_APP_SECRET": APP_SECRET,
        "TIKTOK_REDIRECT_URI": "https://broker.example/callback",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": KEYS,
        "WORKER_ENABLED": "false",
        **(settings or {}),
    }
    process = await spawn_serve(port, 1, env, preexec_fn=preexec_fn)
    assert process.stderr is not None
    output = asyncio.create_task(process.stderr.read())
    served: Served | None = None
    try:
        async with asyncio.timeout(60), httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    assert not output.done(), "serve exited during start-up"
                await asyncio.sleep(0.1)  # polling a condition, bounded by the timeout
        (child,) = proc(f"{process.pid}/task/{process.pid}/children").split()
        served = Served(port, int(child))
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(BOUND):
            await process.wait()
        lines = (await output).splitlines()
        if served is not None:
            served.stderr = lines


async def request(
    port: int, close: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A new connection with one GET /healthz written on it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
    writer.write(b"Connection: close\r\n\r\n" if close else b"\r\n")
    await writer.drain()
    return reader, writer


async def answer(reader: asyncio.StreamReader) -> bytes:
    """One response's head (up to its blank line) and its body, as /healthz sends it."""
    async with asyncio.timeout(BOUND):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head + await reader.readexactly(length)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    received = b""
    async with asyncio.timeout(BOUND):
        try:
            while chunk := await reader.read(4096):
                received += chunk
        except ConnectionResetError:
            pass
    return received


class TestHeaderReadTimeout:
    async def test_headers_never_finished_close_the_connection(self, migrated: str) -> None:
        async with serving(migrated, {"HEADER_READ_TIMEOUT_SECONDS": "1"}) as served:
            port = served.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
            # One header line more whenever the server has said nothing for a while: the
            # drip must not keep the connection alive.
            received = b""
            async with asyncio.timeout(BOUND):
                while True:
                    try:
                        async with asyncio.timeout(0.2):
                            chunk = await reader.read(4096)
                    except TimeoutError:
                        writer.write(b"X-Slow: 1\r\n")
                        continue
                    except ConnectionResetError:
                        break
                    if not chunk:
                        break
                    received += chunk
            writer.close()
            # Closed without an answer from the app: at most the server's own 4xx.
            assert received == b"" or received.startswith(b"HTTP/1.1 4"), received

    async def test_an_idle_connection_is_closed(self, migrated: str) -> None:
        async with serving(migrated, {"HEADER_READ_TIMEOUT_SECONDS": "1"}) as served:
            port = served.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await closed_by_server(reader) == b""
            writer.close()

    async def test_an_idle_keep_alive_connection_is_closed(self, migrated: str) -> None:
        async with serving(migrated, {"HEADER_READ_TIMEOUT_SECONDS": "1"}) as served:
            port = served.port
            reader, writer = await request(port)
            assert (await answer(reader)).startswith(b"HTTP/1.1 200")
            assert await closed_by_server(reader) == b""
            writer.close()


class TestConnectionCap:
    async def test_past_the_cap_a_connection_waits_while_the_held_ones_are_served(
        self, migrated: str
    ) -> None:
        async with serving(
            migrated, {"MAX_CONNECTIONS": "2", "HEADER_READ_TIMEOUT_SECONDS": "60"}
        ) as served:
            port = served.port
            held = [await request(port) for _ in range(2)]
            for reader, _ in held:
                assert (await answer(reader)).startswith(b"HTTP/1.1 200")
            waiting, waiting_writer = await request(port, close=True)
            # A held connection is still served; the one past the cap is not, until a held
            # one closes.
            first_reader, first_writer = held[0]
            first_writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            assert (await answer(first_reader)).startswith(b"HTTP/1.1 200")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await waiting.read(1)
            first_writer.close()
            assert (await answer(waiting)).startswith(b"HTTP/1.1 200")
            for _, writer in [*held[1:], (waiting, waiting_writer)]:
                writer.close()

    @pytest.mark.parametrize(
        ("soft_limit", "cap"),
        [(1_048_576, 10_000), (20_000, 10_000), (4096, 4096 - 287), (1024, 1024 - 287)],
    )
    def test_the_cap_leaves_room_for_the_process_own_files(
        self, settings: Settings, soft_limit: int, cap: int
    ) -> None:
        """10,000 by default; below the open file limit, the database pools (writes: pool and
        overflow; reads), the LISTEN connection and 256 more for TikTok's and the webhooks'
        connections, logs and the runtime stay free."""
        assert settings.max_connections == 10_000 and settings.database_pool_size == 10
        assert connection_cap(settings, soft_limit) == cap

    def test_a_limit_too_low_for_any_connection_is_refused(self, settings: Settings) -> None:
        with pytest.raises(ConfigError, match="RLIMIT_NOFILE"):
            connection_cap(settings, 200)


async def test_serve_raises_its_open_file_limit_to_the_hard_limit(migrated: str) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = (256, min(hard, 4096))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, low)

    async with serving(migrated, preexec_fn=limit) as served:
        limits = proc(f"{served.pid}/limits")
        (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert line.split()[3:5] == [str(low[1]), str(low[1])], line


@pytest.mark.parametrize(("allowed", "client"), [(None, "203.0.113.7"), ("192.0.2.1", "127.0.0.1")])
async def test_forwarded_for_is_believed_from_the_allowed_proxies_only(
    migrated: str, allowed: str | None, client: str
) -> None:
    """X-Forwarded-For names the client in the access log when the peer is one of
    FORWARDED_ALLOW_IPS (loopback by default), and is ignored from any other peer."""
    settings = {"LOG_FORMAT": "json"}
    if allowed is not None:
        settings["FORWARDED_ALLOW_IPS"] = allowed
    async with serving(migrated, settings) as served:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as http:
            missing = await http.get("/no-such-page", headers={"X-Forwarded-For": "203.0.113.7"})
        assert missing.status_code == 404
    records = [json.loads(line) for line in served.stderr if line.startswith(b"{")]
    (logged,) = [r for r in records if r.get("path") == "/no-such-page"]
    assert logged["client"] == client
