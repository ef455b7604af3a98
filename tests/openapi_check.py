"""Every response the suite provokes from a documented operation must match the OpenAPI
document: a documented status, a declared media type, and a body valid against its schema.
The test clients run `OpenApiCheck.on_response` on each response, so the document cannot drift
from the behaviour."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:tiktok-auth-service:openapi"

# (method, path template, status) -> responses checked, over the whole session.
CHECKED: Counter[tuple[str, str, int]] = Counter()


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


class OpenApiCheck:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
        )
        self.templates = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in spec["paths"]
        ]

    def _template(self, path: str) -> str | None:
        found = [template for pattern, template in self.templates if pattern.match(path)]
        return found[0] if found else None

    def check(self, method: str, path: str, status: int, media_type: str, body: bytes) -> None:
        """Raises AssertionError when a documented operation answered off the document."""
        template = self._template(path)
        method = method.lower()
        if template is None or method not in self.spec["paths"][template]:
            return  # not an operation of the API (/docs, /openapi.json, unknown paths)
        responses = self.spec["paths"][template][method]["responses"]
        where = f"{method.upper()} {template} -> {status}"
        assert str(status) in responses, f"{where}: status not documented"
        CHECKED[(method.upper(), template, status)] += 1
        content = responses[str(status)].get("content")
        if not content:
            assert not body, f"{where}: body sent where none is documented"
            return
        media = media_type.split(";")[0].strip()
        assert media in content, f"{where}: {media!r} sent, document says {sorted(content)}"
        if "schema" not in content[media] or not media.endswith("json"):
            return
        pointer = _pointer("paths", template, method, "responses", str(status), "content", media)
        validator = Draft202012Validator(
            {"$ref": f"{SPEC_URI}#/{pointer}/schema"}, registry=self.registry
        )
        errors = sorted(validator.iter_errors(json.loads(body)), key=str)
        assert not errors, f"{where}: body breaks the schema: {errors[0].message}"

    async def on_response(self, response: httpx.Response) -> None:
        """An httpx response hook."""
        await response.aread()
        self.check(
            response.request.method,
            response.request.url.path,
            response.status_code,
            response.headers.get("content-type", ""),
            response.content,
        )
