"""Request bodies are bounded before anything reads them: a body over MAX_BODY_BYTES is
answered 413 (problem+json) without being buffered, so a caller without a key cannot make a
process hold a body of its choosing."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiktok_auth_service import errors
from tiktok_auth_service.api.problems import error_response


class BodyLimit:
    """A declared Content-Length over the limit is refused at once, unread; a streamed body
    as soon as what arrived passes it (the app is then told the client left, and what it
    answers to that is dropped). Either way the connection is closed after the answer,
    rather than read to the end of a body nobody wants."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
                break
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def answered_once(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, answered_once)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            Request(scope),
            errors.PayloadTooLarge(f"Request bodies are limited to {self.max_bytes} bytes."),
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
