"""Per-app QPS/QPM/QPD limits and the optional per-advertiser QPS limit, on emulator time."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .clock import EmulatorClock

DAY = 86400


@dataclass
class _Window:
    """Admitted calls of one app: sliding one-second and one-minute logs, a daily counter."""

    second: deque[float] = field(default_factory=deque)
    minute: deque[float] = field(default_factory=deque)
    day: int = 0
    day_count: int = 0

    def forget_before(self, now: float) -> None:
        while self.second and self.second[0] <= now - 1:
            self.second.popleft()
        while self.minute and self.minute[0] <= now - 60:
            self.minute.popleft()
        # TikTok resets the daily quota at 00:00 UTC, not 24 hours after the first call.
        today = int(now // DAY)
        if today != self.day:
            self.day, self.day_count = today, 0


class RateLimiter:
    """Admits or refuses calls; a limit of 0 (or None) means unlimited."""

    def __init__(
        self,
        clock: EmulatorClock,
        *,
        qps: int,
        qpm: int,
        qpd: int,
        advertiser_qps: int | None,
    ) -> None:
        self._clock = clock
        self._qps, self._qpm, self._qpd = qps, qpm, qpd
        self._advertiser_qps = advertiser_qps or 0
        self._apps: dict[str, _Window] = {}
        self._advertisers: dict[str, _Window] = {}

    def admit_app(self, app_id: str) -> bool:
        """Count one call of `app_id`; False (and not counted) when a window is full."""
        now = self._clock.now()
        window = self._apps.setdefault(app_id, _Window())
        window.forget_before(now)
        if (
            (self._qps and len(window.second) >= self._qps)
            or (self._qpm and len(window.minute) >= self._qpm)
            or (self._qpd and window.day_count >= self._qpd)
        ):
            return False
        self._count(window, now)
        return True

    def admit_advertisers(self, advertiser_ids: list[str]) -> bool:
        """Count one call against each advertiser; False when any is over its QPS."""
        if not self._advertiser_qps:
            return True
        now = self._clock.now()
        windows = [self._advertisers.setdefault(adv, _Window()) for adv in advertiser_ids]
        for window in windows:
            window.forget_before(now)
            if len(window.second) >= self._advertiser_qps:
                return False
        for window in windows:
            self._count(window, now)
        return True

    @staticmethod
    def _count(window: _Window, now: float) -> None:
        window.second.append(now)
        window.minute.append(now)
        window.day_count += 1

    def snapshot(self) -> dict[str, Any]:
        """Current counters per app and per advertiser, for the admin API."""
        now = self._clock.now()

        def show(windows: dict[str, _Window]) -> dict[str, dict[str, int]]:
            shown = {}
            for key, window in windows.items():
                window.forget_before(now)
                shown[key] = {
                    "second": len(window.second),
                    "minute": len(window.minute),
                    "day": window.day_count,
                }
            return shown

        return {
            "limits": {
                "qps": self._qps,
                "qpm": self._qpm,
                "qpd": self._qpd,
                "advertiser_qps": self._advertiser_qps,
            },
            "apps": show(self._apps),
            "advertisers": show(self._advertisers),
        }
