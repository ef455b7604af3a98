"""Per-app QPS/QPM/QPD limits, per-endpoint limits and the optional per-advertiser QPS limit,
counted in fixed windows of emulator time (the second, the minute, the UTC day)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .clock import EmulatorClock
from .config import EndpointLimit

DAY = 86400


@dataclass
class _Window:
    """Admitted calls in the current second, minute and UTC day."""

    second: int = -1
    second_count: int = 0
    minute: int = -1
    minute_count: int = 0
    day: int = -1
    day_count: int = 0

    def roll(self, now: float) -> None:
        # TikTok counts fixed windows: a new second (minute, day at 00:00 UTC) starts from
        # zero whatever was admitted just before it.
        second, minute, day = int(now), int(now // 60), int(now // DAY)
        if second != self.second:
            self.second, self.second_count = second, 0
        if minute != self.minute:
            self.minute, self.minute_count = minute, 0
        if day != self.day:
            self.day, self.day_count = day, 0

    def full(self, limit: EndpointLimit) -> bool:
        return bool(
            (limit.qps and self.second_count >= limit.qps)
            or (limit.qpm and self.minute_count >= limit.qpm)
            or (limit.qpd and self.day_count >= limit.qpd)
        )

    def count(self) -> None:
        self.second_count += 1
        self.minute_count += 1
        self.day_count += 1

    def view(self) -> dict[str, int]:
        return {
            "second": self.second_count,
            "minute": self.minute_count,
            "day": self.day_count,
        }


class RateLimiter:
    """Admits or refuses calls; a limit of 0 (or None) means unlimited."""

    def __init__(
        self,
        clock: EmulatorClock,
        *,
        app_limit: EndpointLimit,
        endpoint_limits: dict[str, EndpointLimit],
        every_endpoint_limit: EndpointLimit | None,
        endpoint_limit_error: int,
        advertiser_qps: int | None,
    ) -> None:
        self._clock = clock
        self._app_limit = app_limit
        self._endpoint_limits = endpoint_limits
        self._every_endpoint_limit = every_endpoint_limit
        self._endpoint_limit_error = endpoint_limit_error
        self._advertiser_limit = EndpointLimit(qps=advertiser_qps or 0)
        self._apps: dict[str, _Window] = {}
        self._endpoints: dict[tuple[str, str], _Window] = {}
        self._advertisers: dict[str, _Window] = {}

    def admit_app(self, app_id: str, endpoint: str) -> int:
        """Count one call of `app_id` to `endpoint`: 0 when admitted, else the code to answer
        (nothing is counted then): 40100 for the app's tier, the configured code for the
        endpoint's own limit."""
        now = self._clock.now()
        app = self._apps.setdefault(app_id, _Window())
        app.roll(now)
        if app.full(self._app_limit):
            return 40100
        limit = self._endpoint_limits.get(endpoint, self._every_endpoint_limit)
        own = None
        if limit is not None:
            own = self._endpoints.setdefault((app_id, endpoint), _Window())
            own.roll(now)
            if own.full(limit):
                return self._endpoint_limit_error
            own.count()
        app.count()
        return 0

    def admit_advertisers(self, advertiser_ids: list[str]) -> bool:
        """Count one call against each advertiser; False when any is over its QPS."""
        if not self._advertiser_limit.qps:
            return True
        now = self._clock.now()
        windows = [self._advertisers.setdefault(adv, _Window()) for adv in advertiser_ids]
        for window in windows:
            window.roll(now)
            if window.full(self._advertiser_limit):
                return False
        for window in windows:
            window.count()
        return True

    def snapshot(self) -> dict[str, Any]:
        """Current counters per app, per app and endpoint, per advertiser, for the admin API.

        `endpoint_limits` lists the endpoints with a limit of their own; `"*"` is the limit
        of every other endpoint, when there is one (the sandbox's)."""
        now = self._clock.now()
        for window in (*self._apps.values(), *self._endpoints.values()):
            window.roll(now)
        for window in self._advertisers.values():
            window.roll(now)
        endpoint_limits = {
            name: limit.model_dump() for name, limit in self._endpoint_limits.items()
        }
        if self._every_endpoint_limit is not None:
            endpoint_limits["*"] = self._every_endpoint_limit.model_dump()
        return {
            "limits": {
                **self._app_limit.model_dump(),
                "advertiser_qps": self._advertiser_limit.qps,
            },
            "endpoint_limits": endpoint_limits,
            "apps": {app_id: window.view() for app_id, window in self._apps.items()},
            "endpoints": {
                f"{app_id} {endpoint}": window.view()
                for (app_id, endpoint), window in self._endpoints.items()
            },
            "advertisers": {adv: window.view() for adv, window in self._advertisers.items()},
        }
