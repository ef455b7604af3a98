"""Settings: one readable line for every bad or missing value, never a traceback."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from tiktok_auth_service.config import (
    ConfigError,
    Settings,
    load_settings,
    parse_encryption_keys,
)

GOOD_KEY = base64.b64encode(b"k" * 32).decode()


def valid_settings(**overrides: object) -> Settings:
    """Settings from the required values plus `overrides`, ignoring the environment."""
    values: dict[str, object] = {
        "tiktok_app_id": "a",
        "tiktok_app_secret": "s",
        "tiktok_redirect_uri": "https://x.example/callback",
        "database_url": "postgresql+asyncpg://u@h/d",
        "token_encryption_keys": f"k:{GOOD_KEY}",
    }
    return load_settings(_env_file=None, **{**values, **overrides})


class TestEncryptionKeys:
    def test_first_key_encrypts_and_order_is_kept(self) -> None:
        keys = parse_encryption_keys(f"new:{GOOD_KEY}, old:{base64.b64encode(b'o' * 32).decode()}")
        assert list(keys) == ["new", "old"]
        assert keys["new"] == b"k" * 32

    @pytest.mark.parametrize(
        "raw",
        [
            "",
            "nokeyid",
            f":{GOOD_KEY}",
            "a:not-base64!!",
            f"a:{base64.b64encode(b'short').decode()}",
            f"a:{GOOD_KEY},a:{GOOD_KEY}",
        ],
    )
    def test_malformed_keys_are_refused(self, raw: str) -> None:
        with pytest.raises(ValueError):
            parse_encryption_keys(raw)


class TestLoadSettings:
    def test_names_every_missing_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in list(os.environ):
            if name.startswith(("TIKTOK_", "DATABASE_", "TOKEN_")):
                monkeypatch.delenv(name)
        with pytest.raises(ConfigError) as caught:
            load_settings(_env_file=None)
        message = str(caught.value)
        for name in [
            "TIKTOK_APP_ID",
            "TIKTOK_APP_SECRET",
            "TIKTOK_REDIRECT_URI",
            "DATABASE_URL",
            "TOKEN_ENCRYPTION_KEYS",
        ]:
            assert name in message

    def test_bad_value_is_named_without_echoing_secrets(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TIKTOK_APP_ID", "a")
        monkeypatch.setenv("TIKTOK_APP_SECRET", "s")
        monkeypatch.setenv("TIKTOK_REDIRECT_URI", "https://x.example/callback")
        monkeypatch.setenv("DATABASE_URL", "postgresql://user:hunter2@db/x")
        monkeypatch.setenv("TOKEN_ENCRYPTION_KEYS", f"k:{GOOD_KEY}")
        with pytest.raises(ConfigError) as caught:
            load_settings(_env_file=None)
        assert "DATABASE_URL" in str(caught.value)
        assert "hunter2" not in str(caught.value)

    @pytest.mark.parametrize(
        ("overrides", "named"),
        [
            ({"log_level": "LOUD"}, "LOG_LEVEL"),
            (
                {"refresh_leeway_seconds": 3600, "worker_refresh_ahead_seconds": 86400 - 3600},
                "REFRESH_LEEWAY_SECONDS + WORKER_REFRESH_AHEAD_SECONDS",
            ),
        ],
    )
    def test_settings_that_cannot_work_are_one_line(
        self, overrides: dict[str, object], named: str
    ) -> None:
        with pytest.raises(ConfigError) as caught:
            valid_settings(**overrides)
        message = str(caught.value)
        assert named in message
        assert "\n" not in message

    def test_log_level_is_read_in_any_case(self) -> None:
        settings = valid_settings(log_level="debug")
        assert settings.log_level == "DEBUG"

    def test_return_to_origins_are_normalised(self, monkeypatch: pytest.MonkeyPatch) -> None:
        settings = valid_settings(
            return_to_allowed_origins="https://App.Example/path, http://localhost:3000"
        )
        assert settings.return_to_allowed_origins == [
            "https://app.example",
            "http://localhost:3000",
        ]
        assert "'s'" not in repr(settings)


class TestEndpointLimits:
    def test_limits_are_calls_a_second(self) -> None:
        settings = valid_settings(tiktok_rate_limit_endpoints="report/task/create/=2, *=1/30")
        assert settings.tiktok_rate_limit_endpoints == {"report/task/create/": 2.0, "*": 0.5}
        assert valid_settings().tiktok_rate_limit_endpoints == {"report/task/create/": 2.0}
        assert valid_settings(tiktok_rate_limit_endpoints="").tiktok_rate_limit_endpoints == {}

    @pytest.mark.parametrize(
        ("value", "named"),
        [
            ("/open_api/v1.3/report/task/create/=2", "ending in a slash"),
            ("report/task/create=2", "ending in a slash"),
            ("report/task/create/=two", "path=QPS"),
            ("report/task/create/=0", "more than 0"),
        ],
    )
    def test_bad_limits_are_refused(self, value: str, named: str) -> None:
        with pytest.raises(ConfigError) as caught:
            valid_settings(tiktok_rate_limit_endpoints=value)
        assert named in str(caught.value)
        assert "TIKTOK_RATE_LIMIT_ENDPOINTS" in str(caught.value)


def test_cli_reports_one_line_and_exit_code_2() -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "DATABASE_", "TOKEN_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_auth_service", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("configuration error: TIKTOK_APP_ID is required")
    assert "Traceback" not in result.stderr


def test_secure_cookies_follow_the_redirect_scheme_in_any_case() -> None:
    common = {
        "tiktok_app_id": "a",
        "tiktok_app_secret": "s",
        "database_url": "postgresql+asyncpg://u@h/d",
        "token_encryption_keys": f"k:{GOOD_KEY}",
    }
    assert load_settings(
        _env_file=None, tiktok_redirect_uri="HTTPS://x.example/cb", **common
    ).secure_cookies
    assert not load_settings(
        _env_file=None, tiktok_redirect_uri="http://127.0.0.1:8000/cb", **common
    ).secure_cookies
