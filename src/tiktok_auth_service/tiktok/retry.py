"""When a failed TikTok call is repeated: exponential backoff with full jitter, bounded in
attempts and total time, and never for a single-use call once TikTok may have acted on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tiktok_auth_service.backoff import Backoff

from .errors import TikTokError, TikTokRateLimited, TikTokTransportError


@dataclass(frozen=True)
class RetryPolicy:
    """How retryable failures are repeated: exponential backoff with full jitter.

    The wait after failed attempt ``n`` (1-based) is ``random() * min(max_delay,
    base_delay * 2**(n-1))``. The client gives up after ``max_attempts`` attempts, or earlier
    when the next wait would push the sum of waits beyond ``max_total`` seconds.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_total: float = 20.0

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait that follows failed attempt number ``attempt``."""
        return Backoff(self.base_delay, self.max_delay).delay(attempt)

    def next_delay(
        self,
        error: TikTokError,
        attempt: int,
        waited: float,
        single_use: bool,
        random: Callable[[], float],
    ) -> float | None:
        """The wait before the next attempt, or None when the caller should give up."""
        if not error.retryable or attempt >= self.max_attempts:
            return None
        if single_use and not _certainly_not_acted_on(error):
            return None
        delay = random() * self.ceiling(attempt)
        if waited + delay > self.max_total:
            return None
        return delay


DEFAULT_RETRY = RetryPolicy()


def _certainly_not_acted_on(error: TikTokError) -> bool:
    """Throttled (TikTok refused before doing anything) or never delivered."""
    if isinstance(error, TikTokRateLimited):
        return True
    return isinstance(error, TikTokTransportError) and not error.reached_tiktok
