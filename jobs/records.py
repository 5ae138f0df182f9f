"""The jobs' window on the history database: training-run rows and user feedback.

One small class over `history.api`, so the retrain job reads as a story and the history
calls live in one place.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playbill.history.votes import Settlement

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


def close_interrupted(history: RunLog, recovered: dict[str, Any] | None) -> None:
    """A run killed with its process (power cut, kill -9) left its row 'running': close it as
    failed, saying which unrecorded candidate the promotion procedure removed
    (`jobs.promotion.Promotion.recovered`)."""
    if not recovered or not isinstance(recovered.get("run_id"), int):
        return
    removed = recovered.get("removed") or []
    error = "interrupted: the process running it stopped before it finished"
    if removed:
        error += f"; its unrecorded candidate {', '.join(removed)} was removed"
    history.finish(recovered["run_id"], status="failed", error=error)
    log.warning("training run %s had been interrupted; recorded as failed%s", recovered["run_id"],
                f" and its unrecorded candidate {', '.join(removed)} removed" if removed else "")
