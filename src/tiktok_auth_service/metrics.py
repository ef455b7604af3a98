"""Prometheus metrics: what the service counts and how `GET /metrics` renders it.

One `Metrics` per process, built by `open_service` and handed to every part that records
something (nothing here exists at import). Recording is a counter increment or a histogram
observation on a label set looked up in a dict, cheap enough for the token read.

With several server processes (`serve --workers N`) prometheus-client's multiprocess mode
keeps each process's values in files under PROMETHEUS_MULTIPROC_DIR, and `render` merges
every process's files: counters and histograms summed, the pool gauges summed over live
processes. The variable must be set before prometheus-client is first imported (the library
picks its value store at import), which the command line's `serve` does. Only one `Metrics`
may exist per process in that mode, since two would overwrite each other's values in the
process's file.

Grants by status are read from the database at scrape time, by the caller of `render` (an
async query before the synchronous rendering), so they are never stale and never summed
across processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from tiktok_auth_service.config import MULTIPROC_DIR_VARIABLE

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# The token read answers in about a millisecond; TikTok in tens to hundreds of them.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TIKTOK_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BUDGET_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 300.0)

# Methods outside this set are counted as "other": a client must not mint label values.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests that matched no route: the raw path never becomes a label value.
UNMATCHED_ROUTE = "unmatched"

TOKEN_READ_KINDS = ("advertiser", "tiktok_account")
TOKEN_READ_OUTCOMES = (
    "served",
    "refreshed",
    "served_stored",
    "unauthenticated",
    "forbidden",
    "not_connected",
    "reauthorization_required",
    "upstream_unavailable",
    "database_unavailable",
    "token_unreadable",
    "cancelled",
    "error",
)
REFRESH_OUTCOMES = (
    "refreshed",
    "reauthorization_required",
    "failed",
    "superseded",
    "save_failed",
    "unreadable",
)
LIVENESS_OUTCOMES = ("ok", "reauthorization_required", "failed")
WORKER_KINDS = ("refresh", "check", "revoke")
WORKER_OUTCOMES = ("done", "failed", "reauthorization_required", "error")


class Metrics:
    """Every metric the service records, on its own registry."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http_requests = Counter(
            "tiktok_auth_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "tiktok_auth_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.token_reads = Counter(
            "tiktok_auth_token_reads_total",
            "Token reads (GET /tokens/...), by kind (advertiser|tiktok_account) and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.tiktok_calls = Counter(
            "tiktok_auth_tiktok_calls_total",
            "HTTP exchanges with TikTok (each retry counts), by endpoint path and code: "
            "TikTok's body code, http_429, http_4xx, http_5xx, invalid_response or transport.",
            ["endpoint", "code"],
            registry=registry,
        )
        self.tiktok_duration = Histogram(
            "tiktok_auth_tiktok_call_duration_seconds",
            "Duration of one HTTP exchange with TikTok, by endpoint path.",
            ["endpoint"],
            buckets=TIKTOK_BUCKETS,
            registry=registry,
        )
        self.refreshes = Counter(
            "tiktok_auth_refreshes_total",
            "Refreshes of TikTok-account tokens (by reads and the worker), by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.liveness_checks = Counter(
            "tiktok_auth_liveness_checks_total",
            "Liveness checks of advertiser tokens at TikTok (worker and POST .../check), by "
            "outcome.",
            ["outcome"],
            registry=registry,
        )
        self.worker_tasks = Counter(
            "tiktok_auth_worker_tasks_total",
            "Grants the background worker handled, by kind (refresh, check, revoke) and "
            "outcome (done; failed: TikTok could not say, retried with backoff; "
            "reauthorization_required; error: unexpected, logged).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.db_pool_connections = Gauge(
            "tiktok_auth_db_pool_connections",
            "Database connections by pool (read: the token read's asyncpg pool; write: "
            "SQLAlchemy's) and state (in_use, idle); summed over live server processes.",
            ["pool", "state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Webhook deliveries by outcome (delivered, retrying, failed), and the outbox's backlog
        # (set by whichever worker last counted it).
        self.webhook_deliveries = Counter(
            "tiktok_auth_webhook_deliveries_total",
            "Webhook deliveries attempted, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.webhook_outbox_backlog = Gauge(
            "tiktok_auth_webhook_outbox_backlog",
            "Webhook events waiting in the outbox.",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.audit_anonymous_unrecorded = Counter(
            "tiktok_auth_audit_anonymous_unrecorded",
            "Requests without a valid API key counted instead of recorded in the audit (past "
            "its per-second share for them).",
            registry=registry,
        )
        self.token_cache_live = Gauge(
            "tiktok_auth_token_cache_live",
            "1 while the token cache of every live server process is on (its notification "
            "connection is up); 0 while any one's reads all go to the database.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.token_cache_misses = Counter(
            "tiktok_auth_token_cache_misses_total",
            "Token reads the cache could not answer, by what they did: queried the database, "
            "or joined a query under way for the same key and subject.",
            ["outcome"],
            registry=registry,
        )
        self.gateway_calls = Counter(
            "tiktok_auth_gateway_calls_total",
            "Calls through the gateway (/proxy/open_api/v1.3/...), by endpoint (`other` before "
            "the caller's key is known) and code: TikTok's body code, http_<status> for an "
            "answer without one, or the problem's code when the gateway answered itself.",
            ["endpoint", "code"],
            registry=registry,
        )
        self.gateway_duration = Histogram(
            "tiktok_auth_gateway_call_duration_seconds",
            "Duration of a gateway call, retries and the streamed answer included, by endpoint.",
            ["endpoint"],
            buckets=TIKTOK_BUCKETS,
            registry=registry,
        )
        self.budget_waits = Histogram(
            "tiktok_auth_budget_wait_seconds",
            "Time a TikTok call waited for its slot in the app's call budget (calls that got one).",
            buckets=BUDGET_BUCKETS,
            registry=registry,
        )
        self.budget_refusals = Counter(
            "tiktok_auth_budget_refused_total",
            "TikTok calls refused a slot in the app's call budget (429 rate_limited): none "
            "came within the caller's wait, or the service was stopping.",
            registry=registry,
        )
        self.budget_cool_downs = Counter(
            "tiktok_auth_budget_cool_downs_total",
            "Cool-downs this process started: TikTok throttled the app (40100/40133), and "
            "every replica started no call for a while.",
            registry=registry,
        )
        self.budget_slots_missed = Counter(
            "tiktok_auth_budget_slots_missed_total",
            "Slots in the call budget given up because this process woke too late to start "
            "on time (a busy event loop); the call took the next one.",
            registry=registry,
        )
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._token_reads = {
            (kind, outcome): self.token_reads.labels(kind, outcome)
            for kind in TOKEN_READ_KINDS
            for outcome in TOKEN_READ_OUTCOMES
        }
        self._refreshes = {outcome: self.refreshes.labels(outcome) for outcome in REFRESH_OUTCOMES}
        self._liveness = {
            outcome: self.liveness_checks.labels(outcome) for outcome in LIVENESS_OUTCOMES
        }
        self._worker = {
            (kind, outcome): self.worker_tasks.labels(kind, outcome)
            for kind in WORKER_KINDS
            for outcome in WORKER_OUTCOMES
        }
        self._tiktok: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._gateway: dict[tuple[str, str], tuple[Any, Any]] = {}

    @classmethod
    def for_process(cls) -> Metrics:
        """The metrics of this process: multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set."""
        return cls(os.environ.get(MULTIPROC_DIR_VARIABLE) or None)

    # -- recording ---------------------------------------------------------------------------

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in HTTP_METHODS:
            method = "other"
        key = (method, route, status)
        pair = self._http.get(key)
        if pair is None:
            pair = self._http[key] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def token_read(self, kind: str, outcome: str) -> None:
        counter = self._token_reads.get((kind, outcome))
        if counter is None:
            counter = self._token_reads[(kind, "error")]
        counter.inc()

    def tiktok_call(self, endpoint: str, code: str, seconds: float) -> None:
        key = (endpoint, code)
        pair = self._tiktok.get(key)
        if pair is None:
            pair = self._tiktok[key] = (
                self.tiktok_calls.labels(endpoint, code),
                self.tiktok_duration.labels(endpoint),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def gateway_call(self, endpoint: str, code: str, seconds: float) -> None:
        key = (endpoint, code)
        pair = self._gateway.get(key)
        if pair is None:
            pair = self._gateway[key] = (
                self.gateway_calls.labels(endpoint, code),
                self.gateway_duration.labels(endpoint),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def refresh(self, outcome: str) -> None:
        self._refreshes[outcome].inc()

    def liveness_check(self, outcome: str) -> None:
        self._liveness[outcome].inc()

    def worker_task(self, kind: str, outcome: str) -> None:
        self._worker[(kind, outcome)].inc()

    def budget_wait(self, seconds: float) -> None:
        self.budget_waits.observe(seconds)

    def budget_refused(self) -> None:
        self.budget_refusals.inc()

    def budget_cool_down(self) -> None:
        self.budget_cool_downs.inc()

    def budget_slot_missed(self) -> None:
        self.budget_slots_missed.inc()

    def db_pool(self, pool: str, in_use: int, idle: int) -> None:
        self.db_pool_connections.labels(pool, "in_use").set(in_use)
        self.db_pool_connections.labels(pool, "idle").set(idle)

    # -- exposition --------------------------------------------------------------------------

    def render(self, grants: Mapping[tuple[str, str], int] | None) -> bytes:
        """The Prometheus text exposition: every process's metrics (this one's, or all of
        them in multiprocess mode) and `grants` ((flow, status) -> count; None when the
        database could not say, and then the metric is left out rather than shown as 0)."""
        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess_dir:
            MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Collected(self.registry.collect))
        if grants is not None:
            family = GaugeMetricFamily(
                "tiktok_auth_grants",
                "Grants in the database by flow and status (counted at scrape time).",
                labels=["flow", "status"],
            )
            for (flow, status), count in sorted(grants.items()):
                family.add_metric([flow, status], count)
            registry.register(_Collected(lambda: [family]))
        return generate_latest(registry)

    def process_exited(self) -> None:
        """In multiprocess mode, drop this process's live gauges (the pool connections) so a
        stopped server process no longer adds to them."""
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


class _Collected:
    """A collector yielding what `collect` returns (another registry, or a snapshot)."""

    def __init__(self, collect: Any) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())
