"""Database faults for tests: a PostgreSQL of the test's own that can be stopped and started,
and a TCP proxy in front of it that passes, slows, cuts or swallows the traffic.

The embedded server listens on a Unix socket only; the proxy listens on loopback TCP and opens
one socket connection upstream for each client, so the service reaches the database through
it as it would over a network."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.db import migrate


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class DatabaseProxy:
    """Forwards loopback TCP connections to PostgreSQL's Unix socket, in one of four modes:

    * pass: bytes flow as they come;
    * delay: each chunk, either way, waits `latency` seconds first;
    * cut: every open connection is reset and each new one is reset as soon as accepted;
    * blackhole: connections are accepted (and kept) but nothing is forwarded either way,
      as in a network partition; what was held flows again when the mode returns to pass.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.latency = 0.0
        self.delayed = 0  # chunks that waited `latency`
        self._cut = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def passthrough(self) -> None:
        self.latency, self._cut = 0.0, False
        self._flowing.set()

    def delay(self, latency: float) -> None:
        self.passthrough()
        self.latency = latency

    def cut(self) -> None:
        self._cut = True
        self._flowing.set()  # held chunks and connections go nowhere: their links are reset
        for link in list(self._links):
            link.abort()
        self._links.clear()

    def blackhole(self) -> None:
        self.passthrough()
        self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a blackhole accepts, then holds the connection
            if link not in self._links or self._cut:
                return
            upstream, link.upstream = await asyncio.open_unix_connection(self.socket_path)
            if link not in self._links:
                return
            await asyncio.gather(
                self._pump(reader, link.upstream, link), self._pump(upstream, writer, link)
            )
        except OSError:
            pass  # the server is down: the client sees its connection reset
        finally:
            link.abort()
            self._links.discard(link)
            self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                await self._flowing.wait()
                if self.latency:
                    self.delayed += 1
                    await asyncio.sleep(self.latency)
                if link not in self._links:
                    return
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            link.abort()  # one side is gone: so is the other


@contextlib.asynccontextmanager
async def database_proxy(socket_path: Path) -> AsyncIterator[DatabaseProxy]:
    proxy = DatabaseProxy(socket_path)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@dataclass
class RestartableDatabase:
    """A migrated PostgreSQL of the test's own (see `restartable_database`)."""

    url: str
    socket_path: Path
    restart: Callable[[Callable[[], Awaitable[Any]]], Awaitable[None]]


def _socket_path(url: str) -> Path:
    return Path(unquote(url.rsplit("host=", 1)[1])) / ".s.PGSQL.5432"


@contextlib.asynccontextmanager
async def restartable_database() -> AsyncIterator[RestartableDatabase]:
    """A migrated PostgreSQL of the test's own, with a `restart(down)` that stops it, awaits
    `down()` while it is stopped, and starts it again on the same data."""
    # Not under pytest's base temporary directory: as root the server runs as another user,
    # and pytest makes that directory private again whenever another session starts.
    folder = Path(tempfile.mkdtemp(prefix="tas-pg-"))
    servers = contextlib.ExitStack()

    # pg_ctl runs in a thread: the service and its callers share this event loop, and must
    # not stand still while the server stops and starts.
    async def restart(down: Callable[[], Awaitable[Any]]) -> None:
        await asyncio.to_thread(servers.close)  # stopped: the service's connections break
        await down()
        # The old postmaster may still be finishing its shutdown (a loaded machine): starting
        # a new one before its pid file is gone would find it "stopping".
        pid_file = folder / "pgdata" / "postmaster.pid"
        deadline = time.monotonic() + 30
        while pid_file.exists():
            assert time.monotonic() < deadline, "PostgreSQL did not finish stopping"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(servers.enter_context, embedded_postgres(folder))

    try:
        url = servers.enter_context(embedded_postgres(folder))
        await migrate(url)
        yield RestartableDatabase(url, _socket_path(url), restart)
    finally:
        servers.close()
        shutil.rmtree(folder, ignore_errors=True)
