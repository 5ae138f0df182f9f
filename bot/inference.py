"""Model calls off the event loop, with bounded queues and micro-batching.

Sentiment: one dedicated thread takes requests from a bounded queue; requests that arrive
within a few milliseconds of each other are answered by one `model.predict(list)` call.
Scenes: a small thread pool streams pieces back to the event loop. A full queue raises
`Busy` at once, so no command ever waits on a backlog it cannot see.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from bot.errors import Busy

log = logging.getLogger("bot.inference")

_STOP = object()


@dataclass
class _Job:
    text: str
    future: concurrent.futures.Future


class SentimentWorker:
    """Batches concurrent sentiment requests onto one model.predict call in a worker thread."""

    def __init__(self, get_model: Callable[[], Any], *, queue_size: int = 64, max_batch: int = 32,
                 batch_wait: float = 0.005) -> None:
        self._get_model = get_model  # called per batch, so a hot-swapped model is picked up
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.batches: list[int] = []  # sizes of the last batches (kept short), for tests and stats
        self._thread = threading.Thread(target=self._run, name="sentiment-worker", daemon=True)
        self._thread.start()

    def has_room(self) -> bool:
        """Whether a request would be queued now (checked before deferring, so that a busy
        answer can still be an ephemeral reply)."""
        return not self._queue.full()

    async def predict(self, text: str) -> tuple[Any, str | None]:
        """(verdict, model version) for one text; raises Busy when the queue is full."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._queue.put_nowait(_Job(text, future))
        except queue.Full:
            raise Busy("The critic") from None
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        try:
            self._queue.put(_STOP, timeout=1)
        except queue.Full:  # pragma: no cover - the daemon thread dies with the process
            pass

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    self._answer(batch)
                    return
                batch.append(item)
            self._answer(batch)

    def _answer(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.batches = (self.batches + [len(live)])[-100:]
        try:
            model = self._get_model()
            verdicts = model.predict([job.text for job in live])
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            # one bad text must not fail its neighbours: answer them one by one
            for job in live:
                try:
                    one = self._get_model()
                    job.future.set_result((one.predict([job.text])[0], getattr(one, "version", None)))
                except Exception as one_exc:
                    job.future.set_exception(one_exc)
            return
        version = getattr(model, "version", None)
        for job, verdict in zip(live, verdicts, strict=True):
            job.future.set_result((verdict, version))


class SceneRunner:
    """Runs SceneWriter.stream in worker threads and hands the pieces to the event loop."""

    def __init__(self, *, workers: int = 2, queue_size: int = 64) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scene-worker")
        self._limit = workers + queue_size
        self._pending = 0
        self._lock = threading.Lock()

    def has_room(self) -> bool:
        with self._lock:
            return self._pending < self._limit

    def _reserve(self) -> None:
        with self._lock:
            if self._pending >= self._limit:
                raise Busy("The playwright")
            self._pending += 1

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    async def stream(self, writer: Any, prompt: str, **options: Any) -> AsyncIterator[str]:
        """Pieces of text as the writer makes them. Stops the worker if the consumer stops."""
        self._reserve()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for piece in writer.stream(prompt, **_supported(writer.stream, options)):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(pieces.put_nowait, piece)
                loop.call_soon_threadsafe(pieces.put_nowait, done)
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(pieces.put_nowait, exc)
            finally:
                self._release()

        try:
            self._pool.submit(produce)
        except RuntimeError:  # pool shut down
            self._release()
            raise Busy("The playwright") from None
        try:
            while True:
                item = await pieces.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _supported(func: Callable, options: dict[str, Any]) -> dict[str, Any]:
    """The options `func` accepts (the engine may not take every optional keyword)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    return {k: v for k, v in options.items() if k in params}


def supports(func: Callable, keyword: str) -> bool:
    """Whether `func` takes `keyword` (or any keyword)."""
    return keyword in _supported(func, {keyword: None})
