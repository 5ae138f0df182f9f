"""Metrics and health ([metrics] port): scraped over HTTP as Prometheus and an orchestrator would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from playbill import metrics
from playbill.bot.cogs import critic
from playbill.bot.errors import OnCooldown
from playbill.bot.health import watch_services
from playbill.bot.messages import Request

ALICE = Request(source="discord", user_id=111, guild_id=5, channel_id=6, display_name="alice")
PLAYBILL = str(Path(sys.executable).with_name("playbill"))


def get(server, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{server.host}:{server.port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a /metrics page."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server():
    server = metrics.start_metrics_server("127.0.0.1", 0)
    yield server
    server.close()


def test_off_unless_a_port_is_set(settings) -> None:
    assert settings.metrics.port is None and settings.metrics.host == "127.0.0.1"
    assert metrics.start_metrics_server("127.0.0.1", None) is None


def test_health_follows_the_event_loop_and_readiness_the_checks(server, monkeypatch) -> None:
    assert get(server, "/healthz") == (200, "ok\n")  # no loop watched: the process answering is alive
    metrics.HEALTH.beat()
    assert get(server, "/healthz")[0] == 200
    monkeypatch.setattr(metrics.HEALTH, "heartbeat", time.monotonic() - metrics.LOOP_STALL_SECONDS - 5)
    status, body = get(server, "/healthz")
    assert status == 503 and "event loop has not turned" in body
    monkeypatch.setattr(metrics.HEALTH, "heartbeat", None)

    problem = ["not loaded yet: scene"]
    stop = metrics.watch_readiness("models", lambda: problem[0])
    try:
        assert get(server, "/readyz") == (503, "models: not loaded yet: scene\n")
        problem[0] = None
        assert get(server, "/readyz") == (200, "ready\n")
    finally:
        stop()
    assert get(server, "/nothing")[0] == 404


async def test_the_console_services_are_counted_and_watched(services, server) -> None:
    stop = watch_services(services)
    heartbeat = asyncio.get_running_loop().create_task(metrics.keep_heartbeat(0.05))
    try:
        before = samples(get(server, "/metrics")[1])
        await critic.review_sentiment(services, ALICE, "a wonderful film")
        services.cooldowns.seconds = 60
        await critic.review_sentiment(services, ALICE, "a second wonderful film")
        with pytest.raises(OnCooldown):
            await critic.review_sentiment(services, ALICE, "and a third")
        await services.drain()
        status, text = await asyncio.to_thread(get, server, "/metrics")
        assert status == 200
        page = samples(text)
        count = lambda outcome: (value(page, "playbill_requests_total", command="review-sentiment", outcome=outcome)  # noqa: E731
                                 - value(before, "playbill_requests_total", command="review-sentiment", outcome=outcome))
        assert count("ok") == 2 and count("cooldown") == 1
        assert (value(page, "playbill_request_seconds_count", command="review-sentiment")
                - value(before, "playbill_request_seconds_count", command="review-sentiment")) == 3
        served = services.holders["sentiment"].version
        assert value(page, "playbill_model_version_info", model="sentiment", version=served) == 1
        assert 0 <= value(page, "playbill_model_age_seconds", model="sentiment") < 3600
        assert ("playbill_queue_depth", (("queue", "scene"),)) in page
        assert value(page, "playbill_history_write_backlog") == 0
        assert value(page, "playbill_schedule_holder") == 0
        assert await asyncio.to_thread(get, server, "/readyz") == (200, "ready\n")  # models loaded, database answers
        assert (await asyncio.to_thread(get, server, "/healthz"))[0] == 200
    finally:
        stop()
        heartbeat.cancel()


async def test_readiness_names_a_missing_model_and_an_unreachable_database(settings, server, tmp_path) -> None:
    from fakes import fake_holders

    from playbill.bot.recording import HistoryGateway
    from playbill.bot.services import Services

    services = Services.create(settings, holders=fake_holders(settings, scene=False), history=HistoryGateway(None))
    services.refresh_models()
    stop = watch_services(services)
    try:
        status, body = await asyncio.to_thread(get, server, "/readyz")
        assert status == 503
        assert "models: not loaded yet: scene" in body and "database: the history database is not open" in body
    finally:
        stop()
        services.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_the_scheduler_serves_its_endpoint(home: Path) -> None:
    port = free_port()
    env = {**os.environ, "PLAYBILL_HOME": str(home), "PLAYBILL_METRICS__PORT": str(port)}
    process = subprocess.Popen([PLAYBILL, "scheduler"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        server = type("Endpoint", (), {"host": "127.0.0.1", "port": port})
        deadline = time.monotonic() + 60
        while True:
            try:
                status, text = get(server, "/metrics")
                if value(samples(text), "playbill_schedule_holder") == 1:
                    break
            except OSError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the scheduler's endpoint never said it holds the schedule"
            time.sleep(0.2)
        assert get(server, "/healthz") == (200, "ok\n")
        assert get(server, "/readyz") == (200, "ready\n")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err


def test_a_port_in_use_is_one_line(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PLAYBILL_HOME": str(home), "PLAYBILL_METRICS__PORT": str(port)}
        done = subprocess.run([PLAYBILL, "console"], env=env, input="", capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot serve metrics on 127.0.0.1:{port}")
    assert "Traceback" not in done.stderr
