"""The jobs' window on the history database: training-run rows and user feedback.

One small class over `history.api` (`RunLog`), so the retrain job reads as a story and the
history calls live in one place; and `TrainingRecord`, the row every other training writes
(the first start, the warm-up, `playbill train`), so `playbill history runs` shows them all.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playbill.history.votes import Settlement
    from playbill.settings import Settings

log = logging.getLogger(__name__)


class RunLog:
    """Training-run rows and feedback examples in the history database at `url`."""

    def __init__(self, url: str) -> None:
        from playbill.history.db import open_history

        self._engine, self._sessions = open_history(url)

    def start(self, model: str, *, checkpoint_from: str | None, epochs: int) -> int:
        from playbill.history import api

        return api.record_training_run(self._sessions, model_name=model, checkpoint_from=checkpoint_from, epochs=epochs)

    def finish(self, run_id: int, *, status: str, **fields: Any) -> None:
        from playbill.history import api

        api.finish_training_run(self._sessions, run_id, status=status, **fields)

    def feedback(self, model: str, *, member_cap: float) -> Settlement:
        """The votes on `model`'s answers settled into weighted labelled reviews (history.votes)."""
        from playbill.history import api

        return api.settle_feedback(self._sessions, model, member_cap=member_cap)

    def close(self) -> None:
        self._engine.dispose()


def open_run_log(url: str) -> RunLog:
    return RunLog(url)


def close_interrupted(settings: Settings, recovered: dict[str, Any] | None) -> None:
    """A run killed with its process (power cut, kill -9) left its row 'running': close it as
    failed, saying which unrecorded candidate the promotion procedure removed
    (`jobs.promotion.Promotion.recovered`)."""
    if not recovered or not isinstance(recovered.get("run_id"), int):
        return
    removed = recovered.get("removed") or []
    error = "interrupted: the process running it stopped before it finished"
    if removed:
        error += f"; its unrecorded candidate {', '.join(removed)} was removed"
    try:
        history = open_run_log(settings.database_url)
        try:
            history.finish(recovered["run_id"], status="failed", error=error)
        finally:
            history.close()
    except Exception as exc:  # the history is down: the row stays 'running', the model is safe
        log.warning("could not close the interrupted training run %s: %s", recovered["run_id"], type(exc).__name__)
        return
    log.warning("training run %s had been interrupted; recorded as failed%s", recovered["run_id"],
                f" and its unrecorded candidate {', '.join(removed)} removed" if removed else "")


class TrainingRecord:
    """The training-runs row of one training that is not the nightly retrain (which keeps its
    own `RunLog`): `with TrainingRecord(settings, model, by="warm-up") as run: ...; run.finish(...)`.

    `by` (first start, warm-up, playbill train, ...) and the figures go into the row's metrics.
    A block left without `finish` records the run as failed (its error, or "interrupted" for
    Ctrl-C). Recording never stops a training: a history that cannot be reached costs the row
    (one warning line), not the run."""

    def __init__(self, settings: Settings, model: str, *, by: str, checkpoint_from: str | None = None,
                 epochs: int | None = None) -> None:
        self.settings, self.model, self.by = settings, model, by
        self.checkpoint_from, self.epochs = checkpoint_from, epochs
        self.run_id: int | None = None
        self._log: RunLog | None = None
        self._finished = False

    def __enter__(self) -> TrainingRecord:
        try:
            self._log = open_run_log(self.settings.database_url)
            self.run_id = self._log.start(self.model, checkpoint_from=self.checkpoint_from, epochs=self.epochs)
        except Exception as exc:
            log.warning("the %s training of %s is not recorded in the history: %s", self.by, self.model,
                        _one_line(exc))
            self._close()
        return self

    def finish(self, *, status: str, version: str | None = None, promoted: bool = False,
               metrics: dict[str, Any] | None = None, error: str | None = None, **fields: Any) -> None:
        """status: promoted, rejected (not made current) or failed."""
        self._finished = True
        if self._log is None or self.run_id is None:
            return
        try:
            self._log.finish(self.run_id, status=status, version=version, promoted=promoted, error=error,
                             metrics={"by": self.by, **(metrics or {})}, **fields)
        except Exception as exc:
            log.warning("could not record the end of training run %s: %s", self.run_id, _one_line(exc))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if not self._finished and self.run_id is not None:
            error = "interrupted" if kind is not None and not issubclass(kind, Exception) else (
                _one_line(exc) if exc is not None else "ended without a result")
            self.finish(status="failed", error=error)
        self._close()

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _one_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return (text.splitlines() or [type(exc).__name__ if exc is not None else "unknown"])[0]
