"""What a training run hands back, the same for both models."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainingResult:
    model: str  # "sentiment" or "scene"
    version: str  # the registry version this run produced
    metrics: dict[str, float]  # held-out metrics of the new version
    epochs_run: int  # epochs trained in this run
    last_epoch: int  # epoch counter after the run (continues across resumes)
    started_from: str | None = None  # checkpoint the run resumed from, if any
    promoted: bool = False
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
