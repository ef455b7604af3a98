"""A record of every /open_api/ call, so tests and benchmarks can see what a client sent."""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

# Credentials are recorded as present/absent only; tokens and codes are kept because tests
# need to see which refresh token or auth code a client presented.
_SECRET_FIELDS = frozenset({"secret", "client_secret"})


@dataclass
class CallRecord:
    """One call: when it arrived (wall clock and emulator clock), what it sent, what it got."""

    call_id: int
    endpoint: str
    method: str
    wall_time: float
    emulator_time: float
    fields: dict[str, Any]
    access_token_header: str | None
    request_id: str
    code: int | None = None
    http_status: int | None = None
    fault: dict[str, Any] | None = None


class CallLog:
    """Counts per endpoint, per endpoint and wall-clock second, and per `Access-Token` value
    (never trimmed), and the latest `limit` records per endpoint."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: Counter[str] = Counter()
        self._seconds: Counter[tuple[str, int]] = Counter()
        self._access_tokens: Counter[str] = Counter()
        self._records: dict[str, deque[CallRecord]] = {}
        self._ids = itertools.count(1)

    def start(
        self,
        endpoint: str,
        method: str,
        *,
        emulator_time: float,
        fields: dict[str, Any],
        access_token_header: str | None,
        request_id: str,
    ) -> CallRecord:
        """Record an arriving call; the caller fills in `code`/`http_status` when it answers."""
        record = CallRecord(
            call_id=next(self._ids),
            endpoint=endpoint,
            method=method,
            wall_time=time.time(),
            emulator_time=emulator_time,
            fields={
                name: ("<present>" if name in _SECRET_FIELDS else value)
                for name, value in fields.items()
            },
            access_token_header=access_token_header,
            request_id=request_id,
        )
        self._counts[endpoint] += 1
        self._seconds[endpoint, int(record.wall_time)] += 1
        if access_token_header is not None:
            self._access_tokens[access_token_header] += 1
        self._records.setdefault(endpoint, deque(maxlen=self._limit)).append(record)
        return record

    def counts(self) -> dict[str, int]:
        """Number of calls per endpoint since the last reset."""
        return dict(self._counts)

    def records(self, endpoint: str) -> list[dict[str, Any]]:
        """The kept records of `endpoint`, oldest first."""
        return [asdict(record) for record in self._records.get(endpoint, ())]

    def per_second(self, endpoint: str | None = None) -> dict[int, int]:
        """Calls that arrived in each wall-clock second (of `endpoint`, or of all), in order."""
        seconds: Counter[int] = Counter()
        for (name, second), count in self._seconds.items():
            if endpoint is None or name == endpoint:
                seconds[second] += count
        return dict(sorted(seconds.items()))

    def access_tokens(self) -> dict[str, int]:
        """How many calls presented each `Access-Token` header value."""
        return dict(self._access_tokens)
