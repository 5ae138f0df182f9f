"""What a retrain adds to a model's training, read from the engine's spec (`engine.models`):
the model's `extra_kind` picks its gatherer, so a new model needs no line here.

A gatherer (`GATHERERS`) runs in the job's own process and collects the extra training data
(the settled votes, extra corpus files) as plain values, with a slice kept out of training
that the gate (`jobs.gate`) checks both versions on. `train_candidate` runs in the spawned
training process (`jobs.retrain`) and trains through the spec itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playbill.engine.errors import InvalidInput
from playbill.engine.models import MODELS, ModelSpec, spec
from playbill.settings import Settings

if TYPE_CHECKING:
    from playbill.history.votes import Settlement

log = logging.getLogger(__name__)


@dataclass
class ExtraData:
    """Extra training data for one run, and a slice kept out of training for checking."""

    train: list[Any] = field(default_factory=list)
    holdout: list[Any] = field(default_factory=list)
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # what was gathered and why (`playbill feedback`)


# --- gathering extra data (job process) -------------------------------------------------


def in_holdout(text: str, fraction: float) -> bool:
    """A stable split: the same feedback text always lands on the same side."""
    bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8", "replace")).digest()[:4], "big") / 2**32
    return bucket < fraction


MIN_WEIGHT = 0.5  # a settled review teaches (or checks) only with at least half a trusted vote's weight


def gather_feedback(settings: Settings, feedback: Callable[[], Settlement]) -> ExtraData:
    """The settled votes (`history.votes.settle`) as weighted labelled reviews (text, label, weight);
    a stable slice (by a hash of the text) is kept out of training and checks both versions as
    (text, label). Reviews settled with less than MIN_WEIGHT (contested ones, or a flooding
    member's capped votes: 200 votes under a cap of 20 weigh 0.1 each) neither teach nor check:
    `playbill feedback` shows them, the critic does not learn them."""
    settlement = feedback()
    fraction = settings.jobs.feedback_holdout_fraction
    train, holdout, loose = [], [], 0
    for text, label, weight in settlement.examples():
        if weight < MIN_WEIGHT:
            loose += 1
        elif in_holdout(text, fraction):
            holdout.append((text, label))
        else:
            train.append((text, label, weight))
    summary = (f"{len(train)} settled feedback reviews weighing {sum(w for _, _, w in train):.1f} "
               f"(+{len(holdout)} kept out for checking"
               + (f"; {loose} settled with weight under {MIN_WEIGHT:g} not learnt" if loose else "") + ")")
    details = {**settlement.as_dict(), "train": len(train), "holdout": len(holdout), "not_learnt": loose,
               "min_weight": MIN_WEIGHT}
    return ExtraData(train, holdout, summary, details)


def gather_corpus_files(settings: Settings, feedback: Callable[[], Settlement]) -> ExtraData:
    """Every *.txt file in the extra corpus folder; undecodable or empty files are skipped. The
    last `feedback_holdout_fraction` of each file (cut at a line break) is kept out of training:
    the gate checks on it that the playwright learnt the new text."""
    folder = settings.corpus_dir
    texts: list[str] = []
    held: list[str] = []
    names: list[str] = []
    for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("skipping extra corpus file %s: %s", path, exc)
            continue
        if text.strip():
            kept, out = split_text(text, settings.jobs.feedback_holdout_fraction)
            texts.append(kept)
            if out.strip():
                held.append(out)
            names.append(path.name)
    summary = (f"{len(texts)} extra text files from {folder}" + (f" ({', '.join(names[:5])})" if names else "")
               + (f", their last {sum(map(len, held)):,} characters kept out for checking" if held else ""))
    return ExtraData(texts, held, summary, {"files": names, "train_chars": sum(map(len, texts)),
                                            "holdout_chars": sum(map(len, held))})


def split_text(text: str, fraction: float) -> tuple[str, str]:
    """(the first part, the held-out end): the end is about `fraction` of the text, cut at a line
    break when there is one in its first half; texts too short to split are all kept."""
    n = len(text)
    cut = n - int(n * fraction)
    if fraction <= 0 or n - cut < 200:  # too little to measure a loss on
        return text, ""
    line = text.find("\n", cut, cut + (n - cut) // 2)
    cut = line + 1 if line >= 0 else cut
    return text[:cut], text[cut:]


# --- the real engine, through its spec (spawned process) --------------------------------


def train_candidate(model: ModelSpec, settings: Settings, *, checkpoint: Path | None, epochs: int, extra: list,
                    progress: bool) -> dict:
    """Continue `model` from `checkpoint` with the extra data; publish a version, not promoted
    (the promotion procedure judges it). The settings section becomes the config in the spec
    (`config_from`), as for `playbill train`."""
    section = settings.section(model.name)
    result = model.train(
        model.config_from(section), settings.home, settings.data_dir,
        epochs=epochs, checkpoint=checkpoint, data=model.data_from(section),
        extra=list(extra),  # sentiment: (text, label, weight) rows; scene: texts
        promote=False, progress=progress,
        **RETRAIN_OPTIONS,
    )
    return result.as_dict()


# the procedure measures both versions on the held-out data itself, and the job keeps the
# checkpoints of every version it keeps (jobs.retrain.prune_model)
RETRAIN_OPTIONS = {"evaluate_test": False, "keep_runs": None}


GATHERERS = {"labelled_texts": gather_feedback, "texts": gather_corpus_files}  # by spec.extra_kind
VOTED_MODELS = tuple(model.name for model in MODELS if model.extra_kind == "labelled_texts")  # members vote on these


def next_feedback(settings: Settings, model_name: str = VOTED_MODELS[0], *, sessions: Any = None) -> ExtraData:
    """What the next retrain of `model_name` will learn from the votes, gathered exactly as the
    retrain gathers it (`playbill feedback`, `/admin feedback`). `sessions`: a history session
    factory already open (the bot's); None opens the settings' database."""
    from playbill.history import api

    model_name = spec(model_name).name  # "critic" is "sentiment"
    if model_name not in VOTED_MODELS:
        raise InvalidInput(f"members vote on {', '.join(VOTED_MODELS)} only, not {model_name!r}")
    cap = settings.jobs.feedback_member_cap
    if sessions is not None:
        return gather_feedback(settings, lambda: api.settle_feedback(sessions, model_name, member_cap=cap))
    from playbill.jobs.records import open_run_log

    history = open_run_log(settings.database_url)
    try:
        return gather_feedback(settings, lambda: history.feedback(model_name, member_cap=cap))
    finally:
        history.close()
