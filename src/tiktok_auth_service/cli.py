"""The `tiktok-auth-service` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tiktok_auth_service import __version__, commands, errors
from tiktok_auth_service.config import (
    MULTIPROC_DIR_VARIABLE,
    ROTATION_BATCH_SIZE,
    ConfigError,
    load_dev_logging_settings,
    load_settings,
)
from tiktok_auth_service.server import configure_logging

log = logging.getLogger(__name__)


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """The directory where every server process keeps its metrics (prometheus-client's
    multiprocess mode), set in PROMETHEUS_MULTIPROC_DIR before the library is imported. The
    operator's directory is emptied of earlier runs' files first (the library requires
    that); without one, a fresh temporary directory is made and removed at the end."""
    if "prometheus_client" in sys.modules:
        # The library chose its in-memory value store at import: the files would stay empty.
        raise RuntimeError("metrics_directory() must run before prometheus_client is imported")
    given = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="tiktok-auth-metrics-"))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    try:
        yield path
    finally:
        del os.environ[MULTIPROC_DIR_VARIABLE]
        shutil.rmtree(path, ignore_errors=True)


def available_cpus() -> int:
    """The CPUs this process may use: its CPU affinity, capped by the cgroup's CPU quota (a
    container's `--cpus`), rounded up; what `serve` runs one process per by default."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return count if quota is None else max(1, min(count, math.ceil(quota)))


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (cgroup v2 `cpu.max`, or v1's
    CFS quota and period), None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return int(quota) / int(period)


def _since(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    def command(name: str, help: str) -> argparse.ArgumentParser:
        return subcommands.add_parser(name, help=help, description=help, formatter_class=_Formatter)

    parser = argparse.ArgumentParser(
        prog="tiktok-auth-service",
        description="OAuth token broker for TikTok API for Business. Settings come from the "
        "environment (and .env); see README.md.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = command("serve", "run the HTTP service (and the background worker)")
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve_cmd.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve_cmd.add_argument(
        "--workers",
        type=_positive,
        default=available_cpus(),
        metavar="N",
        help="server processes (default: %(default)s, one per CPU this container may use)",
    )

    command("migrate", "bring the database schema up to date")
    command("worker", "run only the background worker (refresh, liveness checks, revocations)")

    keys = command("api-keys", "manage the API keys of internal callers")
    key_subcommands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_subcommands.add_parser(
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
    key_subcommands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = key_subcommands.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name", help="the caller's name")

    audit = command("audit", "print the record of token reads, checks and revocations")
    audit.add_argument("--key", metavar="NAME", help="only this API key's")
    audit.add_argument("--subject", metavar="ID", help="only this advertiser id or open_id")
    audit.add_argument(
        "--since", type=_since, metavar="ISO8601", help="only from this time on (UTC if no zone)"
    )
    audit.add_argument("--limit", type=int, default=100, help="at most this many, newest first")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
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
        default=ROTATION_BATCH_SIZE,
        metavar="N",
        help="grants re-encrypted per transaction",
    )

    imported = command(
        "import-token",
        "store an advertiser token obtained outside OAuth (TikTok's sandbox shows its ad "
        "account's token on the app page), read from standard input or a prompt, never from "
        "the command line; TikTok must accept it for the advertiser",
    )
    imported.add_argument("advertiser_id", help="the advertiser (ad account) id it serves")
    imported.add_argument("--name", help="the advertiser's name, as shown to callers")

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


def _attach_values(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """`--account -000abc` as `--account=-000abc`: TikTok's open ids begin with "-", which
    argparse would otherwise take for an option of its own."""
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word in options:
            value = next(words, None)
            joined.append(word if value is None else f"{word}={value}")
        else:
            joined.append(word)
    return joined


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(_attach_values(argv, ("--account",)))
    if args.command in ("dev", "emulator"):
        # Development tools: configured by flags (and EMULATOR_* variables), not by Settings;
        # only LOG_LEVEL and LOG_FORMAT (default text) are read, from the environment.
        try:
            dev_logging = load_dev_logging_settings()
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        configure_logging(dev_logging, request_ids=args.command == "dev")
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
    try:
        if args.command == "serve":
            # Several processes share their metrics through files (prometheus-client's
            # multiprocess mode); one keeps them in memory, 5 us a token read cheaper. The
            # directory comes first: logging's request ids import the app's modules, and with
            # them prometheus-client.
            shared = args.workers > 1 or MULTIPROC_DIR_VARIABLE in os.environ
            with metrics_directory() if shared else contextlib.nullcontext():
                configure_logging(settings, request_ids=True)
                from tiktok_auth_service.server import serve

                serve(settings, args.host, args.port, args.workers)
            return 0
        configure_logging(settings)
        if args.command == "migrate":
            from tiktok_auth_service.db import migrate

            asyncio.run(
                migrate(
                    settings.database_url.get_secret_value(),
                    pgbouncer=settings.database_pgbouncer,
                )
            )
            print("database schema is up to date", file=sys.stderr)
        elif args.command == "worker":
            return commands.worker(settings)
        elif args.command == "api-keys":
            return commands.api_keys(settings, args)
        elif args.command == "audit":
            return commands.audit(settings, args)
        elif args.command == "rotate-keys":
            return commands.rotate_keys(settings, args)
        elif args.command == "import-token":
            return commands.import_token(settings, args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
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
