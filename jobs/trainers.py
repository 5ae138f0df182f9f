"""What the retrain job does per model: one table built from the engine's spec list
(`engine.models.MODELS`), so a new model needs no line here; tests swap entries for fakes.

`train` and `evaluate` run inside the spawned training process and must pickle by reference
(module-level functions, or partials of them). `gather` runs in the job's own process and
collects the extra training data (user feedback, extra corpus files) as plain values.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from engine.models import MODELS, ModelSpec, spec
from playbill.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ExtraData:
    """Extra training data for one run, and a slice kept out of training for checking."""

    train: list[Any] = field(default_factory=list)
    holdout: list[Any] = field(default_factory=list)
    summary: str = ""


@dataclass(frozen=True)
class ModelJob:
    name: str
    metric: str  # the held-out figure that decides promotion (the spec's gate_metric)
    higher_is_better: bool
    held_out: str  # what the metric is measured on, for messages
    # train(settings, *, checkpoint, epochs, extra, progress) -> TrainingResult.as_dict(); in the child
    train: Callable[..., dict[str, Any]]
    # evaluate(settings, version, *, holdout) -> metrics dict containing `metric`; in the child
    evaluate: Callable[..., dict[str, Any]]
    # gather(settings, feedback) -> ExtraData; in the job's process. `feedback()` -> [(text, label)]
    gather: Callable[[Settings, Callable[[], Sequence[tuple[str, int]]]], ExtraData]

    @property
    def epochs_key(self) -> str:
        """The JobsSettings field with the number of epochs each retrain of this model adds."""
        return f"retrain_epochs_{self.name}"

    def no_worse(self, candidate: float, current: float) -> bool:
        return candidate >= current if self.higher_is_better else candidate <= current


# --- gathering extra data (job process) -------------------------------------------------


def in_holdout(text: str, fraction: float) -> bool:
    """A stable split: the same feedback text always lands on the same side."""
    bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8", "replace")).digest()[:4], "big") / 2**32
    return bucket < fraction


def gather_feedback(settings: Settings, feedback: Callable[[], Sequence[tuple[str, int]]]) -> ExtraData:
    """User feedback as labelled reviews; a stable slice is kept out of training for checking."""
    examples = [(str(text), int(label)) for text, label in feedback() if str(text).strip()]
    fraction = settings.jobs.feedback_holdout_fraction
    holdout = [ex for ex in examples if in_holdout(ex[0], fraction)]
    train = [ex for ex in examples if not in_holdout(ex[0], fraction)]
    return ExtraData(train, holdout, f"{len(train)} feedback reviews (+{len(holdout)} kept out for checking)")


def gather_corpus_files(settings: Settings, feedback: Callable[[], Sequence[tuple[str, int]]]) -> ExtraData:
    """Every *.txt file in the extra corpus folder; undecodable or empty files are skipped."""
    folder = settings.corpus_dir
    texts: list[str] = []
    names: list[str] = []
    for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("skipping extra corpus file %s: %s", path, exc)
            continue
        if text.strip():
            texts.append(text)
            names.append(path.name)
    summary = f"{len(texts)} extra text files from {folder}" + (f" ({', '.join(names[:5])})" if names else "")
    return ExtraData(texts, [], summary)


# --- the real engine, through its spec (spawned process) --------------------------------


def train_model(name: str, settings: Settings, *, checkpoint: Path | None, epochs: int, extra: list,
                progress: bool) -> dict:
    """Continue `name` from `checkpoint` with the extra data; publish a version, not promoted.
    The settings section becomes the config in the spec (`config_from`), as for `playbill train`."""
    model = spec(name)
    section = settings.section(name)
    result = model.train(
        model.config_from(section), settings.home, settings.data_dir,
        epochs=epochs, checkpoint=checkpoint, data=model.data_from(section),
        extra=list(extra),
        promote=False, progress=progress,
        **RETRAIN_OPTIONS,
    )
    return result.as_dict()


# the job measures both versions on the held-out data itself, and keeps the checkpoints of
# every version it keeps (jobs.retrain.prune_model)
RETRAIN_OPTIONS = {"evaluate_test": False, "keep_runs": None}


def evaluate_model(name: str, settings: Settings, version: str, *, holdout: list) -> dict:
    """`version`'s figures on the model's held-out data and, when there is one, on the feedback
    kept out of training (`feedback_<metric>`, `feedback_n`), evaluated in memory."""
    model = spec(name)
    data = model.data_from(settings.section(name))
    figures = dict(model.evaluate(settings.home, settings.data_dir, version=version, data=data))
    if holdout:
        checked = model.evaluate(settings.home, settings.data_dir, version=version,
                                 data=[tuple(ex) for ex in holdout])
        figures[f"feedback_{model.gate_metric}"] = checked[model.gate_metric]
        figures["feedback_n"] = checked.get("n", len(holdout))
    return figures


GATHERERS = {"labelled_texts": gather_feedback, "texts": gather_corpus_files}  # by spec.extra_kind


def job_for(model: ModelSpec) -> ModelJob:
    return ModelJob(
        name=model.name,
        metric=model.gate_metric,
        higher_is_better=model.higher_is_better,
        held_out=model.held_out,
        train=partial(train_model, model.name),
        evaluate=partial(evaluate_model, model.name),
        gather=GATHERERS[model.extra_kind],
    )


MODEL_JOBS: dict[str, ModelJob] = {model.name: job_for(model) for model in MODELS}
