"""Finding, and on a bare Debian machine installing, a program a test needs from Debian's
packages (Chromium for the browser tests, PgBouncer for the PgBouncer test).

When the program is missing and we run as root with apt-get available, its package is
installed once: a file lock serialises concurrent pytest sessions, apt's own lock is waited
for rather than failed on, and stale package lists are refreshed once. Anywhere else the test
fails with install instructions; it is never skipped.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

APT_TIMEOUT = 900  # seconds per apt-get step


def how_to_install(package: str, program: str) -> str:
    return (
        f"This test needs Debian's {package}. Install it as root with:\n"
        "    apt-get update && DEBIAN_FRONTEND=noninteractive "
        f"apt-get install -y --no-install-recommends {package}\n"
        f"(or put a `{program}` executable on PATH)."
    )


def find_program(program: str, default: Path) -> str | None:
    """`program` on PATH or at Debian's location, if it is there."""
    found = shutil.which(program)
    if found:
        return found
    if default.is_file() and os.access(default, os.X_OK):
        return str(default)
    return None


def _apt_get(help_text: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_TIMEOUT}", *args]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(
            command,
            env=environment,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` took over {APT_TIMEOUT}s.\n{help_text}")


def ensure_program(package: str, program: str, default: Path) -> str:
    """The path of `program`, installing Debian's `package` first if needed."""
    help_text = how_to_install(package, program)
    found = find_program(program, default)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        reason = "not running as root" if os.geteuid() != 0 else "apt-get is not available"
        pytest.fail(f"{program} is missing and cannot be installed here ({reason}).\n{help_text}")
    lock_path = Path(tempfile.gettempdir()) / f"tiktok-auth-service-{package}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest session may be installing right now
        try:
            found = find_program(program, default)  # ...and may have finished meanwhile
            if found is None:
                install = ("install", "-y", "--no-install-recommends", package)
                completed = _apt_get(help_text, *install)
                if completed.returncode != 0:  # most likely stale package lists
                    _apt_get(help_text, "update")
                    completed = _apt_get(help_text, *install)
                if completed.returncode != 0:
                    output = (completed.stdout + completed.stderr)[-3000:]
                    pytest.fail(f"apt-get install {package} failed:\n{output}\n{help_text}")
                found = find_program(program, default)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if found is None:
        pytest.fail(f"apt-get installed {package} but no {program} appeared.\n{help_text}")
    return found
