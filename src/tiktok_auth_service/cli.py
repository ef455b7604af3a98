"""The `tiktok-auth-service` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tiktok_auth_service import __version__, errors
from tiktok_auth_service.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from tiktok_auth_service.service import Service


def _configure_logging(level: str) -> None:
    """Our own loggers at `level`; libraries (alembic, pgserver, ...) only when they warn."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("tiktok_auth_service").setLevel(level.upper())


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from tiktok_auth_service.app import create_app

    # Access logs are off: request URLs of /callback carry TikTok's single-use auth code.
    uvicorn.run(
        create_app(settings, freeze_after_startup=True),
        host=host,
        port=port,
        access_log=False,
        log_level=settings.log_level.lower(),
    )


def _run_with_service(settings: Settings, use: Callable[[Service], Awaitable[int]]) -> int:
    # Imported here: a command that fails on its configuration should not pay for the imports.
    from tiktok_auth_service.service import open_service

    async def main() -> int:
        async with open_service(settings) as service:
            return await use(service)

    return asyncio.run(main())


def _api_keys(settings: Settings, args: argparse.Namespace) -> int:
    async def use(service: Service) -> int:
        if args.keys_command == "create":
            created = await service.api_keys.create(
                args.name, args.advertiser or [], args.account or []
            )
            client = created.client
            scope = ", ".join(client.allowed_advertiser_ids + client.allowed_open_ids) or "all"
            print(
                f"API key for {args.name!r} ({scope}); shown once, store it now:", file=sys.stderr
            )
            print(created.key.get_secret_value())
        elif args.keys_command == "list":
            for client in await service.api_keys.list():
                state = f"revoked {client.revoked_at:%Y-%m-%d}" if client.revoked_at else "active"
                if client.unrestricted:
                    advertisers = accounts = "*"
                else:
                    advertisers = ",".join(client.allowed_advertiser_ids) or "-"
                    accounts = ",".join(client.allowed_open_ids) or "-"
                print(
                    f"{client.name}\t{state}\tadvertisers={advertisers}\taccounts={accounts}\t"
                    f"created={client.created_at:%Y-%m-%dT%H:%M:%SZ}"
                )
        elif not await service.api_keys.revoke(args.name):
            print(f"no active API key named {args.name!r}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.name!r}", file=sys.stderr)
        return 0

    return _run_with_service(settings, use)


