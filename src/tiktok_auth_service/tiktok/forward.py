"""One forwarded exchange with TikTok for the gateway: the caller's request sent on as it is
(with the real token), TikTok's answer handed back unread but for its envelope's `code` and
`request_id`.

Small answers are read whole and their envelope parsed; a large one (a report, a download) is
passed on in chunks, and only its first ENVELOPE_PEEK_BYTES are looked at: TikTok writes `code`
and `request_id` before `data`. Bodies are never decoded for the caller: a gzip answer stays
gzip, with its own Content-Encoding and Content-Length.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
import orjson

from .errors import TikTokTransportError

# Enough for every error envelope and most answers; beyond it the body streams.
ENVELOPE_PEEK_BYTES = 64 * 1024
_CODE = re.compile(rb'"code"\s*:\s*(-?\d+)')
_REQUEST_ID = re.compile(rb'"request_id"\s*:\s*"([\x20-\x21\x23-\x5b\x5d-\x7e]{1,128})"')
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(eq=False)
class Forwarded:
    """TikTok's answer: status and headers as sent, `code`/`request_id` when the envelope
    showed them, and the body (`head`, then whatever `rest` yields). `close` once done."""

    status: int
    headers: list[tuple[bytes, bytes]]
    code: int | None
    request_id: str | None
    head: bytes
    _response: httpx.Response
    _rest: AsyncIterator[bytes] | None

    async def rest(self) -> AsyncIterator[bytes]:
        """The body after `head`, as it arrives."""
        if self._rest is not None:
            async for chunk in self._rest:
                yield chunk

    async def close(self) -> None:
        await self._response.aclose()


def gateway_transport() -> httpx.AsyncHTTPTransport:
    """The gateway's own connections to TikTok, apart from the broker's client so that callers
    cannot hold the connections its refreshes need; limited as that client's. (Keeping all 50
    alive was slower under load: httpcore's pool checks every idle connection for each
    request, bench/gateway.py.)"""
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20)
    )


class Forwarder:
    """Sends gateway calls to `api_base_url` over `transport`, without httpx's client: the
    client's per-request work (merging its URL, headers and cookies, auth, redirects, hooks)
    was a quarter of what a proxied call cost (bench/gateway.py), and none of it is wanted
    here. Its cookie jar would even hand TikTok's cookies from one caller's answer to the next
    caller's call."""

    def __init__(
        self, transport: httpx.AsyncHTTPTransport, api_base_url: str, user_agent: str
    ) -> None:
        self._transport = transport
        self._base = api_base_url.rstrip("/")
        self._user_agent = (b"user-agent", user_agent.encode())

    async def send(
        self,
        method: str,
        endpoint: str,
        query: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        seconds: float,
    ) -> Forwarded:
        """One attempt, each of its steps (connect, send, first bytes) within `seconds`.
        Raises TikTokTransportError when no HTTP answer came (then `reached_tiktok` says
        whether the request may have been delivered)."""
        url = f"{self._base}/{endpoint}"
        if query:
            url += "?" + query.decode("latin-1")
        sent = list(headers)
        if not any(name == b"user-agent" for name, _ in sent):
            sent.append(self._user_agent)
        timeout = {"connect": min(5.0, seconds), "read": seconds, "write": seconds, "pool": seconds}
        request = httpx.Request(
            method, url, headers=sent, content=body, extensions={"timeout": timeout}
        )
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.RequestError as e:
            # The message names the failure only: the URL (and its query) stays on e.request.
            raise TikTokTransportError(
                f"{type(e).__name__} calling {endpoint}",
                retryable=isinstance(e, httpx.TransportError),
                reached_tiktok=not isinstance(e, _NOT_SENT),
            ) from None
        stream = response.aiter_raw()
        head, complete = b"", False
        if _is_json(response):
            try:
                head, complete = await _peek(stream)
            except httpx.RequestError:
                await response.aclose()
                raise TikTokTransportError(
                    f"the answer of {endpoint} broke off", retryable=True, reached_tiktok=True
                ) from None
        code, request_id = _envelope(response, head, complete)
        return Forwarded(
            status=response.status_code,
            headers=response.headers.raw,
            code=code,
            request_id=request_id or response.headers.get("x-tt-logid"),
            head=head,
            _response=response,
            _rest=None if complete else stream,
        )


async def _peek(stream: AsyncIterator[bytes]) -> tuple[bytes, bool]:
    """The body's first chunks, up to ENVELOPE_PEEK_BYTES, and whether that was all of it."""
    head = bytearray()
    async for chunk in stream:
        head += chunk
        if len(head) >= ENVELOPE_PEEK_BYTES:
            return bytes(head), False
    return bytes(head), True


def _is_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("content-type", "")


def _envelope(
    response: httpx.Response, head: bytes, complete: bool
) -> tuple[int | None, str | None]:
    """TikTok's `code` and `request_id`, if the body (or its start) shows them."""
    if not head:
        return None, None
    encoding = response.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        try:
            # Only what the peeked bytes decode to; a truncated stream decodes partly.
            head = zlib.decompressobj(47).decompress(head, ENVELOPE_PEEK_BYTES * 4)
        except zlib.error:
            return None, None
    elif encoding not in ("", "identity"):
        return None, None
    if complete:
        try:
            envelope = orjson.loads(head)
        except orjson.JSONDecodeError:
            envelope = None
        if isinstance(envelope, dict):
            code = envelope.get("code")
            request_id = envelope.get("request_id")
            return (
                code if isinstance(code, int) else None,
                request_id if isinstance(request_id, str) else None,
            )
    # A large answer: the fields TikTok writes before `data`.
    start = head.split(b'"data"', 1)[0]
    code_match, id_match = _CODE.search(start), _REQUEST_ID.search(start)
    return (
        int(code_match[1]) if code_match else None,
        id_match[1].decode() if id_match else None,
    )
