"""`playbill bench history`: what one history write costs, and whether two writers slow each other.

Baselines are measured in the same run: the API's record_interaction against a bare
SQLAlchemy Core INSERT of the same row (one transaction each), and two processes writing
at once against one process writing the same number of rows.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from playbill.history import api, db
from playbill.history.models import Interaction

ROW = {
    "kind": "sentiment",
    "source": "discord",
    "user_id": 123456789012345678,
    "guild_id": 223456789012345678,
    "channel_id": 323456789012345678,
    "user_name": "bench",
    "prompt": "A warm, witty film with a tired third act. " * 4,
    "params": {"max_chars": 5000},
    "label": "positive",
    "probability": 0.83,
    "model_name": "sentiment",
    "model_version": "20261128-000000",
    "latency_ms": 12.0,
    "status": "ok",
}


def _api_writes(url: str, n: int, start: Any = None, spans: Any = None) -> float:
    engine = db.make_engine(url)
    sessions = db.make_session_factory(engine)
    api.record_interaction(sessions, **ROW)  # connect and warm up outside the timing
    if start is not None:
        start.wait(60)
    began = time.monotonic()
    for _ in range(n):
        api.record_interaction(sessions, **ROW)
    ended = time.monotonic()
    engine.dispose()
    if spans is not None:
        spans.put((began, ended))
    return ended - began


def _core_writes(url: str, n: int) -> float:
    engine = db.make_engine(url)
    began = time.perf_counter()
    for _ in range(n):
        with engine.begin() as connection:
            connection.execute(insert(Interaction), {**ROW, "created_at": datetime.now(UTC)})
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed


def _two_writers(url: str, n_each: int) -> float:
    """Seconds from the first writer's start to the last one's end (a system-wide clock)."""
    ctx = multiprocessing.get_context("spawn")
    start, spans = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_api_writes, args=(url, n_each, start, spans)) for _ in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)
    start.set()
    got = [spans.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(60)
    if any(worker.exitcode != 0 for worker in workers):
        raise RuntimeError("a writer process failed")
    return max(end for _, end in got) - min(begin for begin, _ in got)


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def run_bench(url: str | None = None, *, writes: int = 500, rows: int = 20_000) -> dict[str, Any]:
    """Returns the figures; `url` None benchmarks a fresh SQLite file in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        sessions = db.make_session_factory(engine)

        core_s = _core_writes(url, writes)
        api_s = _api_writes(url, writes)
        one_s = _api_writes(url, writes)
        two_s = _two_writers(url, writes // 2)

        # admin queries over a bigger table
        now = datetime.now(UTC)
        batch = [
            {**ROW, "user_id": i % 50, "created_at": now - timedelta(minutes=i), "latency_ms": float(i % 300)}
            for i in range(rows)
        ]
        with engine.begin() as connection:
            connection.execute(insert(Interaction), batch)
        query_s, stats_s = [], []
        for _ in range(5):
            began = time.perf_counter()
            api.query_interactions(sessions, user_id=7, since=now - timedelta(days=7), limit=50)
            query_s.append(time.perf_counter() - began)
            began = time.perf_counter()
            api.history_stats(sessions, now - timedelta(days=7))
            stats_s.append(time.perf_counter() - began)
        dialect = engine.dialect.name
        engine.dispose()
    return {
        "database": dialect,
        "writes": writes,
        "core_insert_ms_per_row": round(core_s / writes * 1000, 3),
        "api_record_ms_per_row": round(api_s / writes * 1000, 3),
        "api_vs_core": round(api_s / core_s, 2),
        "one_writer_rows_per_s": round(writes / one_s),
        "two_writers_rows_per_s": round(writes / two_s),
        "two_vs_one_writer_throughput": round(one_s / two_s, 2),
        "table_rows": rows + 3 * writes,
        "query_user_last_7d_ms": _ms(query_s),
        "stats_last_7d_ms": _ms(stats_s),
    }
