"""What the retrain job does per model, in one small table (tests swap entries for fakes).

`train` and `evaluate` run inside the spawned training process and must be module-level
functions (they are pickled by reference). `gather` runs in the job's own process and
collects the extra training data (user feedback, extra corpus files) as plain values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    metric: str  # the held-out figure that decides promotion
    higher_is_better: bool
    held_out: str  # what the metric is measured on, for messages
    epochs_key: str  # the JobsSettings field with the number of epochs per retrain
    # train(settings, *, checkpoint, epochs, extra, progress) -> TrainingResult.as_dict(); in the child
    train: Callable[..., dict[str, Any]]
    # evaluate(settings, version, *, holdout) -> metrics dict containing `metric`; in the child
    evaluate: Callable[..., dict[str, Any]]
    # gather(settings, feedback) -> ExtraData; in the job's process. `feedback()` -> [(text, label)]
    gather: Callable[[Settings, Callable[[], Sequence[tuple[str, int]]]], ExtraData]

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


# --- the real engine (spawned process) ---------------------------------------------------


def _config(config_cls: type, section: Any, **more: Any) -> Any:
    """A config dataclass filled from the settings section's keys that it has."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: v for k, v in section.model_dump().items() if k in names and v is not None}
    values.update({k: v for k, v in more.items() if k in names})
    return config_cls(**values)


def train_sentiment(settings: Settings, *, checkpoint: Path | None, epochs: int, extra: list, progress: bool) -> dict:
    from engine.sentiment import SentimentConfig
    from engine.sentiment import train_sentiment as train

    result = train(
        _config(SentimentConfig, settings.sentiment),
        settings.home,
        settings.data_dir,
        epochs=epochs,
        checkpoint=checkpoint,
        extra_examples=[tuple(ex) for ex in extra],
        promote=False,
        progress=progress,
        evaluate_test=False,  # the job measures both versions on the test set itself
        keep_runs=None,  # the job keeps the checkpoints of every version it keeps (prune_model)
    )
    return result.as_dict()


def evaluate_sentiment(settings: Settings, version: str, *, holdout: list) -> dict:
    import csv
    import tempfile

    from engine.sentiment import evaluate_sentiment as evaluate

    figures = dict(evaluate(settings.home, settings.data_dir, version=version))
    if holdout:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "feedback-holdout.csv"
            with path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["text", "label"])
                writer.writerows(holdout)
            checked = evaluate(settings.home, settings.data_dir, version=version, data=path)
        figures["feedback_accuracy"] = checked["accuracy"]
        figures["feedback_n"] = checked.get("n", len(holdout))
    return figures


def train_scene(settings: Settings, *, checkpoint: Path | None, epochs: int, extra: list, progress: bool) -> dict:
    from engine.scene import train_scene as train

    # resuming restores the checkpoint's own config and vocabulary; the profile only names it
    result = train(
        None,
        settings.home,
        settings.data_dir,
        profile=settings.scene.profile,
        epochs=epochs,
        checkpoint=checkpoint,
        corpus=settings.scene.corpus,
        extra_texts=tuple(extra),
        promote=False,
        progress=progress,
    )
    return result.as_dict()


def evaluate_scene(settings: Settings, version: str, *, holdout: list) -> dict:
    from engine.scene import evaluate_scene as evaluate

    return dict(evaluate(settings.home, settings.data_dir, version=version, corpus=settings.scene.corpus))


MODEL_JOBS: dict[str, ModelJob] = {
    "sentiment": ModelJob(
        name="sentiment",
        metric="accuracy",
        higher_is_better=True,
        held_out="the IMDB test set",
        epochs_key="retrain_epochs_sentiment",
        train=train_sentiment,
        evaluate=evaluate_sentiment,
        gather=gather_feedback,
    ),
    "scene": ModelJob(
        name="scene",
        metric="val_loss",
        higher_is_better=False,
        held_out="the corpus's validation block",
        epochs_key="retrain_epochs_scene",
        train=train_scene,
        evaluate=evaluate_scene,
        gather=gather_corpus_files,
    ),
}
