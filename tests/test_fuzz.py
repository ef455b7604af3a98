"""Schemathesis over the service's own OpenAPI document: every operation, with a valid, an
invalid and no API key, against a real `serve` process and the real PostgreSQL. No answer may
be a 5xx, and every answer must match the document (status, media type, schema, headers).
Then oversized and malformed requests over the raw socket. The process logs at DEBUG, and its
log goes to the secret scan."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

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

from tests.fixtures import Canaries
from tests.helpers import free_port
from tests.secret_scan import SecretScan
from tests.test_cli import CLI_APP_SECRET, cli_env, run_cli

# A real `serve` process, fuzzed: among the long runs (`-m "not slow"` leaves it out).
pytestmark = pytest.mark.slow

EXAMPLES = 15  # per operation; each example is sent with a valid, an invalid and no key
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def start_serve_process(database_url: str, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    """`tiktok-auth-service serve` on a free loopback port, logging at DEBUG to `log`;
    returns once /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tiktok_auth_service", "serve", "--port", str(port)],
        env={**cli_env(database_url), "WORKER_ENABLED": "false", "LOG_LEVEL": "DEBUG"},
        stdout=subprocess.DEVNULL,
        stderr=log,
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


class Served(NamedTuple):
    url: str
    key: str
    log: Path  # the process's stderr: JSON lines


@pytest.fixture(scope="module")
def served(migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A `serve` process on the test database and an API key for it."""
    created = run_cli(migrated, "api-keys", "create", "fuzz")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    log = tmp_path_factory.mktemp("serve") / "stderr.jsonl"
    with log.open("wb") as stderr:
        process, url = start_serve_process(migrated, stderr)
        try:
            yield Served(url, key, log)
        finally:
            process.terminate()
            process.wait(timeout=30)
            run_cli(migrated, "api-keys", "revoke", "fuzz")


@pytest.fixture
def scanned_log(served: Served, leak_guard: SecretScan, canaries: Canaries) -> Iterator[None]:
    """What the process logged during the test goes to the secret scan, with its key and
    app secret (tests/test_cli.py's) as canaries."""
    start = served.log.stat().st_size
    canaries.add(served.key, CLI_APP_SECRET)
    yield
    with served.log.open("rb") as log:
        log.seek(start)
        lines = log.read().decode(errors="replace").splitlines()
    assert lines, "serve logged nothing"
    leak_guard.log_lines("the serve process's log", lines)


@pytest.mark.usefixtures("scanned_log")
def test_every_operation_answers_within_its_document(served: Served) -> None:
    url, key, _ = served
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


def raw_status(url: str, request: bytes) -> int:
    """Send `request` as it is over a fresh connection; the status line's code."""
    address = httpx.URL(url)
    assert address.port is not None
    with socket.create_connection((address.host, address.port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            assert chunk, f"connection closed without an answer to {request[:60]!r}"
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.usefixtures("scanned_log")
def test_oversized_and_malformed_requests_get_4xx_and_leave_it_serving(served: Served) -> None:
    auth = b"Authorization: Bearer " + served.key.encode() + b"\r\n"
    host = b"Host: x\r\n"
    # (request line and headers, body) -> status
    cases = {
        # Big heads within the HTTP parser's limits: the app answers them like any other.
        (
            b"GET /tokens/7100000000000000001 HTTP/1.1\r\n"
            + host
            + b"Authorization: Bearer tas_"
            + b"k" * 100_000
            + b"\r\n",
            b"",
        ): 401,
        (
            b"GET /connections HTTP/1.1\r\n"
            + host
            + auth
            + b"".join(b"X-Junk-%d: a\r\n" % i for i in range(90)),
            b"",
        ): 200,
        # Past them (about 100 header lines, or a head well past 400 KiB): 431.
        (
            b"GET /connections HTTP/1.1\r\n"
            + host
            + auth
            + b"".join(b"X-Junk-%d: a\r\n" % i for i in range(5_000)),
            b"",
        ): 431,
        (
            b"GET /connections HTTP/1.1\r\n"
            + host
            + auth
            + b"X-Big: "
            + b"b" * 1_000_000
            + b"\r\n",
            b"",
        ): 431,
        (b"GET /tokens/%ZZ%00 HTTP/1.1\r\n" + host + auth, b""): 422,
        (b"GET /tokens/accounts/%FF%FE HTTP/1.1\r\n" + host + auth, b""): 422,
        (
            b"POST /connect-sessions HTTP/1.1\r\n"
            + host
            + auth
            + b"Content-Type: application/json\r\nContent-Length: 5\r\n",
            b"{{{{{",
        ): 422,
        # What the HTTP parser refuses before the app sees it.
        (b"GET /callback?state=" + b"s" * 1_000_000 + b" HTTP/1.1\r\n" + host, b""): 431,
        (b"GET /healthz HTTP/1.1\r\n" + host + b"X-A: a\x00b\r\n", b""): 400,
        (b"\x00\xff\xfe NOT HTTP\r\n", b""): 400,
    }
    for (head, body), expected in cases.items():
        status = raw_status(served.url, head + b"Connection: close\r\n\r\n" + body)
        assert status == expected, (head[:80], len(head))
    assert httpx.get(f"{served.url}/healthz").status_code == 200
