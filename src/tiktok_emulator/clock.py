"""The emulator's clock: real UTC time plus an offset that tests can push forward."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class EmulatorClock:
    """Real time shifted by `offset` seconds; only ever moved forward by `advance`."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        """Emulator time as seconds since the Unix epoch."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move emulator time forward by `seconds` (must not be negative)."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        self.offset += seconds


def isoformat(timestamp: float) -> str:
    """An epoch timestamp as ISO 8601 UTC text, for humans reading the admin API."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def tiktok_time(timestamp: float) -> str:
    """An epoch timestamp as TikTok writes times in Marketing API objects: `YYYY-MM-DD hh:mm:ss`
    (UTC)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
