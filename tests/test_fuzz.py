"""Schemathesis over the service's own OpenAPI document: every operation, with a valid, an
invalid and no API key, against a real `serve` process and the real PostgreSQL. No answer may
be a 5xx, and every answer must match the document (status, media type, schema, headers)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_cli import cli_env, run_cli
from tiktok_auth_dev.stack import bind_socket

EXAMPLES = 15  # per operation; each example is sent with a valid, an invalid and no key
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def start_serve_process(database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """`tiktok-auth-service serve` on a free loopback port; returns once /healthz answers."""
    probe = bind_socket("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "tiktok_auth_service", "serve", "--port", str(port)],
        env={**cli_env(database_url), "WORKER_ENABLED": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/healthz").is_success:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)  # still starting: poll again, bounded by the deadline
    process.kill()
    raise AssertionError("serve did not become healthy within 30 s")


@pytest.fixture(scope="module")
def served(migrated: str) -> Iterator[tuple[str, str]]:
    """A `serve` process on the test database and an API key for it: (base URL, key)."""
    created = run_cli(migrated, "api-keys", "create", "fuzz")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    process, url = start_serve_process(migrated)
    try:
        yield url, key
    finally:
        process.terminate()
        process.wait(timeout=30)
        run_cli(migrated, "api-keys", "revoke", "fuzz")


def test_every_operation_answers_within_its_document(served: tuple[str, str]) -> None:
    url, key = served
    spec = httpx.get(f"{url}/openapi.json").json()
    api = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    documented = sum(len(methods) for methods in spec["paths"].values())
    cases = Counter[str]()
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def answers_within_the_document(case: Case[Any]) -> None:
            for authorization in (f"Bearer {key}", "Bearer tas_not-a-key", None):
                headers = {"Authorization": authorization} if authorization else {}
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)
                cases[case.operation.label] += 1

        answers_within_the_document()
    assert len(cases) == len(operations) == documented  # every documented operation was fuzzed
    print(f"\nschemathesis: {sum(cases.values())} calls over {len(cases)} operations")
