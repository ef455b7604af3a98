"""The Chromium the browser tests drive: Debian's package (Playwright's own browser download
needs the open internet), found or installed by tests/debian.py."""

from __future__ import annotations

from pathlib import Path

from tests.debian import ensure_program

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


def ensure_chromium() -> str:
    """The path of a usable Chromium, installing Debian's package first if needed."""
    return ensure_program("chromium", "chromium", Path("/usr/bin/chromium"))
