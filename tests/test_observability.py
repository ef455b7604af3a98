"""Operating it: GET /metrics after real flows, metrics merged across server processes, JSON
log lines tied together by the request id, and an access log that keeps secrets out."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures import APP_SECRET, KEYS, OPEN_ID, TIKTOK_API, Canaries, FakeClock, bearer
from tests.helpers import (
    TikTokAccounts,
    connect_account,
    envelope,
    free_port,
    new_token,
    spawn_serve,
    start_authorization,
    store_advertiser_grant,
)
from tiktok_auth_service import cli, logs
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.api.observability import request_id_filter
from tiktok_auth_service.app import create_app
from tiktok_auth_service.config import Settings, load_dev_logging_settings
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)

ADVERTISER = "7100000000000000001"
OTHER = "7100000000000000002"
ROOT = Path(__file__).resolve().parents[1]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture
def tiktok(canaries: Canaries, clock: FakeClock) -> Iterator[TikTokAccounts]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        mock.get("/oauth2/advertiser/get/").respond(
            json=envelope({"list": [{"advertiser_id": ADVERTISER, "advertiser_name": "Acme"}]})
        )
        yield TikTokAccounts(mock, canaries, clock)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the service's JSON formatter writes, request ids included, for this test."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(request_id_filter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


class TestMetrics:
    async def test_a_scripted_flow_shows_up_with_its_labels_and_counts(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: TikTokAccounts,
        api_key: str,
        clock: FakeClock,
        canaries: Canaries,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [ADVERTISER])
        for _ in range(2):
            assert (await client.get(f"/tokens/{ADVERTISER}", headers=bearer(api_key))).is_success
        assert (await client.get(f"/tokens/{OTHER}", headers=bearer(api_key))).status_code == 404
        assert (await client.get(f"/tokens/{ADVERTISER}")).status_code == 401
        checked = await client.post(f"/tokens/{ADVERTISER}/check", headers=bearer(api_key))
        assert checked.status_code == 200
        await connect_account(client)
        clock.advance(hours=23, minutes=56)  # inside the refresh leeway
        account = await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        assert account.json()["access_token"] == tiktok.access_tokens[1]

        response = await client.get("/metrics")  # no API key
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        found = samples(response.text)

        reads = "tiktok_auth_token_reads_total"
        assert value(found, reads, kind="advertiser", outcome="served") == 2
        assert value(found, reads, kind="advertiser", outcome="not_connected") == 1
        assert value(found, reads, kind="advertiser", outcome="unauthenticated") == 1
        assert value(found, reads, kind="advertiser", outcome="forbidden") == 0
        assert value(found, reads, kind="tiktok_account", outcome="refreshed") == 1
        assert value(found, reads, kind="tiktok_account", outcome="served") == 0

        requests = "tiktok_auth_http_requests_total"
        route = "/tokens/{advertiser_id}"
        assert value(found, requests, method="GET", route=route, status="200") == 2
        assert value(found, requests, method="GET", route=route, status="404") == 1
        assert value(found, requests, method="GET", route=route, status="401") == 1
        check_route = "/tokens/{advertiser_id}/check"
        assert value(found, requests, method="POST", route=check_route, status="200") == 1
        duration = "tiktok_auth_http_request_duration_seconds_count"
        assert value(found, duration, method="GET", route=route) == 4
        # Advertiser ids are never label values: only route templates are.
        assert ADVERTISER not in response.text and OTHER not in response.text

        calls = "tiktok_auth_tiktok_calls_total"
        assert value(found, calls, endpoint="/oauth2/advertiser/get/", code="0") == 1
        assert value(found, calls, endpoint="/tt_user/oauth2/token/", code="0") == 1
        assert value(found, calls, endpoint="/tt_user/oauth2/refresh_token/", code="0") == 1
        call_count = "tiktok_auth_tiktok_call_duration_seconds_count"
        assert value(found, call_count, endpoint="/oauth2/advertiser/get/") == 1

        assert value(found, "tiktok_auth_refreshes_total", outcome="refreshed") == 1
        assert value(found, "tiktok_auth_refreshes_total", outcome="failed") == 0
        assert value(found, "tiktok_auth_liveness_checks_total", outcome="ok") == 1

        grants = "tiktok_auth_grants"
        assert value(found, grants, flow="advertiser", status="active") == 1
        assert value(found, grants, flow="tiktok_account", status="active") == 1
        assert value(found, grants, flow="advertiser", status="revoked") == 0

        pool = "tiktok_auth_db_pool_connections"
        read_pool = [value(found, pool, pool="read", state=s) for s in ("in_use", "idle")]
        write_pool = [value(found, pool, pool="write", state=s) for s in ("in_use", "idle")]
        assert None not in read_pool and None not in write_pool
        assert sum(filter(None, read_pool)) >= 1  # the read pool keeps one connection open

        # Declared for the webhooks, at zero until they exist.
        assert value(found, "tiktok_auth_webhook_outbox_backlog") == 0
        assert "# TYPE tiktok_auth_webhook_deliveries_total counter" in response.text

    async def test_worker_refreshes_are_counted_by_outcome_and_tiktok_code(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: TikTokAccounts,
        clock: FakeClock,
    ) -> None:
        await connect_account(client)
        clock.advance(hours=23, minutes=50)  # due for the worker
        assert await service.worker.drain() == 1
        tiktok.refresh_fails(50002)
        clock.advance(hours=23, minutes=50)
        assert await service.worker.drain() == 1

        found = samples((await client.get("/metrics")).text)
        tasks = "tiktok_auth_worker_tasks_total"
        assert value(found, tasks, kind="refresh", outcome="done") == 1
        assert value(found, tasks, kind="refresh", outcome="failed") == 1
        assert value(found, "tiktok_auth_refreshes_total", outcome="refreshed") == 1
        assert value(found, "tiktok_auth_refreshes_total", outcome="failed") == 1
        calls = "tiktok_auth_tiktok_calls_total"
        refresh = "/tt_user/oauth2/refresh_token/"
        assert value(found, calls, endpoint=refresh, code="0") == 1
        # A refresh is single-use: TikTok's 50002 is not retried, so one exchange.
        assert value(found, calls, endpoint=refresh, code="50002") == 1

    async def test_unknown_routes_and_methods_mint_no_label_values(
        self, client: httpx.AsyncClient
    ) -> None:
        assert (await client.get("/no/such/7100000000000000009")).status_code == 404
        assert (await client.request("BREW", "/healthz")).status_code == 405
        found = samples((await client.get("/metrics")).text)
        requests = "tiktok_auth_http_requests_total"
        assert value(found, requests, method="GET", route="unmatched", status="404") == 1
        assert value(found, requests, method="other", route="/healthz", status="405") == 1
        assert not any("7100000000000000009" in str(labels) for _, labels in found)

    async def test_metrics_is_not_an_operation_of_the_api(self, client: httpx.AsyncClient) -> None:
        assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]

    async def test_grants_are_left_out_while_the_database_is_down(
        self, client: httpx.AsyncClient, service: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def unreachable(db: object) -> None:
            raise ConnectionRefusedError()

        monkeypatch.setattr("tiktok_auth_service.service.grant_counts", unreachable)
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert "tiktok_auth_grants" not in response.text
        assert "tiktok_auth_http_requests_total" in response.text


# Records what one server process would, in a process of its own.
_CHILD = textwrap.dedent(
    """
    import sys
    from tiktok_auth_service.metrics import Metrics

    metrics = Metrics.for_process()
    assert metrics.multiprocess_dir, "not in multiprocess mode"
    reads = int(sys.argv[1])
    for _ in range(reads):
        metrics.token_read("advertiser", "served")
    metrics.tiktok_call("/oauth2/advertiser/get/", "0", 0.2)
    metrics.http_request("GET", "/tokens/{advertiser_id}", 200, 0.003)
    metrics.db_pool("read", reads, 1)
    if sys.argv[2] == "stopped":
        metrics.process_exited()
    """
)


class TestMultiprocess:
    @pytest.fixture
    async def shared_app(
        self, settings: Settings, clock: FakeClock, pg: asyncpg.Connection, tmp_path: Path
    ) -> AsyncIterator[FastAPI]:
        """An app scraping the multiprocess directory `tmp_path` (this test process itself
        keeps its values in memory: prometheus-client chose that at import)."""
        application = create_app(settings, clock=clock, metrics=Metrics(str(tmp_path)))
        async with application.router.lifespan_context(application):
            yield application

    async def test_one_answer_sums_every_process(
        self, shared_app: FastAPI, tmp_path: Path, canaries: Canaries
    ) -> None:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CHILD, reads, state, env=env
            )
            for reads, state in (("2", "running"), ("3", "stopped"))
        ]
        assert [await child.wait() for child in children] == [0, 0]
        await store_advertiser_grant(app_service(shared_app), new_token(), [ADVERTISER])

        transport = httpx.ASGITransport(app=shared_app)
        async with httpx.AsyncClient(transport=transport, base_url="https://b.example") as http:
            found = samples((await http.get("/metrics")).text)

        reads = "tiktok_auth_token_reads_total"
        assert value(found, reads, kind="advertiser", outcome="served") == 5
        calls = "tiktok_auth_tiktok_calls_total"
        assert value(found, calls, endpoint="/oauth2/advertiser/get/", code="0") == 2
        assert (
            value(
                found,
                "tiktok_auth_tiktok_call_duration_seconds_count",
                endpoint=("/oauth2/advertiser/get/"),
            )
            == 2
        )
        route = "/tokens/{advertiser_id}"
        requests = "tiktok_auth_http_requests_total"
        assert value(found, requests, method="GET", route=route, status="200") == 2
        # Pool gauges add up over live processes only: the stopped one dropped out.
        pool = "tiktok_auth_db_pool_connections"
        assert value(found, pool, pool="read", state="in_use") == 2
        # Grants are counted once, at scrape time, not once per process.
        assert value(found, "tiktok_auth_grants", flow="advertiser", status="active") == 1

    def test_serve_makes_and_removes_its_own_directory(self, tmp_path: Path) -> None:
        script = textwrap.dedent(
            """
            import os
            from tiktok_auth_service.cli import metrics_directory

            with metrics_directory() as path:
                from tiktok_auth_service.metrics import Metrics

                Metrics.for_process().token_read("advertiser", "served")
                print(path, os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path),
                      sorted(p.name for p in path.iterdir()) != [])
            print("PROMETHEUS_MULTIPROC_DIR" in os.environ)
            """
        )
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        inside, after = result.stdout.splitlines()
        path, exported, written = inside.split()
        assert (exported, written, after) == ("True", "True", "False")
        assert not Path(path).exists()

    def test_an_operators_directory_is_emptied_of_earlier_runs(self, tmp_path: Path) -> None:
        stale = tmp_path / "counter_4242.db"
        stale.write_bytes(b"old")
        keep = tmp_path / "README"
        keep.write_text("not ours")
        script = "from tiktok_auth_service.cli import metrics_directory\n"
        script += "with metrics_directory() as path:\n    print(path)\n"
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert result.stdout.strip() == str(tmp_path)
        assert not stale.exists() and keep.exists() and tmp_path.exists()


@pytest.mark.slow  # command-line subprocesses, one after another
async def test_serve_logs_json_lines_and_removes_its_metrics_directory_on_sigterm(
    migrated: str, tmp_path: Path, canaries: Canaries
) -> None:
    """The real command with two processes: JSON lines on stderr, its own metrics directory
    (under TMPDIR) while it runs, none left after SIGTERM."""
    port = free_port()
    env = {
        "TMPDIR": str(tmp_path),
        "TIKTOK_APP_ID": "app",
        "TIKTOK_APP_SECRET": APP_SECRET,
        "TIKTOK_REDIRECT_URI": "https://broker.example/callback",
        "DATABASE_URL": migrated,
        "TOKEN_ENCRYPTION_KEYS": KEYS,
        "WORKER_ENABLED": "false",
    }
    process = await spawn_serve(port, 2, env)
    assert process.stderr is not None
    lines = []
    while b"started: process" not in (line := await process.stderr.readline()):
        assert line, "serve exited during start-up"
        lines.append(line)
    (directory,) = _listing(tmp_path, "tiktok-auth-metrics-")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200 and "tiktok_auth_grants" in answer.text
    assert _listing(directory, "counter_")
    process.send_signal(signal.SIGTERM)
    rest = await process.stderr.read()
    assert await process.wait() == 0  # a clean stop
    lines += rest.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("has shut down" in record["message"] for record in records)
    assert _listing(tmp_path, "tiktok-auth-metrics-") == []


def _listing(directory: Path, prefix: str = "") -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.name.startswith(prefix))


class TestLogs:
    @pytest.mark.parametrize(("code", "status"), [(50000, 200), (40107, 409)])
    async def test_a_tiktok_failure_is_logged_once_with_what_it_changed(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        clock: FakeClock,
        json_lines: io.StringIO,
        code: int,
        status: int,
    ) -> None:
        """The client logs TikTok's answer (code, request id, message); the refresh adds what
        it meant for the grant, without saying TikTok's answer again."""
        await connect_account(client)
        tiktok.refresh_fails(code)
        clock.advance(hours=23, minutes=58)
        response = await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        assert response.status_code == status

        mine = [line for line in parsed(json_lines) if line.get("event") != "request"]
        told = [line for line in mine if line.get("code") == str(code)]
        assert [line["event"] for line in told] == ["tiktok_call"]
        assert told[0]["level"] == "WARNING" and told[0]["tiktok_request_id"]
        event = "refresh_failed" if code == 50000 else "reauthorization_required"
        (meant,) = [line for line in mine if line.get("event") == event]
        assert meant["open_id"] == OPEN_ID and "tiktok_request_id" not in meant

    async def test_the_lines_of_one_request_share_the_id_it_echoes(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: TikTokAccounts,
        api_key: str,
        canaries: Canaries,
        json_lines: io.StringIO,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [ADVERTISER])
        response = await client.post(f"/tokens/{ADVERTISER}/check", headers=bearer(api_key))
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32  # generated: none was sent

        mine = [line for line in parsed(json_lines) if line.get("request_id") == request_id]
        by_event = {line.get("event"): line for line in mine}
        call = by_event["tiktok_call"]
        assert call["endpoint"] == "/oauth2/advertiser/get/" and call["code"] == "0"
        assert call["tiktok_request_id"].startswith("20261124120000")
        assert call["logger"] == "tiktok_auth_service.tiktok.client" and call["level"] == "INFO"
        access = by_event["request"]
        assert {k: access[k] for k in ("method", "route", "path", "status", "api_key_name")} == {
            "method": "POST",
            "route": "/tokens/{advertiser_id}/check",
            "path": f"/tokens/{ADVERTISER}/check",
            "status": 200,
            "api_key_name": "reporting",
        }
        assert isinstance(access["duration_ms"], float) and "time" in access
        assert access is mine[-1]  # written once the response is complete

    @pytest.mark.parametrize(
        "sent",
        [
            "req 42/abc:def;ghi=jkl?!@#$%^&*()[]{}",
            "x" * 128,
            "0f3c2a9e-1111-4aaa-8bbb-0123456789ab",
        ],
    )
    async def test_a_printable_caller_id_is_kept(
        self, client: httpx.AsyncClient, json_lines: io.StringIO, sent: str
    ) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": sent})
        assert response.headers["x-request-id"] == sent
        (access,) = [line for line in parsed(json_lines) if line.get("event") == "request"]
        assert access["request_id"] == sent

    @pytest.mark.parametrize("sent", ["x" * 129, "tab\tinside", "bell\x07", "caf\xe9"])
    async def test_a_long_or_unprintable_caller_id_is_replaced(
        self, client: httpx.AsyncClient, json_lines: io.StringIO, sent: str
    ) -> None:
        response = await client.get("/healthz", headers=[(b"X-Request-ID", sent.encode("latin-1"))])
        echoed = response.headers["x-request-id"]
        assert echoed != sent and len(echoed) == 32 and int(echoed, 16) >= 0

    async def test_an_unexpected_error_is_logged_and_answered_with_the_request_id(
        self,
        app: FastAPI,
        api_key: str,
        json_lines: io.StringIO,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        async def broken(*args: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(app_service(app).tokens, "get_advertiser_token", broken)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://b.example") as http:
            response = await http.get(
                f"/tokens/{ADVERTISER}", headers={**bearer(api_key), "X-Request-ID": "r-500"}
            )
        assert response.status_code == 500 and response.headers["x-request-id"] == "r-500"
        mine = [line for line in parsed(json_lines) if line.get("request_id") == "r-500"]
        # The access line is written as the error passes on its way to the 500 handler.
        access, error = mine
        assert (access["event"], access["status"]) == ("request", 500)
        assert error["level"] == "ERROR" and "RuntimeError: boom" in error["exc_info"]

    async def test_the_access_log_keeps_the_callback_query_and_keys_out(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        canaries: Canaries,
        json_lines: io.StringIO,
    ) -> None:
        state = await start_authorization(client, flow="tiktok_account")
        auth_code = "auth-code-" + new_token()
        canaries.add(auth_code, state)
        callback = await client.get("/callback", params={"code": auth_code, "state": state})
        assert callback.status_code == 200
        assert (await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))).is_success

        text = json_lines.getvalue()
        lines = parsed(json_lines)
        (access,) = [line for line in lines if line.get("route") == "/callback"]
        assert access["path"] == "/callback" and access["status"] == 200
        stored = [line for line in lines if line.get("event") == "grant_stored"]
        assert stored[0]["open_id"] == OPEN_ID and stored[0]["grant_id"]
        (read,) = [line for line in lines if line.get("route") == "/tokens/accounts/{open_id}"]
        assert read["api_key_name"] == "reporting"
        for secret in (auth_code, state, api_key, *tiktok.access_tokens, *tiktok.refresh_tokens):
            assert secret not in text

    def test_json_lines_carry_extra_fields_as_keys(self) -> None:
        record = logging.LogRecord(
            "tiktok_auth_service.x", logging.INFO, "f", 1, "hi %s", ("a",), None
        )
        record.grant_id = "g-1"
        line = json.loads(logs.json_formatter().format(record))
        assert line["message"] == "hi a" and line["grant_id"] == "g-1"
        assert line["level"] == "INFO" and line["logger"] == "tiktok_auth_service.x"
        assert line["time"].endswith("+00:00")

    def test_settings_default_to_json_and_dev_to_text(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert settings.log_format == "json"
        monkeypatch.delenv("LOG_FORMAT", raising=False)
        monkeypatch.setenv("LOG_LEVEL", "debug")
        dev = load_dev_logging_settings()
        assert (dev.log_level, dev.log_format) == ("DEBUG", "text")

    @pytest.mark.parametrize("command", ["dev", "emulator"])
    def test_dev_with_a_bad_log_level_is_one_line(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
    ) -> None:
        monkeypatch.setenv("LOG_LEVEL", "LOUD")
        assert cli.main([command]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert err.startswith("configuration error: LOG_LEVEL ")


def test_operations_page_documents_every_metric() -> None:
    page = (ROOT / "docs" / "operations.md").read_text()
    names = {family.name for family in Metrics().registry.collect()} | {"tiktok_auth_grants"}
    missing = sorted(name for name in names if f"`{name}" not in page)
    assert not missing, missing


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Undoes what logs.configure changes: the root's handlers and level, and the levels of
    our own loggers and httpx."""
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in (logs.OWN_LOGGERS, "httpx")]
    handlers, levels = list(root.handlers), {logger: logger.level for logger in [root, *loggers]}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    for logger, level in levels.items():
        logger.setLevel(level)


@pytest.mark.usefixtures("logging_restored")
def test_logging_keeps_httpx_quiet_even_when_the_root_logs_everything() -> None:
    # httpx logs every request URL at INFO, and advertiser/get carries the app secret in
    # its query string: its logger stays at WARNING whatever the root's level.
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    logs.configure("DEBUG", "json", stream=io.StringIO())
    logging.getLogger().setLevel(logging.DEBUG)
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
