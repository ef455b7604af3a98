"""`tiktok-auth-service dev` as a newcomer meets it: a taken port is one line, the stack's
settings are written for other commands, a restart forgets grants the new emulator would
refuse, and SIGTERM stops everything, PostgreSQL included."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures import Canaries
from tiktok_auth_dev.embedded_postgres import embedded_postgres

# Whole `dev` stacks in subprocesses: among the long runs.
pytestmark = pytest.mark.slow

BANNER_END = "Press Ctrl-C to stop."
PGREP, BASH = shutil.which("pgrep") or "pgrep", shutil.which("bash") or "bash"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def dev_command(data_dir: Path, port: int, emulator_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tiktok_auth_service",
        "dev",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--emulator-port",
        str(emulator_port),
    ]


class Dev:
    """A running `dev` stack: its process and everything it printed up to the banner."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port, self.emulator_port = free_port(), free_port()
        self.process = subprocess.Popen(
            dev_command(data_dir, self.port, self.emulator_port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        lines = []
        for line in self.process.stdout:
            lines.append(line)
            if BANNER_END in line:
                break
        self.output = "".join(lines)
        assert BANNER_END in self.output, self.output

    def stop(self) -> int:
        """SIGTERM, and the exit status; the stack must be gone within 10 s (the deadline
        raises otherwise)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture
def dev(tmp_path: Path, canaries: Canaries) -> Iterator[Dev]:
    running = Dev(tmp_path / "dev-data")
    canaries.add(running.data_dir.joinpath("api-key").read_text().strip())
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def postgres_running(data_dir: Path) -> bool:
    found = subprocess.run(
        [PGREP, "-f", str(data_dir / "postgres")], capture_output=True, check=False
    )
    return found.returncode == 0


def test_a_taken_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = subprocess.run(
            dev_command(tmp_path / "dev-data", taken, free_port()),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: port {taken} (the service) is already in use: stop what holds it or pick "
        "another with --port"
    ]
    assert not (tmp_path / "dev-data" / "postgres").exists()  # PostgreSQL never started


def test_the_env_file_lets_other_commands_use_the_running_stack(
    dev: Dev, canaries: Canaries
) -> None:
    env_file = dev.data_dir / "env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert f"(set -a; . {env_file}; exec uv run tiktok-auth-service api-keys create" in (dev.output)
    created = subprocess.run(
        [
            BASH,
            "-c",
            f"set -a; . {env_file}; exec {sys.executable} -m tiktok_auth_service "
            "api-keys create from-env-file",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "DATABASE_"))},
    )
    assert created.returncode == 0, created.stderr
    canaries.add(created.stdout.strip())
    assert created.stdout.startswith("tas_")
    assert "XDG_RUNTIME_DIR" not in dev.output


def test_sigterm_stops_the_stack_and_its_postgres(dev: Dev) -> None:
    assert postgres_running(dev.data_dir)
    assert dev.stop() == 0
    assert not postgres_running(dev.data_dir)


def test_a_restart_forgets_grants_the_new_emulator_would_refuse(dev: Dev) -> None:
    assert dev.stop() == 0

    async def plant(url: str) -> None:
        # A grant in the kept database, as an earlier run leaves one.
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        await connection.execute(
            "INSERT INTO oauth_grant (id, flow, key_id, access_token_enc, scope, status,"
            " version, created_at, updated_at) VALUES (gen_random_uuid(), 'advertiser', 'dev',"
            " '\\x00', '[]', 'active', 1, now(), now())"
        )
        await connection.close()

    with embedded_postgres(dev.data_dir / "postgres") as url:
        asyncio.run(plant(url))
    again = Dev(dev.data_dir)
    try:
        assert "note: dropped 1 grant(s) stored by an earlier run" in again.output
    finally:
        assert again.stop() == 0
