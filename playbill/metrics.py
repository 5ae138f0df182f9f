"""What a monitoring system and an orchestrator watch: Prometheus metrics, /healthz and /readyz.

Each long-running process (the bot, the console `playbill run` starts without a token, `playbill
scheduler`) serves them on `[metrics] port` (off by default; 127.0.0.1 unless `[metrics] host`
says otherwise), from a thread of its own, so a stuck event loop is seen rather than hidden:

- /metrics: the Prometheus text format (prometheus_client), from this module's own registry.
- /healthz: 200 while the process runs and its event loop (if it has one: `keep_heartbeat`)
  turned within LOOP_STALL_SECONDS; 503 naming the stall otherwise. An orchestrator restarts on it.
- /readyz: 200 when every readiness check passes (models loaded, database reachable, shards
  connected: whatever the process registered with `watch_readiness`); 503 listing the ones that
  do not. An orchestrator sends traffic (or counts a replica available) on it.

Counters and histograms are counted where things happen (`observe_request`, `count_rejection`,
`count_promotion`, `count_rejected_candidate`); values that already live somewhere (queue
depth, the served version, the gateway latency, the history backlog, who holds the schedule) are
read at scrape time from callbacks a front end registers (`watch`), so nothing is copied twice.

A leaf: it imports nothing of Playbill's, so every layer may count through it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LOOP_STALL_SECONDS = 10.0  # /healthz fails when the event loop has not turned for this long
HEARTBEAT_SECONDS = 1.0
READINESS_TIMEOUT_SECONDS = 5.0

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("playbill_requests", "Requests answered, by command and outcome "
                   "(ok, refused, busy, cooldown, unavailable, error).", ["command", "outcome"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("playbill_request_seconds", "Time from a request to its answer, by command.",
                            ["command"], registry=REGISTRY,
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
REJECTIONS = Counter("playbill_queue_rejections", "Requests turned away because an inference queue was full.",
                     ["queue"], registry=REGISTRY)
PROMOTIONS = Counter("playbill_promotions", "Model versions promoted by this process (retrain, warm-up, gate).",
                     ["model"], registry=REGISTRY)
IDENTIFY_WAIT_SECONDS = Histogram("playbill_identify_wait_seconds", "Time a shard waited for its identify turn "
                                  "(Discord's limit, shared by the fleet through the database).", registry=REGISTRY,
                                  buckets=(0.1, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0))
REJECTED_CANDIDATES = Counter("playbill_rejected_candidates", "Candidates the promotion gate turned down.",
                              ["model"], registry=REGISTRY)

# The gauges read at scrape time: name -> (help, label names). `watch(name, callback)`.
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "playbill_queue_depth": ("Requests waiting or running in an inference queue.", ("queue",)),
    "playbill_model_version_info": ("The model version served (value 1).", ("model", "version")),
    "playbill_model_age_seconds": ("Age of the served model version (since it was published).", ("model",)),
    "playbill_schedule_holder": ("1 while this process holds the job schedule, else 0.", ()),
    "playbill_gateway_latency_seconds": ("Discord gateway heartbeat latency, by shard.", ("shard",)),
    "playbill_history_write_backlog": ("History rows waiting to be written (the database is slow or away).", ()),
}

Values = float | int | bool | None | Mapping[tuple[str, ...], float]


def observe_request(command: str, outcome: str, seconds: float) -> None:
    """One answered request: its command ("review-sentiment"), outcome and latency."""
    REQUESTS.labels(command, outcome).inc()
    REQUEST_SECONDS.labels(command).observe(max(0.0, seconds))


def count_rejection(queue: str) -> None:
    REJECTIONS.labels(queue).inc()


def count_promotion(model: str) -> None:
    PROMOTIONS.labels(model).inc()


def count_rejected_candidate(model: str) -> None:
    REJECTED_CANDIDATES.labels(model).inc()


def observe_identify_wait(seconds: float) -> None:
    IDENTIFY_WAIT_SECONDS.observe(max(0.0, seconds))


class _Watched(Collector):
    """The GAUGES, each from its registered callbacks (a failing callback is left out, logged once)."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[], Values]]] = {}
        self._failed: set[str] = set()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, callbacks in list(self.callbacks.items()):
            help_text, labels = GAUGES[name]
            family = GaugeMetricFamily(name, help_text, labels=list(labels))
            for callback in list(callbacks):
                try:
                    values = callback()
                except Exception as exc:  # a scrape never fails because one source did
                    if name not in self._failed:
                        self._failed.add(name)
                        log.warning("metric %s could not be read: %s", name, exc)
                    continue
                if values is None:
                    continue
                if isinstance(values, Mapping):
                    for label_values, value in values.items():
                        family.add_metric([str(v) for v in label_values], float(value))
                else:
                    family.add_metric([], float(values))
            yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


