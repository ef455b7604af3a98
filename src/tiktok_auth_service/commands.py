"""The command-line commands that work on the service (`api-keys`, `audit`, `import-token`,
`rotate-keys`, `worker`): each opens it, does its job and prints for people (or, with
`--json`, machines)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.config import Settings
from tiktok_auth_service.ops.api_keys import ADVERTISER_ID

if TYPE_CHECKING:
    from tiktok_auth_service.service import Service


def _run_with_service(settings: Settings, use: Callable[[Service], Awaitable[int]]) -> int:
    # Imported here: a command that fails on its configuration should not pay for the imports.
    from tiktok_auth_service.service import open_service

    async def main() -> int:
        async with open_service(settings) as service:
            return await use(service)

    return asyncio.run(main())


def api_keys(settings: Settings, args: argparse.Namespace) -> int:
    async def use(service: Service) -> int:
        if args.keys_command == "create":
            created = await service.api_keys.create(
                args.name, args.advertiser or [], args.account or []
            )
            row = created.row
            scope = ", ".join(row.allowed_advertiser_ids + row.allowed_open_ids) or "all"
            print(
                f"API key for {args.name!r} ({scope}); shown once, store it now:", file=sys.stderr
            )
            print(created.key.get_secret_value())
        elif args.keys_command == "list":
            for row in await service.api_keys.list():
                state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
                if row.unrestricted:
                    advertisers = accounts = "*"
                else:
                    advertisers = ",".join(row.allowed_advertiser_ids) or "-"
                    accounts = ",".join(row.allowed_open_ids) or "-"
                print(
                    f"{row.name}\t{state}\tadvertisers={advertisers}\taccounts={accounts}\t"
                    f"created={row.created_at:%Y-%m-%dT%H:%M:%SZ}"
                )
        elif not await service.api_keys.revoke(args.name):
            print(f"no active API key named {args.name!r}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.name!r}", file=sys.stderr)
        return 0

    return _run_with_service(settings, use)


def audit(settings: Settings, args: argparse.Namespace) -> int:
    from tiktok_auth_service.repository import read_access

    async def use(service: Service) -> int:
        records = await read_access(
            service.db,
            caller=args.key,
            subject=args.subject,
            since=args.since,
            limit=args.limit,
        )
        for record in records:
            if args.json:
                print(json.dumps({**record._asdict(), "at": record.at.isoformat()}))
            else:
                took = "-" if record.duration_ms is None else f"{record.duration_ms:.1f}ms"
                print(
                    f"{record.at:%Y-%m-%dT%H:%M:%S.%fZ}\t{record.caller or '-'}\t"
                    f"{record.action}\t{record.subject}\t{record.outcome}\t"
                    f"{record.request_id or '-'}\t{record.tiktok_request_id or '-'}\t{took}"
                )
        return 0

    return _run_with_service(settings, use)


def _read_token() -> str:
    """The token from a prompt that does not echo it, or the first line of standard input
    when that is not a terminal (a pipe, a file): never an argument, which `ps` would show."""
    if sys.stdin.isatty():
        return getpass.getpass("access token: ").strip()
    return sys.stdin.readline().strip()


def import_token(settings: Settings, args: argparse.Namespace) -> int:
    """Exit status 2 when no token was given, 1 when TikTok refused it."""
    if not re.fullmatch(ADVERTISER_ID, args.advertiser_id):
        raise errors.InvalidRequest(f"{args.advertiser_id!r} is not an advertiser id")
    token = _read_token()
    if not token:
        print("error: no access token on standard input", file=sys.stderr)
        return 2

    async def use(service: Service) -> int:
        served = await service.authorization.import_advertiser_token(
            args.advertiser_id, SecretStr(token), args.name
        )
        where = "sandbox" if settings.tiktok_sandbox else "production"
        print(
            f"token stored ({where}); it serves advertiser {', '.join(served) or 'none'}",
            file=sys.stderr,
        )
        return 0

    return _run_with_service(settings, use)


def rotate_keys(settings: Settings, args: argparse.Namespace) -> int:
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


def worker(settings: Settings) -> int:
    async def use(service: Service) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await asyncio.gather(service.worker.run(stop), service.webhooks.run(stop))
        return 0

    return _run_with_service(settings, use)
