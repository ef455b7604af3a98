"""The one backoff: the wait after the n-th failure in a row doubles from a base up to a cap.

TikTok retries (`tiktok/retry.py`, with jitter), a grant's failed refresh, check or revocation
(`lease.py`), the refreshed pair's save (`grants/refresh.py`) and webhook deliveries
(`ops/webhooks.py`) each give it their own base and cap.
"""

from __future__ import annotations

from dataclasses import dataclass

# Past this many doublings every base this service uses is far beyond its cap; bounding the
# exponent keeps a grant failing for months from overflowing the float.
_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based; 0 counts as 1):
        ``min(cap, base * 2**(attempt - 1))``."""
        return min(self.cap, self.base * 2.0 ** min(max(1, attempt) - 1, _MAX_DOUBLINGS))
