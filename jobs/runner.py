"""The one way Playbill runs training outside the serving process: a *spawned* child process.

Why: TensorFlow and a training run's memory must never live in the bot's process, and the
bot's event loop must keep the CPU when they compete. Every training that a long-running
process starts goes through here: the nightly retrain (`jobs.retrain`), the first start and
the warm-up (`jobs.warmup`).

`TrainingProcess(target, args, name=...)`: `start()` spawns it (never fork: no copy of the
parent's threads or open connections), the child

- exits on its own when its parent dies (`exit_with_parent`), so no orphan keeps writing
  checkpoints;
- lowers its priority by `niceness`;
- logs like the `playbill` console (warnings; everything with -v), one line per record;
- runs `target(send, *args)`, where `send(kind, payload)` sends a message through the result
  pipe; an exception becomes an `("error", one line)` message.

`wait(say, timeout)` collects the messages (a `("phase", line)` message is handed to `say` as
it arrives) until the child ends or the time limit stops it, and returns them with `exit`:
why the process ended (killed, exit code, time limit). `terminate_training()` stops every child
this process started (shutting down).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from playbill.engine.errors import EngineError, StorageError

log = logging.getLogger(__name__)

Send = Callable[[str, Any], None]
Report = Callable[[str], None]

_ACTIVE: set[Any] = set()  # training processes started by this process and not yet collected


class TrainingProcess:
    """One spawned training process and its result pipe."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...] = (), *, name: str, niceness: int = 0,
                 log_level: int | None = None, daemon: bool = False) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._receive, send = self._ctx.Pipe(duplex=False)
        level = logging.getLogger().level if log_level is None else log_level
        self._send = send
        self.process = self._ctx.Process(target=_child_main, args=(target, args, niceness, level, send),
                                         name=name, daemon=daemon)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def start(self) -> TrainingProcess:
        _ACTIVE.add(self.process)  # first: an interrupt during the spawn still finds the child
        try:
            self.process.start()
        except BaseException:
            if self.process.is_alive():
                self.process.terminate()
            _ACTIVE.discard(self.process)
            raise
        self._send.close()  # the child holds the only writer: EOF as soon as it exits
        return self

    def wait(self, say: Report | None = None, timeout: float | None = None, limit: str = "") -> dict[str, Any]:
        """The messages the child sent (the last of each kind), plus `exit`: why it ended, and
        `exit_code`. `timeout`: seconds after which the child is stopped (`limit`: the setting
        that says so, named in the message)."""
        messages: dict[str, Any] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    timed_out = True
                    self.process.terminate()
                    break
                if not self._receive.poll(5.0 if left is None else min(left, 5.0)):
                    continue
                try:
                    kind, payload = self._receive.recv()
                except (EOFError, OSError):
                    break
                if kind == "phase":
                    if say is not None:
                        say(payload)
                else:
                    messages[kind] = payload
        except BaseException:  # interrupted while waiting: do not leave the training process behind
            self.process.terminate()
            self.process.join(10)
            _ACTIVE.discard(self.process)
            raise
        self.process.join()
        _ACTIVE.discard(self.process)
        self._receive.close()
        code = self.process.exitcode
        if timed_out:
            messages["exit"] = (f"the training process was stopped after the {timeout / 3600:g} h time limit"
                                + (f" ({limit})" if limit else ""))
        elif code and code < 0:
            messages["exit"] = f"the training process was killed (signal {-code}) before it finished"
        elif code:
            messages["exit"] = f"the training process ended unexpectedly (exit code {code})"
        else:
            messages["exit"] = "the training process ended without a result"
        messages["exit_code"] = code
        return messages


def terminate_training() -> int:
    """Stop the training processes this process started (shutting down); their runs fail cleanly.
    Also called at interpreter exit (registered below, after multiprocessing's own exit hook, so
    it runs first): an interrupt that lands between `start()` and `wait()` would otherwise leave
    multiprocessing joining a child that trains on, and the process would never exit."""
    stopped = 0
    for process in list(_ACTIVE):
        if process.is_alive():
            process.terminate()
            stopped += 1
    return stopped


atexit.register(terminate_training)


def _child_main(target: Callable[..., None], args: tuple[Any, ...], niceness: int, log_level: int, conn: Any) -> None:
    """Entry point of every spawned training process."""
    exit_with_parent()
    if niceness:
        os.nice(niceness)  # the bot's process keeps the CPU when they compete
    # as the console of `playbill`: warnings, or everything with -v (the parent logs the outcome)
    level = log_level if log_level and log_level <= logging.DEBUG else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    def send(kind: str, payload: Any) -> None:
        conn.send((kind, payload))

    try:
        target(send, *args)
    except EngineError as exc:
        send("error", str(exc))
    except KeyboardInterrupt:
        send("error", "interrupted")
    except OSError as exc:  # a full or read-only disk: one line, no traceback
        send("error", str(StorageError.from_os_error(exc)))
    except Exception as exc:
        logging.getLogger(__name__).exception("training process failed")
        send("error", f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def exit_with_parent() -> None:
    """If the process that started the run dies, stop too: no orphan keeps writing checkpoints."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
