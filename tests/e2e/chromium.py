"""Finding, and on a bare Debian machine installing, the Chromium the browser test drives.

Playwright's own browser download needs the open internet, so the test uses Debian's
`chromium` package instead. When it is missing and we run as root with apt-get available,
it is installed once: a file lock serialises concurrent pytest sessions, and apt's own lock
is waited for rather than failed on. Anywhere else the test fails with install instructions;
it is never skipped.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PACKAGE = "chromium"
DEFAULT_PATH = Path("/usr/bin/chromium")
LOCK_PATH = Path(tempfile.gettempdir()) / "tiktok-auth-service-chromium.lock"
APT_TIMEOUT = 900  # seconds per apt-get step

# Flags for a quiet headless Chromium on a closed network. Without the background-networking
# ones Chromium keeps trying to reach Google services (updates, sync, field trials).
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HOW_TO_INSTALL = (
    "The browser test needs Debian's Chromium. Install it as root with:\n"
    "    apt-get update && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y --no-install-recommends chromium\n"
    "(or put a `chromium` executable on PATH)."
)


def find_chromium() -> str | None:
    """The Chromium executable on PATH or at Debian's location, if there is one."""
    found = shutil.which(PACKAGE)
    if found:
        return found
    if DEFAULT_PATH.is_file() and os.access(DEFAULT_PATH, os.X_OK):
        return str(DEFAULT_PATH)
    return None


def _apt_get(*args: str) -> None:
    """Run one apt-get step, failing the test with apt's output if it does not succeed."""
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_TIMEOUT}", *args]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        completed = subprocess.run(
            command,
            env=environment,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` took over {APT_TIMEOUT}s.\n{HOW_TO_INSTALL}")
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr)[-3000:]
        pytest.fail(
            f"`{' '.join(command)}` exited with {completed.returncode}:\n{output}\n{HOW_TO_INSTALL}"
        )


def _install() -> None:
    _apt_get("update")
    _apt_get("install", "-y", "--no-install-recommends", PACKAGE)


def ensure_chromium() -> str:
    """The path of a usable Chromium, installing Debian's package first if needed."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        reason = "not running as root" if os.geteuid() != 0 else "apt-get is not available"
        pytest.fail(
            f"Chromium is not installed and cannot be installed here ({reason}).\n" + HOW_TO_INSTALL
        )
    with LOCK_PATH.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing right now
        try:
            found = find_chromium()  # ...and may have finished while we waited
            if found is None:
                _install()
                found = find_chromium()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if found is None:
        pytest.fail(
            f"apt-get installed {PACKAGE} but no chromium executable appeared.\n" + HOW_TO_INSTALL
        )
    return found
