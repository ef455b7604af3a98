"""One HTTP exchange with TikTok's API, as every call of the client makes it: HTTP status, the
``{code, message, request_id, data}`` envelope, the body ``code`` (TikTok reports errors as HTTP
200 with a non-zero code), then ``data`` into a typed model; failures become the exceptions of
`errors.py`, with anything secret that was sent scrubbed from their text."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from tiktok_auth_service.clock import Clock

from .errors import TikTokTransportError, error_for_code

T = TypeVar("T")


def http_client(timeout_seconds: float, user_agent: str) -> httpx.AsyncClient:
    """The one shared HTTP client for TikTok: explicit timeouts and connection limits."""
    return httpx.AsyncClient(
        # No step of an attempt, connecting included, waits longer than `timeout_seconds`.
        timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        headers={"User-Agent": user_agent},
    )


class Envelope(BaseModel):
    code: int
    message: str = ""
    # Optional so that a successful exchange is never thrown away over a missing log id:
    # authorization codes are single use.
    request_id: str = ""
    data: Any = None


@dataclass(frozen=True)
class Reply:
    data: dict[str, Any]
    request_id: str
    received_at: datetime


def redact(text: str, secrets: Iterable[str]) -> str:
    # TikTok's messages are not documented to echo inputs, but they are free text we pass on
    # to logs and exceptions, so anything we sent that is secret is scrubbed defensively.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# Failures that happen before a request leaves this process.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


async def send(
    http: httpx.AsyncClient,
    clock: Clock,
    method: str,
    url: str,
    path: str,
    json: Mapping[str, str] | None,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str],
    secrets: list[str],
) -> Reply:
    """One HTTP exchange: returns the data of a ``code: 0`` envelope or raises."""
    try:
        response = await http.request(method, url, json=json, params=params, headers=headers)
    except httpx.RequestError as e:
        # str(e) is httpcore's description ("timed out", "connection refused"); the URL
        # (with the secret for advertiser/get) lives only on e.request, which we drop.
        raise TikTokTransportError(
            f"{type(e).__name__} calling {path}: {redact(str(e), secrets)}",
            retryable=isinstance(e, httpx.TransportError),
            reached_tiktok=not isinstance(e, NOT_SENT),
            reason="transport",
        ) from e
    received_at = clock.now()
    status = response.status_code
    if not response.is_success:
        # 429/5xx are edge or gateway failures (often HTML bodies); any other status means
        # the request never reached the API, e.g. a 404 for a missing trailing slash.
        raise TikTokTransportError(
            f"HTTP {status} from {path}",
            retryable=status == 429 or status >= 500,
            status_code=status,
            reached_tiktok=status != 429,
            reason="http_429" if status == 429 else f"http_{status // 100}xx",
        )
    try:
        envelope = Envelope.model_validate_json(response.content)
    except ValidationError:
        # Not chained: a ValidationError's text quotes the input, which may hold tokens.
        raise TikTokTransportError(
            f"{path} returned a body that is not a TikTok envelope",
            retryable=False,
            status_code=status,
            reason="invalid_response",
        ) from None
    if envelope.code != 0:
        raise error_for_code(
            envelope.code, redact(envelope.message, secrets), envelope.request_id or None
        )
    data = envelope.data if isinstance(envelope.data, dict) else {}
    return Reply(data=data, request_id=envelope.request_id, received_at=received_at)


def parse_data(parse: Callable[[Reply], T], reply: Reply, path: str) -> T:
    """`parse` applied to a reply; data not in the shape expected is a TikTokTransportError
    naming the fields, never their values."""
    try:
        return parse(reply)
    except ValidationError as e:
        fields = sorted(
            {".".join(map(str, err["loc"])) or "data" for err in e.errors(include_input=False)}
        )
        # Not chained, for the same reason as above: the input is the token payload.
        raise TikTokTransportError(
            f"{path} returned unexpected data (fields: {', '.join(fields)})",
            retryable=False,
            request_id=reply.request_id or None,
            reason="invalid_response",
        ) from None
