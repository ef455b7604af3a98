"""The secret scan every test runs under (the autouse `leak_guard` fixture in conftest.py).

Each test runs with the log levels of `serve` at LOG_LEVEL=DEBUG: the service's own loggers
(and the emulator's and the dev stack's) at DEBUG, libraries from WARNING, every record
captured. When the test ends, no canary (the app secret, and every
access token, refresh token, API key, auth code, state and connect session the test saw) may
appear in:

* a log record: its message, its structured fields, its traceback;
* an exception the app raised out to a test client;
* a response of the service, unless that response carries it by design: the state in the
  POST /authorize redirect to TikTok, the connect session in the link POST /connect-sessions
  opens (and in the form of the GET /authorize page it leads to), the `access_token` of a
  token answer;
* a metric label (the service's /metrics text, rendered when a test's app stops).

States, auth codes, sessions and API keys are learned from the requests (query strings and
form bodies) and responses that carry them, so no test has to register them. `SCANNED` counts
what the whole session scanned, for the summary line at its end.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import httpx
from starlette.types import ASGIApp

from tests.fixtures import Canaries

API_KEY_PATTERN = re.compile(r"tas_[A-Za-z0-9_-]{20,}")
WORD = re.compile(r"[A-Za-z0-9_.\-]{8,}")
# The packages whose loggers are ours: they must log at DEBUG under the scan.
OWN_LOGGERS = ("tiktok_auth_service", "tiktok_emulator", "tiktok_auth_dev")
# Query parameters of the browser leg that are secrets.
SECRET_PARAMS = ("state", "code", "auth_code", "session")

# What every LogRecord has; anything else on a record came from `extra={...}`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# Over the whole session: "log records", "at DEBUG", "exceptions", "responses",
# "metric samples", "tests", "leaks".
SCANNED: Counter[str] = Counter()


def _words(text: str) -> set[str]:
    """Tokens are whole words: the text's words, with and without their edge punctuation."""
    found = WORD.findall(text)
    return set(found) | {word.strip("._-") for word in found}


def record_text(record: logging.LogRecord) -> str:
    """Everything a formatter could write of a record: message, extra fields, traceback."""
    text = record.getMessage()
    # The structured fields too: the JSON formatter writes each of them out.
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES}
    if extras:
        text += " " + " ".join(f"{key}={value}" for key, value in extras.items())
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        text += "\n" + record.stack_info
    return f"{record.name}: {text}"


class SecretScan(logging.Handler):
    """One test's scan: a logging handler on the root logger, a response hook for the test
    clients, and the place exceptions and metrics are handed to. `assert_clean` ends it."""

    def __init__(self, canaries: Canaries, counts: Counter[str] = SCANNED) -> None:
        super().__init__(logging.DEBUG)
        self.canaries = canaries
        self.counts = counts
        # (where, text, secrets it carries by design)
        self._seen: list[tuple[str, str, frozenset[str]]] = []

    def _add(self, kind: str, where: str, text: str, allowed: Iterable[str] = ()) -> None:
        self.counts[kind] += 1
        self._seen.append((where, text, frozenset(allowed)))

    # -- logs --------------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.DEBUG:
            self.counts["at DEBUG"] += 1
        if record.exc_info:
            self.counts["exceptions"] += 1
        self._add("log records", f"a log record of {record.name}", record_text(record))

    def log_lines(self, where: str, lines: Iterable[str]) -> None:
        """JSON log lines written by another process (one record each)."""
        for line in lines:
            if '"level":"DEBUG"' in line:
                self.counts["at DEBUG"] += 1
            self._add("log records", where, line)

    # -- exceptions --------------------------------------------------------------------------

    def exception(self, exc: BaseException) -> None:
        self._add("exceptions", f"a {type(exc).__name__}", "".join(traceback.format_exception(exc)))

    # -- responses ---------------------------------------------------------------------------

    def response_hook(self, base_url: str) -> Callable[[httpx.Response], Awaitable[None]]:
        """An httpx response hook scanning every response from the service at `base_url`
        (a client that also talks to the emulator leaves the emulator's answers alone)."""
        origin = httpx.URL(base_url)

        async def on_response(response: httpx.Response) -> None:
            url = response.request.url
            if (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port):
                await response.aread()
                self.response(response)

        return on_response

    def response(self, response: httpx.Response) -> None:
        request = response.request
        learned = [request.url.params.get(name) for name in SECRET_PARAMS]
        if request.headers.get("content-type") == "application/x-www-form-urlencoded":
            form = httpx.QueryParams(request.content.decode(errors="replace"))
            learned.extend(form.get(name) for name in SECRET_PARAMS)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            learned.append(key.strip())
        allowed = _carried_by_design(response)
        self.canaries.add(*(value for value in learned if value), *allowed)
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.multi_items())
        where = f"the {response.status_code} answer to {request.method} {request.url.path}"
        text = f"{headers}\n\n{response.content.decode(errors='replace')}"
        self._add("responses", where, text, allowed)

    # -- metrics -----------------------------------------------------------------------------

    def metrics(self, exposition: bytes) -> None:
        """The service's /metrics text: every sample line, labels included."""
        samples = [line for line in exposition.decode().splitlines() if not line.startswith("#")]
        self.counts["metric samples"] += len(samples)
        self._seen.append(("the metrics", "\n".join(samples), frozenset()))

    # -- the verdict -------------------------------------------------------------------------

    def assert_clean(self) -> None:
        self.counts["tests"] += 1
        leaks: list[tuple[str, str]] = []
        for where, text, allowed in self._seen:
            found = (self.canaries.values - allowed) & _words(text)
            found.update(key for key in API_KEY_PATTERN.findall(text) if key not in allowed)
            leaks.extend((where, secret) for secret in sorted(found))
        self.counts["leaks"] += len(leaks)
        assert not leaks, (
            f"{len(leaks)} secrets leaked, e.g. {leaks[0][1][:8]}... in {leaks[0][0]}; "
            f"also in: {sorted({where for where, _ in leaks[1:]})[:5]}"
        )


