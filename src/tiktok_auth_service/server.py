"""`serve`: the HTTP service in N processes, on granian.

granian (an HTTP server written in Rust, on hyper) bounds what slow and idle clients may hold
without help from a proxy: a connection that has not sent a whole request head
HEADER_READ_TIMEOUT_SECONDS after it opened or after its last answer is closed (dripping one
header line at a time does not keep it), and each process accepts at most MAX_CONNECTIONS at
once (the rest wait in the listen backlog until one closes). Its supervisor starts the
processes, replaces one that dies and stops them all on SIGTERM or SIGINT.

`configure_logging` is here, below the command line, because each of those processes sets up
its logging itself; the command line calls it for every other command too.
"""

from __future__ import annotations

import logging
import math
import resource
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tiktok_auth_service.config import ConfigError, LoggingSettings, Settings

if TYPE_CHECKING:
    from granian.server.mp import MPServer

log = logging.getLogger(__name__)

# Open files a server process needs besides its clients' connections, past its database
# pools: the TikTok and webhook clients' connections, logs, metrics files, the runtime's own.
OTHER_FILES = 256
# SQLAlchemy's pool opens up to this many connections past DATABASE_POOL_SIZE (its default).
POOL_OVERFLOW = 10
# granian's own loggers: through the handler the command configured (and LOG_FORMAT).
GRANIAN_LOGGING: dict[str, Any] = {
    "handlers": {},
    "loggers": {
        "_granian": {"propagate": True},
        "granian.access": {"propagate": True},
    },
}


def connection_cap(settings: Settings, open_file_limit: int) -> int:
    """The connections one server process may hold at once: MAX_CONNECTIONS, lowered to
    leave its database connections (both pools, the LISTEN connection) and OTHER_FILES free
    under `open_file_limit`."""
    reserved = 2 * settings.database_pool_size + POOL_OVERFLOW + 1 + OTHER_FILES
    room = open_file_limit - reserved
    if room < 1:
        raise ConfigError(
            f"the open file limit (RLIMIT_NOFILE, {open_file_limit}) leaves no room for "
            f"connections: a server process needs {reserved} files besides them "
            "(raise it with `ulimit -n`, or lower DATABASE_POOL_SIZE)"
        )
    return min(settings.max_connections, room)


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (the server processes
    inherit it); the soft limit now. Many systems start services at a soft limit of 1024,
    far below the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def http_server(settings: Settings, host: str, port: int, workers: int) -> MPServer:
    """The granian server `serve` runs, its processes' limits set from `settings`."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.mp import MPServer

    open_files = raise_open_file_limit()
    cap = connection_cap(settings, open_files)
    if cap < settings.max_connections:
        log.warning(
            "each server process holds at most %d connections, not MAX_CONNECTIONS=%d: the "
            "open file limit is %d",
            cap,
            settings.max_connections,
            open_files,
        )
    # No access log of granian's: request URLs of /callback carry TikTok's single-use auth
    # code (the app writes its own, without query strings). On a signal each process stops
    # accepting, answers the requests in flight, then shuts the app down; one still running
    # a lease's length after the signal (one TikTok call with its retries, and 30 s) is
    # killed, so the stop is bounded.
    return MPServer(
        "tiktok_auth_service.server:server_process_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        http=HTTPModes.http1,
        websockets=False,
        backpressure=cap,
        http1_settings=HTTP1Settings(
            header_read_timeout=settings.header_read_timeout_seconds * 1000
        ),
        log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=GRANIAN_LOGGING,
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=math.ceil(settings.lease_seconds),
    )


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Run the HTTP service in `workers` processes until SIGTERM or SIGINT; returns once
    they have all stopped. Call inside `metrics_directory()`, after configuring logging.
    Ends with status 1 when a process keeps dying (the database unreachable at start-up,
    say)."""
    http_server(settings, host, port, workers).serve()


def configure_logging(settings: LoggingSettings, *, request_ids: bool = False) -> None:
    """Our own loggers at LOG_LEVEL, libraries (alembic, uvicorn, ...) only when they warn, in
    LOG_FORMAT; `request_ids`: records logged while serving a request carry its id."""
    from tiktok_auth_service import logs

    filters: list[logging.Filter] = []
    if request_ids:
        from tiktok_auth_service.api.observability import request_id_filter

        filters.append(request_id_filter())
    logs.configure(settings.log_level, settings.log_format, filters)


def server_process_app() -> Callable[..., Awaitable[None]]:
    """The app of one of `serve`'s processes (granian calls this in each). The settings come
    from the same environment the supervisor checked them in. X-Forwarded-For and
    X-Forwarded-Proto are taken from FORWARDED_ALLOW_IPS only."""
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    from tiktok_auth_service.app import create_app
    from tiktok_auth_service.config import load_settings

    settings = load_settings()
    configure_logging(settings, request_ids=True)
    app = create_app(settings, freeze_after_startup=True)
    return wrap_asgi_with_proxy_headers(app, settings.forwarded_allow_ips)  # type: ignore[no-any-return]
