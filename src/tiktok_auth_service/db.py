"""Database resources: the SQLAlchemy engine for the write paths, a bare asyncpg pool for the
token read (the hot path), and migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from uuid import uuid4

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# What a lost, restarting, unreachable or exhausted database raises, through asyncpg directly
# or through SQLAlchemy (which wraps asyncpg's errors in DBAPIError: see `lost_connection`).
# The API answers these with 503 rather than 500.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # AdminShutdownError, CannotConnectNowError, CrashShutdownError: a server going down.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    # A connection broken mid-protocol ("cannot switch to state ...").
    asyncpg.exceptions.InternalClientError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # the write pool stayed exhausted for its whole timeout
)


# Everything the database layer raises; `lost_connection` tells which of these mean the database
# is unreachable (SQLAlchemy wraps a lost connection in whatever DBAPIError fits its message).
DATABASE_ERRORS: tuple[type[Exception], ...] = (sa_exc.SQLAlchemyError, asyncpg.PostgresError)


def lost_connection(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) means the database is unreachable, not that a
    statement was wrong."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CONNECTION_ERRORS):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and getattr(seen, "connection_invalidated", False):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def asyncpg_dsn(url: str) -> str:
    """DATABASE_URL (SQLAlchemy's `postgresql+asyncpg://`) as asyncpg itself takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _engine_arguments(pgbouncer: bool) -> dict[str, Any]:
    """`create_async_engine` arguments for a server behind PgBouncer in transaction pooling mode.

    There a client connection hops between server connections from one transaction to the
    next, so prepared statements must neither be reused across transactions nor collide by
    name with another client's on the same server connection ("prepared statement
    \"__asyncpg_stmt_1__\" already exists" / "does not exist"). SQLAlchemy's documented recipe
    (dialects/postgresql/asyncpg: "Prepared Statement Name with PGBouncer"): no statement
    caches and unique statement names. SQLAlchemy already runs every statement inside an
    explicit transaction, so a statement is prepared and executed on one server connection."""
    if not pgbouncer:
        return {}
    return {
        "connect_args": {
            "prepared_statement_cache_size": 0,  # SQLAlchemy's own cache of prepared statements
            "statement_cache_size": 0,  # asyncpg's (the dialect's set-up queries use it)
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__",
        }
    }


async def _no_session_state(connection: asyncpg.Connection) -> None:
    """The read pool only runs single SELECTs, which leave no session state behind, so the
    default reset (a query per release, one more round trip per token read) is skipped."""


class Database:
    """Owns the engine, the session factory and the hot-path pool; created by the lifespan."""

    def __init__(self, engine: AsyncEngine, pool: asyncpg.Pool, timeout: float) -> None:
        self.engine = engine
        self.pool = pool
        self.timeout = timeout
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        pgbouncer: bool = False,
        timeout_seconds: float = 5.0,
    ) -> Database:
        """`timeout_seconds` bounds each wait on the database: for a connection to be opened,
        for one from a full pool, for each statement. A database that stops answering (a
        network partition, a server stuck on start-up) then costs a request seconds, not
        forever."""
        arguments = _engine_arguments(pgbouncer)
        connect_args = {"timeout": timeout_seconds, "command_timeout": timeout_seconds}
        arguments["connect_args"] = connect_args | arguments.get("connect_args", {})
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            pool_pre_ping=True,
            pool_timeout=timeout_seconds,
            **arguments,
        )
        # Behind PgBouncer asyncpg must not cache named prepared statements (asyncpg's FAQ):
        # with the cache off each query uses the unnamed statement, parsed and executed before
        # a single Sync, so within one PgBouncer transaction and one server connection.
        no_cache: dict[str, Any] = {"statement_cache_size": 0} if pgbouncer else {}
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url),
            min_size=1,
            max_size=pool_size,
            reset=_no_session_state,
            **connect_args,
            **no_cache,
        )
        return cls(engine, pool, timeout_seconds)

    def session(self) -> AsyncSession:
        return self.sessions()

    def acquire(self) -> Any:
        """`async with` a connection of the hot-path pool, waited for at most the timeout
        (asyncpg's own default is to wait for ever)."""
        return self.pool.acquire(timeout=self.timeout)

    def pool_connections(self) -> dict[str, tuple[int, int]]:
        """(in use, idle) connections of each pool: `read` (asyncpg) and `write` (SQLAlchemy).
        Counters kept by the pools themselves: no query, no await."""
        size, idle = self.pool.get_size(), self.pool.get_idle_size()
        write: Any = self.engine.pool
        return {"read": (size - idle, idle), "write": (write.checkedout(), write.checkedin())}

    async def close(self) -> None:
        await self.pool.close()
        await self.engine.dispose()


@asynccontextmanager
async def listening(
    url: str,
    channel: str,
    on_notify: Callable[[str], None],
    on_lost: Callable[[], None],
    *,
    application_name: str,
    heartbeat_seconds: float,
) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    """A connection of its own LISTENing on `channel`, calling `on_notify(payload)` for each
    notification and `on_lost()` if the server ends it. Yields a heartbeat: a query answered
    within `heartbeat_seconds` (raising otherwise), which also means every notification sent
    before it has arrived. Closed on exit."""
    connection = await asyncpg.connect(
        asyncpg_dsn(url),
        timeout=heartbeat_seconds * 5,
        server_settings={"application_name": application_name},
    )
    try:
        connection.add_termination_listener(lambda _: on_lost())
        await connection.add_listener(channel, lambda *args: on_notify(args[3]))

        async def heartbeat() -> object:
            if connection.is_closed():
                raise asyncpg.ConnectionDoesNotExistError("the connection was closed")
            return await connection.fetchval("SELECT 1", timeout=heartbeat_seconds)

        yield heartbeat
    finally:
        connection.terminate()


async def migrate(url: str, revision: str = "head", *, pgbouncer: bool = False) -> None:
    """Bring the schema up to `revision` (the service never creates tables by itself).
    `pgbouncer`: `url` is PgBouncer in transaction pooling mode (see `Database.connect`)."""
    # Imported here: alembic costs a second of start-up that only this command needs.
    from alembic import command
    from alembic.config import Config

    engine = create_async_engine(url, **_engine_arguments(pgbouncer))

    def upgrade(connection: Connection) -> None:
        # The Alembic scripts are a resource of this package wherever it is installed: the wheel
        # carries alembic/ as tiktok_auth_service/migrations ([tool.hatch.build] in
        # pyproject.toml); in a source checkout that path is a symlink to alembic/.
        scripts = resources.files("tiktok_auth_service") / "migrations"
        if not scripts.joinpath("env.py").is_file():
            # Alembic would only say "Path doesn't exist ... use the 'init' command".
            raise FileNotFoundError(f"no Alembic migrations in the installed package at {scripts}")
        # as_file hands Alembic a real directory even if the package is not on a file system.
        with resources.as_file(scripts) as location:
            config = Config()
            config.set_main_option("script_location", str(location))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade)
    finally:
        await engine.dispose()