def _carried_by_design(response: httpx.Response) -> set[str]:
    """The secrets this response carries by design (and that the scan learns from it)."""
    request, status = response.request, response.status_code
    path = request.url.path
    if path == "/authorize" and request.method == "POST" and status == 303:
        state = httpx.URL(response.headers["location"]).params.get("state")
        return {state} if state else set()
    if path == "/authorize" and request.method == "GET" and status == 200:
        # The page's form carries the link's session on to POST /authorize.
        session = request.url.params.get("session")
        return {session} if session else set()
    if path == "/connect-sessions" and status == 201:
        session = httpx.URL(response.json()["url"]).params.get("session")
        return {session} if session else set()
    if path.startswith("/tokens/") and request.method in ("GET", "POST") and status == 200:
        token = response.json().get("access_token")
        return {token} if isinstance(token, str) else set()
    return set()


def run_at_debug() -> Callable[[], None]:
    """The levels `serve` runs with at LOG_LEVEL=DEBUG (logs.configure): our own loggers at
    DEBUG, libraries from WARNING; and every logger passes its records on to the root, where
    the scan listens (uvicorn's default configuration keeps its own). Returns what undoes it."""
    levels = {logging.getLogger(): logging.WARNING}
    levels.update({logging.getLogger(name): logging.DEBUG for name in OWN_LOGGERS})
    previous = {logger: logger.level for logger in levels}
    for logger, level in levels.items():
        logger.setLevel(level)
    apart = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in apart:
        logger.propagate = True

    def restore() -> None:
        for logger, level in previous.items():
            logger.setLevel(level)
        for logger in apart:
            logger.propagate = False

    return restore


class ScannedTransport(httpx.ASGITransport):
    """The app over ASGI, handing every exception it raises out to the scan first."""

    def __init__(self, app: ASGIApp, scan: SecretScan) -> None:
        super().__init__(app=app)
        self.scan = scan

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except Exception as exc:
            self.scan.exception(exc)
            raise


def summary() -> str | None:
    """The session's closing line, once any test was scanned."""
    if not SCANNED["tests"]:
        return None
    return (
        f"Secret scan: {SCANNED['tests']} tests, {SCANNED['log records']} log records "
        f"({SCANNED['at DEBUG']} at DEBUG), {SCANNED['exceptions']} exceptions, "
        f"{SCANNED['responses']} responses, {SCANNED['metric samples']} metric samples; "
        f"{SCANNED['leaks']} secrets found"
    )