_WATCHED = _Watched()
REGISTRY.register(_WATCHED)


def watch(name: str, callback: Callable[[], Values]) -> Callable[[], None]:
    """Read gauge `name` (one of GAUGES) from `callback` at each scrape: a number, or
    {label values: number}. Returns a function that stops watching it."""
    if name not in GAUGES:
        raise ValueError(f"unknown gauge {name!r}; one of {', '.join(GAUGES)}")
    _WATCHED.callbacks.setdefault(name, []).append(callback)

    def stop() -> None:
        callbacks = _WATCHED.callbacks.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)

    return stop


# --- health ------------------------------------------------------------------------------------

Check = Callable[[], str | None]  # None: ready; else what is not (one line)


class Health:
    """Liveness (the event loop's heartbeat) and readiness (named checks) of this process."""

    def __init__(self) -> None:
        self.heartbeat: float | None = None  # monotonic time of the loop's last turn; None: no loop watched
        self.checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def alive(self) -> tuple[bool, str]:
        beat = self.heartbeat
        if beat is None:
            return True, "ok"
        stalled = time.monotonic() - beat
        if stalled > LOOP_STALL_SECONDS:
            return False, f"the event loop has not turned for {stalled:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, list[str]]:
        problems = []
        for name, check in list(self.checks.items()):
            try:
                problem = check()
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                problems.append(f"{name}: {problem}")
        return not problems, problems


HEALTH = Health()


def watch_readiness(name: str, check: Check) -> Callable[[], None]:
    """Count `check` in /readyz under `name` (it returns None when ready, else a line saying what is not)."""
    HEALTH.checks[name] = check
    return lambda: HEALTH.checks.pop(name, None)


async def keep_heartbeat(interval: float = HEARTBEAT_SECONDS) -> None:
    """Run on the event loop for as long as it lives: /healthz fails when it stops turning."""
    try:
        while True:
            HEALTH.beat()
            await asyncio.sleep(interval)
    finally:
        HEALTH.heartbeat = None


# --- the endpoint ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = "playbill-metrics"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, line = HEALTH.alive()
            self._send(200 if ok else 503, (line + "\n").encode())
        elif path == "/readyz":
            ok, problems = HEALTH.ready()
            self._send(200 if ok else 503, ("ready\n" if ok else "\n".join(problems) + "\n").encode())
        else:
            self._send(404, b"not found: /metrics, /healthz or /readyz\n")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not worth a log line
        return


class MetricsServer:
    """The endpoint, served from a daemon thread until `close`."""

    def __init__(self, host: str, port: int) -> None:
        self._http = ThreadingHTTPServer((host, port), _Handler)
        self._http.daemon_threads = True
        self.host, self.port = host, self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, name="metrics-endpoint", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics (health: /healthz, /readyz)", host, self.port)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def start_metrics_server(host: str, port: int | None) -> MetricsServer | None:
    """Serve the endpoint on host:port (port None: off, returns None; 0: any free port). A port
    that cannot be bound is OSError, said by the caller in one line."""
    if port is None:
        return None
    return MetricsServer(host, port)