def _rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 0 when every grant ends up sealed with the current key, 1 otherwise."""

    async def use(service: Service) -> int:
        rotation = service.key_rotation
        if not args.check:
            result = await rotation.rotate(
                args.batch_size,
                lambda total: print(f"re-sealed {total:,} grants so far", file=sys.stderr),
            )
            current = service.sealer.current_key_id
            print(f"re-sealed {result.resealed:,} grants with key {current}")
            if result.unreadable:
                print(
                    f"{len(result.unreadable):,} grants do not open with the configured keys "
                    "and were left as they are (their ids are logged)"
                )
            if result.busy:
                print(f"{result.busy:,} grants stayed locked by other work; run it again")
            if not result.complete:
                return 1
        census = await rotation.census()
        for key_id, grants in census.grants.items():
            note = ""
            if key_id == census.current_key_id:
                note = " (current: seals new tokens)"
            elif key_id in census.unconfigured:
                note = " (NOT CONFIGURED: these tokens cannot be read)"
            print(f"{key_id}: {grants:,} grants{note}")
        if census.pending:
            print(
                f"{census.pending:,} grants are not sealed with {census.current_key_id}: "
                "run rotate-keys before removing any other key"
            )
            return 1
        print(f"every grant is sealed with {census.current_key_id}: the other keys can go")
        return 0

    return _run_with_service(settings, use)


def _worker(settings: Settings) -> int:
    async def use(service: Service) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await service.worker.run(stop)
        return 0

    return _run_with_service(settings, use)


def _parser() -> argparse.ArgumentParser:
    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, formatter_class=_Formatter)

    parser = argparse.ArgumentParser(
        prog="tiktok-auth-service",
        description="OAuth token broker for TikTok API for Business. Settings come from the "
        "environment (and .env); see README.md.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = command("serve", "run the HTTP service (and the background worker)")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve_cmd.add_argument("--port", type=int, default=8000, help="port to listen on")

    command("migrate", "bring the database schema up to date")
    command("worker", "run only the background worker (refresh, liveness checks, revocations)")

    keys = command("api-keys", "manage the API keys of internal callers")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser(
        "create", help="create a key (printed once)", formatter_class=_Formatter
    )
    create.add_argument("name", help="a unique name for the caller")
    create.add_argument(
        "--advertiser",
        action="append",
        metavar="ID",
        help="restrict the key to this advertiser (repeatable; default: every advertiser "
        "and account)",
    )
    create.add_argument(
        "--account",
        action="append",
        metavar="OPEN_ID",
        help="restrict the key to this TikTok account (repeatable)",
    )
    key_commands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name", help="the caller's name")

    rotate = command(
        "rotate-keys",
        "re-encrypt every stored token with the first key of TOKEN_ENCRYPTION_KEYS (online, "
        "resumable); exit status 0 once every grant uses it",
    )
    rotate.add_argument(
        "--check",
        action="store_true",
        help="change nothing: count the grants each key id seals",
    )
    rotate.add_argument(
        "--batch-size",
        type=_positive,
        default=500,
        metavar="N",
        help="grants re-encrypted per transaction",
    )

    dev = command("dev", "local stack: embedded PostgreSQL + TikTok emulator + service")
    dev.add_argument("--host", default="127.0.0.1", help="address the stack listens on")
    dev.add_argument("--port", type=int, default=8000, help="the service's port")
    dev.add_argument("--emulator-port", type=int, default=8900, help="the emulator's port")
    dev.add_argument(
        "--data-dir", type=Path, default=Path(".dev-data"), help="where the stack keeps its data"
    )

    emulator = command("emulator", "run only the TikTok emulator (EMULATOR_* variables)")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulator.add_argument("--port", type=int, default=8900, help="port to listen on")
    return parser


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (argparse's own formatter, named once)."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("dev", "emulator"):
        # Development tools: configured by flags (and EMULATOR_* variables), not by Settings.
        _configure_logging("INFO")
        try:
            if args.command == "dev":
                from tiktok_auth_dev import stack

                return stack.main(args.data_dir, args.host, args.port, args.emulator_port)
            else:
                from tiktok_emulator import EmulatorConfig
                from tiktok_emulator import serve as serve_emulator

                serve_emulator(EmulatorConfig.from_env(), args.host, args.port)
        except ModuleNotFoundError as exc:
            if exc.name not in ("tiktok_auth_dev", "tiktok_emulator"):
                raise
            print(
                f"error: '{args.command}' is development tooling, only in a source checkout "
                "(git clone, then `uv run tiktok-auth-service dev`)",
                file=sys.stderr,
            )
            return 2
        return 0
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    try:
        if args.command == "serve":
            serve(settings, args.host, args.port)
        elif args.command == "migrate":
            from tiktok_auth_service.db import migrate

            asyncio.run(
                migrate(
                    settings.database_url.get_secret_value(),
                    pgbouncer=settings.database_pgbouncer,
                )
            )
            print("database schema is up to date", file=sys.stderr)
        elif args.command == "worker":
            return _worker(settings)
        elif args.command == "api-keys":
            return _api_keys(settings, args)
        elif args.command == "rotate-keys":
            return _rotate_keys(settings, args)
    except errors.ServiceError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except Exception as exc:
        from tiktok_auth_service.db import lost_connection

        if not lost_connection(exc):
            raise
        # One line, not a traceback: the usual cause is a wrong DATABASE_URL or a server down.
        print(f"error: the database is unreachable ({type(exc).__name__})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
