"""Forced responses per endpoint, and calls held open until a test releases them."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict


class CodeFault(BaseModel):
    """Answer with this envelope code (HTTP 200, `data: {}`)."""

    model_config = ConfigDict(extra="forbid")

    code: int
    message: str | None = None


class HttpFault(BaseModel):
    """Answer with a raw HTTP status and a non-JSON body, as TikTok's edge does on 5xx.

    With `act`, the call is first carried out as usual (a create creates), and only its
    answer is lost: what a client sees when TikTok acted but the way back failed."""

    model_config = ConfigDict(extra="forbid")

    http_status: int
    body: str | None = None
    content_type: str = "text/html; charset=utf-8"
    act: bool = False

    def render_body(self) -> str:
        """The configured body, or a small HTML page naming the status."""
        if self.body is not None:
            return self.body
        title = f"{self.http_status} Error"
        return f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"


class HangFault(BaseModel):
    """Hold the call until released; then answer with `then`, or normally when it is absent."""

    model_config = ConfigDict(extra="forbid")

    hang: Literal[True]
    then: CodeFault | HttpFault | None = None


Fault = CodeFault | HttpFault | HangFault


class FaultQueues:
    """One FIFO queue of forced responses per endpoint; each call consumes at most one."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}

    def add(self, endpoint: str, faults: list[Fault]) -> int:
        """Append `faults` to the endpoint's queue; returns the queue's new length."""
        queue = self._queues.setdefault(endpoint, deque())
        queue.extend(faults)
        return len(queue)

    def take(self, endpoint: str) -> Fault | None:
        """The next forced response for `endpoint`, removed from its queue."""
        queue = self._queues.get(endpoint)
        return queue.popleft() if queue else None

    def clear(self) -> None:
        """Drop every queued fault."""
        self._queues.clear()

    def pending(self) -> dict[str, list[Fault]]:
        """The faults still queued, per endpoint (endpoints with an empty queue left out)."""
        return {endpoint: list(queue) for endpoint, queue in self._queues.items() if queue}


@dataclass
class HeldCall:
    """A call waiting for release."""

    hold_id: int
    endpoint: str
    since: float
    released: asyncio.Event = field(default_factory=asyncio.Event)


class HangingCalls:
    """Calls held by a `hang` fault; tests wait for them and release them without sleeping."""

    def __init__(self) -> None:
        self._held: list[HeldCall] = []
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)

    async def hold(self, endpoint: str, since: float) -> None:
        """Block the calling request until `release` lets it go."""
        call = HeldCall(next(self._ids), endpoint, since)
        self._held.append(call)
        async with self._changed:
            self._changed.notify_all()
        try:
            await call.released.wait()
        finally:
            # A cancelled request (client gone, server shutting down) must not stay listed.
            if call in self._held:
                self._held.remove(call)

    def release(self, endpoint: str | None = None, count: int | None = None) -> int:
        """Release the oldest held calls (of `endpoint`, at most `count`); returns how many."""
        chosen = self.held(endpoint)
        if count is not None:
            chosen = chosen[:count]
        for call in chosen:
            self._held.remove(call)
            call.released.set()
        return len(chosen)

    def held(self, endpoint: str | None = None) -> list[HeldCall]:
        """Currently held calls, oldest first."""
        return [call for call in self._held if endpoint is None or call.endpoint == endpoint]

    async def wait_for(self, at_least: int, endpoint: str | None = None) -> None:
        """Return once at least `at_least` calls (of `endpoint`) are held."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.held(endpoint)) >= at_least)
