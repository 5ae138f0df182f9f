"""`playbill bench bot`: what the inference worker buys, measured against baselines in one run.

A burst of N concurrent /review-sentiment requests (N members pressing enter at once) is
answered three ways with the same model and texts:

- `on-loop`: model.predict called on the event loop, one request at a time (what a naive bot
  does): the baseline for event-loop lag;
- `worker, batch 1`: the worker thread, one predict call per request: the baseline for
  throughput;
- `worker, batch N`: the worker thread with micro-batching (the bot's configuration).

For each: requests per second, per-request latency (median, 95th percentile) and the event
loop's lag (95th percentile and worst) seen by a coroutine ticking every 10 ms.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from types import SimpleNamespace
from typing import Any

from playbill.bot.inference import SentimentWorker
from playbill.engine.sentiment import ReviewRequest

WORDS = ("the film was a great story with superb acting but the ending felt dull and the plot "
         "dragged in places although the music was wonderful and the cast loved every scene").split()


def review_texts(n: int, chars: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < chars:
            words.append(rng.choice(WORDS))
        texts.append(" ".join(words)[:chars])
    return texts


class LagMeter:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append(time.perf_counter() - before - 0.01)

    def stop(self) -> None:
        self._stop.set()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _measure(name: str, answer, texts: list[str]) -> dict[str, Any]:
    meter = LagMeter()
    ticker = asyncio.create_task(meter.run())
    await asyncio.sleep(0.05)  # the ticker is running before the burst
    latencies: list[float] = []

    async def one(text: str) -> None:
        started = time.perf_counter()
        await answer(text)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in texts))
    seconds = time.perf_counter() - started
    meter.stop()
    await ticker
    return {
        "mode": name,
        "requests": len(texts),
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(texts) / seconds, 1),
        "latency_median_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "loop_lag_p95_ms": round(percentile(meter.lags, 0.95) * 1000, 1),
        "loop_lag_max_ms": round(max(meter.lags, default=0.0) * 1000, 1),
    }


async def bench_serving(model: Any, *, requests: int = 256, chars: int = 800, max_batch: int = 32,
                        batch_wait: float = 0.005) -> dict[str, Any]:
    texts = review_texts(requests, chars)
    model.predict(texts[:2])  # warm up (first-call costs are not what is measured)

    async def on_loop(text: str) -> None:
        model.predict([text])
        await asyncio.sleep(0)  # let other tasks (and the lag meter) in between requests

    results = [await _measure("on-loop", on_loop, texts)]
    for batch in (1, max_batch):
        worker = SentimentWorker(SimpleNamespace(model=model), queue_size=requests + 1, max_batch=batch,
                                 batch_wait=batch_wait)  # a holder that always serves `model`

        async def on_worker(text: str, worker: SentimentWorker = worker) -> None:
            await worker.predict(ReviewRequest(text))

        try:
            result = await _measure(f"worker, batch {batch}", on_worker, texts)
        finally:
            worker.close()
        if worker.batches:
            result["mean_batch"] = round(statistics.mean(worker.batches), 1)
        results.append(result)
    on_loop_r, single, batched = results
    return {
        "model_version": model.version,
        "review_chars": chars,
        "results": results,
        "throughput_batched_vs_batch1": round(batched["requests_per_s"] / single["requests_per_s"], 2),
        "loop_lag_max_on_loop_vs_batched": round(on_loop_r["loop_lag_max_ms"] / max(batched["loop_lag_max_ms"], 0.1), 1),
    }
