"""What an emulated endpoint is handed, and the parameter checks every endpoint shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import orjson

from .envelope import ApiError


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart body."""

    filename: str
    content: bytes


@dataclass(frozen=True)
class ApiCall:
    """What an endpoint sees: query (GET), JSON body or multipart form (POST) fields, the
    multipart file parts, and the token header."""

    fields: dict[str, Any]
    access_token: str | None
    files: dict[str, UploadedFile] = field(default_factory=dict)


def require(call: ApiCall, *names: str) -> list[str]:
    """The named fields, each a non-empty string; 40002 otherwise."""
    values = []
    for name in names:
        value = call.fields.get(name)
        if not isinstance(value, str) or not value:
            raise ApiError(40002, f"{name}: a non-empty string is required.")
        values.append(value)
    return values


def token_header(call: ApiCall) -> str:
    """The `Access-Token` header; 40104 when it is missing or empty."""
    if not call.access_token:
        raise ApiError(40104)
    return call.access_token


def json_field(call: ApiCall, name: str, default: Any = None) -> Any:
    """A field that TikTok takes as JSON text in a query string (lists, objects).

    A JSON body carries the value itself, so only strings are decoded."""
    value = call.fields.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ApiError(40002, f"{name}: JSON is required.") from None


def string_list(call: ApiCall, name: str, *, required: bool = False) -> list[str] | None:
    """A JSON list of strings (`advertiser_ids`, `fields`, `dimensions`); 40002 when malformed,
    or missing while `required`."""
    value = json_field(call, name)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ApiError(40002, f"{name}: a JSON list of strings is required.")
    return value


def integer(call: ApiCall, name: str, default: int, *, low: int, high: int) -> int:
    """An integer field within [low, high], `default` when absent; 40002 otherwise."""
    value = call.fields.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError(40002, f"{name}: an integer is required.") from None
    if not low <= number <= high:
        raise ApiError(40002, f"{name}: must be between {low} and {high}.")
    return number


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    """The text fields and the file parts of a `multipart/form-data` body.

    The standard library's MIME parser reads it once given the request's Content-Type header
    (which carries the boundary); a body it cannot split yields no parts."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    files: dict[str, UploadedFile] = {}
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = content.decode("utf-8", errors="replace")
        else:
            files[name] = UploadedFile(filename, content)
    return fields, files
