"""The Postman collection (docs/postman_collection.json) against the app's OpenAPI document.

Every request is named after the operationId it calls; its method, path and query must be that
operation's, so the collection cannot drift from the routes unnoticed. The spec is built from
the application factory, without a database."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from tests.fixtures import make_settings
from tiktok_auth_service.app import create_app

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = ROOT / "docs" / "postman_collection.json"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
# Routes that are not for internal callers: TikTok sends the browser to /callback.
NOT_IN_COLLECTION = {"callback"}
_VARIABLE = re.compile(r"\{\{([^{}]+)\}\}")


@cache
def _collection() -> dict[str, Any]:
    data = json.loads(COLLECTION.read_text())
    assert isinstance(data, dict)
    return data


@cache
def _spec() -> dict[str, Any]:
    return create_app(make_settings("postgresql+asyncpg://x@/y")).openapi()


def _operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (METHOD, path template, operation)."""
    found = {}
    for path, item in _spec()["paths"].items():
        for method, operation in item.items():
            found[operation["operationId"]] = (method.upper(), path, operation)
    return found


def _requests(
    items: list[dict[str, Any]], auth: dict[str, Any] | None
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Every request item with its effective auth (its own, else its folder's, else the
    collection's), folders flattened."""
    for item in items:
        inherited = item.get("auth", auth)
        if "item" in item:
            yield from _requests(item["item"], inherited)
        else:
            yield item, item["request"].get("auth", inherited)


def _all_requests() -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    collection = _collection()
    return list(_requests(collection["item"], collection.get("auth")))


def _variables() -> dict[str, str]:
    return {v["key"]: v["value"] for v in _collection()["variable"]}


def _description(value: Any) -> str:
    # v2.1 allows a string or {"content": ..., "type": ...}.
    return str(value.get("content", "") if isinstance(value, dict) else value or "")


def _template_regex(template: str) -> str:
    """/tokens/{advertiser_id} -> a regex a Postman path (with {{variables}}) must match."""
    parts = re.split(r"(\{[^{}]+\})", template)
    return "".join(r"[^/]+" if p.startswith("{") else re.escape(p) for p in parts)


def _path_and_query(url: dict[str, Any]) -> tuple[str, list[str]]:
    raw = url["raw"]
    assert raw.startswith("{{baseUrl}}/"), raw
    path, _, query = raw.removeprefix("{{baseUrl}}").partition("?")
    # The structured form Postman shows must say the same as `raw`.
    assert url["host"] == ["{{baseUrl}}"], url
    assert "/" + "/".join(url["path"]) == path, url
    keys = [q["key"] for q in url.get("query", [])]
    assert keys == [pair.partition("=")[0] for pair in query.split("&") if pair], url
    return path, keys


def test_collection_is_postman_v2_1() -> None:
    collection = _collection()
    info = collection["info"]
    assert info["schema"] == SCHEMA
    assert info["name"] and _description(info.get("description"))
    assert isinstance(collection["item"], list) and collection["item"]
    for item, _ in _all_requests():
        request = item["request"]
        assert request["method"] in METHODS, item["name"]
        assert isinstance(request["url"], dict) and request["url"]["raw"], item["name"]
        assert isinstance(request.get("header", []), list), item["name"]


def test_collection_variables() -> None:
    from tiktok_emulator import EmulatorConfig

    variables = _variables()
    assert variables["baseUrl"] == "http://127.0.0.1:8000"
    assert variables["apiKey"] == ""
    # The emulator's first advertiser and its TikTok account: what the `dev` stack connects.
    emulator = EmulatorConfig()
    assert variables["advertiserId"] == emulator.advertisers[0].advertiser_id
    assert variables["openId"] == emulator.accounts[0].open_id
    assert variables["advertiserId"] == "7100000000000000001"
    assert variables["openId"] == "-000emulatoropenid0001"


def test_every_variable_used_is_declared() -> None:
    declared = set(_variables())
    used = set(_VARIABLE.findall(COLLECTION.read_text()))
    assert used <= declared, used - declared


def test_requests_are_named_and_described() -> None:
    names = [item["name"] for item, _ in _all_requests()]
    assert len(names) == len(set(names)), names
    for item, _ in _all_requests():
        description = _description(item["request"].get("description"))
        # The name is the operationId; the description says it too, with method and path.
        assert f"operationId `{item['name']}`" in description, item["name"]


def test_requests_match_the_openapi_operations() -> None:
    operations = _operations()
    variables = _variables()
    for item, _ in _all_requests():
        name = item["name"]
        assert name in operations, f"{name!r} is not an operationId of /openapi.json"
        method, template, operation = operations[name]
        assert item["request"]["method"] == method, name
        path, query = _path_and_query(item["request"]["url"])
        assert re.fullmatch(_template_regex(template), path), (name, path, template)
        parameters = operation.get("parameters", [])
        assert set(query) <= {p["name"] for p in parameters if p["in"] == "query"}, name
        # Path variables default to values the route accepts.
        values = re.findall(r"[^/]+", path)
        names = re.findall(r"[^/]+", template)
        for value, segment in zip(values, names, strict=True):
            if not segment.startswith("{"):
                continue
            (parameter,) = [p for p in parameters if p["name"] == segment.strip("{}")]
            concrete = _VARIABLE.sub(lambda m: variables[m[1]], value)
            pattern = parameter["schema"].get("pattern")
            if pattern:
                assert re.search(pattern, concrete), (name, concrete, pattern)


def test_auth_follows_the_operations_security() -> None:
    operations = _operations()
    collection_auth = _collection()["auth"]
    assert collection_auth["type"] == "bearer"
    assert {"key": "token", "value": "{{apiKey}}", "type": "string"} in collection_auth["bearer"]
    for item, auth in _all_requests():
        _, _, operation = operations[item["name"]]
        if operation.get("security"):
            assert auth == collection_auth, item["name"]
        else:
            # No key where none is needed (the browser never has one).
            assert auth == {"type": "noauth"}, item["name"]


def test_connect_session_request() -> None:
    (item,) = [i for i, _ in _all_requests() if i["name"] == "create_connect_session"]
    request = item["request"]
    body = request["body"]
    assert body["mode"] == "raw" and body["options"]["raw"]["language"] == "json"
    assert json.loads(body["raw"]) == {
        "flow": "advertiser",
        "return_to": None,
        "end_user": "postman",
        "tags": {"tenant": "postman"},
    }
    headers = {h["key"].lower(): h["value"] for h in request["header"]}
    assert headers["content-type"] == "application/json"
    # The session URL lands in a variable for the next request and the browser.
    script = "\n".join(_scripts(item))
    assert 'pm.collectionVariables.set("sessionUrl"' in script
    assert 'pm.collectionVariables.set("session"' in script

    (authorize,) = [i for i, _ in _all_requests() if i["name"] == "authorize"]
    assert authorize["request"]["url"]["query"][0] == {
        "key": "session",
        "value": "{{session}}",
        "description": "From `create_connect_session`.",
    }
    # The page's button: the link's session as a form field, as the browser sends it.
    (start,) = [i for i, _ in _all_requests() if i["name"] == "start_authorization"]
    body = start["request"]["body"]
    assert body["mode"] == "urlencoded"
    assert [(f["key"], f["value"]) for f in body["urlencoded"]] == [("session", "{{session}}")]
    # Postman shows the 303 instead of following it to the consent page.
    assert start["protocolProfileBehavior"]["followRedirects"] is False


def _scripts(item: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for event in item.get("event", []):
        assert event["listen"] in ("test", "prerequest")
        exec_ = event["script"]["exec"]
        lines.extend(exec_ if isinstance(exec_, list) else [exec_])
    return lines


def test_scripts_are_valid_javascript(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "checking the collection's scripts needs Node.js (node on PATH)"
    for index, (item, _) in enumerate(_all_requests()):
        if not (lines := _scripts(item)):
            continue
        script = tmp_path / f"{index}.js"
        script.write_text("(function (pm) {\n" + "\n".join(lines) + "\n});\n")
        result = subprocess.run(
            [node, "--check", str(script)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (item["name"], result.stderr)


def _documented_calls() -> set[tuple[str, str]]:
    """(METHOD, path) of the API guide's table of calls for internal services."""
    guide = (ROOT / "docs" / "api.md").read_text()
    section = guide.split("\n## Calls for internal services\n", 1)[1].split("\n#", 1)[0]
    calls = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            for method, path in re.findall(r"`([A-Z]+) (/[^`\[?]*)", first_cell):
                calls.add((method, path))
    return calls


def test_collection_covers_the_api() -> None:
    operations = _operations()
    covered = {item["name"] for item, _ in _all_requests()}
    # Every operation but the ones meant for TikTok and the browser alone.
    assert set(operations) - NOT_IN_COLLECTION == covered
    assert {
        "create_connect_session",
        "authorize",
        "start_authorization",
        "get_advertiser_token",
        "check_advertiser_token",
        "revoke_advertiser_token",
        "get_account_token",
        "revoke_account_token",
        "healthz",
        "readyz",
    } <= covered
    # What the API guide offers internal callers, each call by method and path.
    calls = _documented_calls()
    assert len(calls) >= 8, calls
    by_route = {(method, path): name for name, (method, path, _) in operations.items()}
    for call in calls:
        assert call in by_route, f"docs/api.md names {call}, which /openapi.json lacks"
        assert by_route[call] in covered, call
