"""Model calls off the event loop, with bounded queues and micro-batching.

Each worker owns the holder of its model and reads the served version from it per call, so
a hot-swapped model is picked up and nothing above a worker ever holds a model. Requests
arrive typed (the engine's `ReviewRequest` / `SceneRequest`) and are checked by the served
model itself (`check`), the one rule for every front end.

Sentiment: one dedicated thread takes requests from a bounded queue; requests that arrive
within a few milliseconds of each other are answered by one `model.predict(list)` call.
Scenes: a small thread pool streams pieces back to the event loop. A full queue raises
`Busy` at once, so no command ever waits on a backlog it cannot see.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from playbill.bot.errors import Busy
from playbill.engine.scene import SceneRequest
from playbill.engine.sentiment import ReviewRequest

log = logging.getLogger("playbill.bot.inference")

_STOP = object()


class Holds(Protocol):
    """What a worker needs of its holder (engine.serving.ModelHolder): the model served now."""

    @property
    def model(self) -> Any: ...


@dataclass
class _Job:
    request: ReviewRequest
    future: concurrent.futures.Future


class SentimentWorker:
    """Batches concurrent sentiment requests onto one model.predict call in a worker thread."""

    def __init__(self, holder: Holds, *, queue_size: int = 64, max_batch: int = 32, batch_wait: float = 0.005) -> None:
        self.holder = holder
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.batches: list[int] = []  # sizes of the last batches (kept short), for the bench and stats
        self._thread = threading.Thread(target=self._run, name="sentiment-worker", daemon=True)
        self._thread.start()

    def check(self, request: ReviewRequest) -> ReviewRequest:
        """The served critic's verdict on the request itself (ModelUnavailable when none is
        served, InvalidInput with the engine's message): cheap, so it runs before any defer."""
        return self.holder.model.check(request)

    def has_room(self) -> bool:
        """Whether a request would be queued now (checked before deferring, so that a busy
        answer can still be an ephemeral reply)."""
        return not self._queue.full()

    async def predict(self, request: ReviewRequest) -> tuple[Any, str | None]:
        """(verdict, model version) for one review; raises Busy when the queue is full."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            self._queue.put_nowait(_Job(request, future))
        except queue.Full:
            raise Busy("The critic") from None
        return await asyncio.wrap_future(future)

    def close(self, *, wait: bool = False) -> None:
        """Stop the worker thread after the requests already queued; `wait`: until it has."""
        try:
            self._queue.put(_STOP, timeout=1)
        except queue.Full:  # pragma: no cover - the daemon thread dies with the process
            pass
        if wait:
            self._thread.join(timeout=30)

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
            model = self.holder.model  # one version answers the whole batch; predict checks each review
            verdicts = model.predict([job.request.text for job in live])
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            for job in live:  # one bad review must not fail its neighbours: answer them one by one
                self._answer_one(job)
            return
        for job, verdict in zip(live, verdicts, strict=True):
            job.future.set_result((verdict, model.version))

    def _answer_one(self, job: _Job) -> None:
        try:
            model = self.holder.model
            job.future.set_result((model.predict([job.request.text])[0], model.version))
        except Exception as exc:
            job.future.set_exception(exc)


@dataclass
class SceneStream:
    """A scene being written: the version writing it, and its pieces as they come."""

    version: str | None
    pieces: AsyncIterator[str]


class SceneWorker:
    """Runs the served writer's `stream` in worker threads and hands the pieces to the event loop."""

    def __init__(self, holder: Holds, *, workers: int = 2, queue_size: int = 64, chunk_chars: int = 40) -> None:
        self.holder = holder
        self.chunk_chars = chunk_chars
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scene-worker")
        self._limit = workers + queue_size
        self._pending = 0
        self._lock = threading.Lock()

    def check(self, request: SceneRequest) -> SceneRequest:
        """The served playwright's verdict on the request (its limits and its alphabet)."""
        return self.holder.model.check(request)

    def has_room(self) -> bool:
        with self._lock:
            return self._pending < self._limit

    def start(self, request: SceneRequest) -> SceneStream:
        """The scene from the version served now (a hot swap mid-scene does not mix versions)."""
        writer = self.holder.model
        return SceneStream(writer.version, self._pieces(writer, request))

    def _reserve(self) -> None:
        with self._lock:
            if self._pending >= self._limit:
                raise Busy("The playwright")
            self._pending += 1

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    async def _pieces(self, writer: Any, request: SceneRequest) -> AsyncIterator[str]:
        """Pieces of the continuation as the writer makes them. Stops the thread if the consumer stops."""
        self._reserve()
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for piece in writer.stream(request, self.chunk_chars):
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

    def close(self, *, wait: bool = False) -> None:
        """No new scenes; queued ones are cancelled; `wait`: until the scenes being written end."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
