"""The secret scan itself (tests/secret_scan.py) finds what it is meant to find: a scan that
never fires would pass every test."""

from __future__ import annotations

import logging
from collections import Counter

import httpx
import pytest

from tests.fixtures import APP_SECRET, Canaries
from tests.secret_scan import SecretScan

TOKEN = "act.0123456789abcdef0123456789abcdef"


def answer(
    method: str,
    path: str,
    status: int,
    json: object = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    request = httpx.Request(method, f"https://broker.example{path}")
    return httpx.Response(status, request=request, json=json, headers=headers)


def scan_of(*canaries: str) -> SecretScan:
    found = Canaries()
    found.add(*canaries)
    return SecretScan(found, Counter())


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "tiktok_auth_service.x", "msg": message, "args": args})
    made.__dict__.update(extra)
    return made


class TestLogs:
    def test_a_secret_in_a_message_a_field_or_a_traceback_is_found(self) -> None:
        for leaking in (
            record("token %s", TOKEN),
            record("stored", grant=f"<{TOKEN}>"),
            record("failed", exc_info=(ValueError, ValueError(TOKEN), None)),
        ):
            scan = scan_of(TOKEN)
            scan.emit(leaking)
            with pytest.raises(AssertionError, match="1 secrets leaked"):
                scan.assert_clean()

    def test_any_api_key_and_the_app_secret_are_found_unregistered(self) -> None:
        scan = scan_of()
        scan.emit(record("key tas_" + "k" * 43))
        scan.emit(record(f"secret={APP_SECRET}"))
        with pytest.raises(AssertionError, match="2 secrets leaked"):
            scan.assert_clean()

    def test_clean_records_are_counted(self) -> None:
        scan = scan_of(TOKEN)
        scan.emit(record("refreshed grant 42"))
        scan.emit(logging.makeLogRecord({"levelno": logging.DEBUG, "msg": "probe"}))
        scan.assert_clean()
        assert scan.counts["log records"] == 2 and scan.counts["at DEBUG"] == 1


class TestResponses:
    def test_the_token_answer_may_carry_its_token_and_nothing_else(self) -> None:
        scan = scan_of(TOKEN, "rft.0123456789abcdef")
        scan.response(answer("GET", "/tokens/1", 200, json={"access_token": TOKEN}))
        scan.assert_clean()
        scan.response(
            answer(
                "GET", "/tokens/1", 200, json={"access_token": TOKEN, "x": "rft.0123456789abcdef"}
            )
        )
        with pytest.raises(AssertionError, match="200 answer to GET /tokens/1"):
            scan.assert_clean()

    def test_a_token_in_a_problem_is_a_leak(self) -> None:
        scan = scan_of(TOKEN)
        scan.response(answer("GET", "/tokens/1", 409, json={"detail": f"token {TOKEN} died"}))
        with pytest.raises(AssertionError, match="409 answer"):
            scan.assert_clean()

    def test_the_state_is_learned_from_authorize_and_may_not_come_back(self) -> None:
        scan = scan_of()
        state = "S" * 43
        scan.response(
            answer(
                "POST",
                "/authorize",
                303,
                headers={"location": f"https://tiktok.test/?state={state}"},
            )
        )
        scan.assert_clean()
        assert state in scan.canaries.values
        scan.response(
            answer("GET", "/callback", 302, headers={"location": f"https://f/?s={state}"})
        )
        with pytest.raises(AssertionError, match="302 answer to GET /callback"):
            scan.assert_clean()

    def test_a_sent_api_key_echoed_back_is_a_leak(self) -> None:
        key = "tas_" + "z" * 43
        request = httpx.Request(
            "GET", "https://broker.example/connections", headers={"authorization": f"Bearer {key}"}
        )
        scan = scan_of()
        scan.response(httpx.Response(401, request=request, text=f"unknown key {key}"))
        with pytest.raises(AssertionError, match="401 answer"):
            scan.assert_clean()


def test_exceptions_and_metric_labels_are_scanned() -> None:
    scan = scan_of(TOKEN)
    scan.exception(RuntimeError(f"could not store {TOKEN}"))
    with pytest.raises(AssertionError, match="a RuntimeError"):
        scan.assert_clean()
    scan = scan_of(TOKEN)
    scan.metrics(f'# HELP x\nx_total{{subject="{TOKEN}"}} 1.0\n'.encode())
    with pytest.raises(AssertionError, match="the metrics"):
        scan.assert_clean()
    assert scan.counts["metric samples"] == 1
