"""Training the blended critic (the "quick" and "default" profiles): scikit-learn views, and
for the default the seed's LSTM beside them (Keras).

Each view of `config.views` (engine.sentiment.linear) is fitted on the training reviews (and,
where the view says so, their denoised sentences); with `config.sequence_units`, the LSTM
member (engine.sentiment.sequence) on the reviews' sentences and windows; the blend of the
members' logits is a logistic regression on the validation reviews, so the served probability
is calibrated there (with `config.long_views`, a second blend for long reviews, fitted the same
way);
the extra examples (votes) go into the community layer on top (engine.sentiment.community: a
memory and a mean-pooled correction). One checkpoint per fit holds the fitted arrays; a resume
(the nightly job's path) fits again from the data (a fit takes seconds to minutes) and records
where it started.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from playbill.engine.checkpoints import Checkpoint, CheckpointManager
from playbill.engine.imdb import load_imdb
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment.community import fit_correction
from playbill.engine.sentiment.config import (CONFIG_FILE, MEMORY_FILE, NAME, PROFILES, VOCAB_FILE, WEIGHTS_FILE,
                                              SentimentConfig)
from playbill.engine.sentiment.data import memory_of, training_split
from playbill.engine.sentiment.evaluate import accuracy, blend_columns, hit_rate, log_loss
from playbill.engine.sentiment.linear import (Lexicon, LinearModel, counts, features, idf, nb_ratios, read,
                                             review_sentences, view)
from playbill.engine.sentiment.sequence import NAME as SEQUENCE, SequenceMember, fit_sequence
from playbill.engine.sentiment.serving import COMMUNITY_WORDS, SentimentModel, blended, ngram_arrays, review_tokens
from playbill.engine.training import TrainingResult

log = logging.getLogger(__name__)


class FitState:
    """What a checkpoint of a linear fit holds: the fitted arrays (for the record; a resume refits)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(fh, **self.weights)


@dataclass
class TrainingText:
    """The training reviews and their sentences (each labelled by its review), read once for
    every member (`linear.read`: token ids and the row of each)."""

    reviews: list[str]
    labels: np.ndarray
    sentences: list[str]
    sentence_labels: np.ndarray
    review_ids: tuple[np.ndarray, np.ndarray]
    sentence_ids: tuple[np.ndarray, np.ndarray]

    @classmethod
    def read(cls, texts: list[str], labels: np.ndarray, lexicon: Lexicon) -> TrainingText:
        labels = np.asarray(labels)
        parts, owner = review_sentences(texts)
        return cls(texts, labels, parts, labels[owner], read(texts, lexicon), read(parts, lexicon))


def fit_view(name: str, text: TrainingText, lexicon: Lexicon, progress: bool = False) -> tuple[LinearModel, dict]:
    """One linear view: idf and NB ratios over the reviews and their sentences (or the reviews
    alone), fitted on the reviews (and their confident sentences, if the view learns from them)."""
    spec = view(name)
    labels, ys = text.labels, text.sentence_labels
    x = counts(text.reviews, spec, lexicon, text.review_ids)
    stats: dict[str, Any] = {"reviews": len(text.reviews)}
    xs = counts(text.sentences, spec, lexicon, text.sentence_ids) if spec.sentence_stats or spec.sentences else None
    counted, counted_labels = (sp.vstack([x, xs]).tocsr(), np.concatenate([labels, ys])) if spec.sentence_stats \
        else (x, labels)
    scale = idf(counted) * (spec.nb_floor + np.abs(nb_ratios(counted, counted_labels)))
    seen = np.bincount(counted.indices, minlength=counted.shape[1]) > 0
    scale = np.where(seen, scale, 0.0).astype(np.float32)
    xr = features(x, scale)
    fitted = _logistic(xr, labels, spec.c)
    if spec.sentences and xs is not None and xs.shape[0]:
        xf = features(xs, scale)
        p = 1.0 / (1.0 + np.exp(-(xf @ fitted.coef_.ravel() + fitted.intercept_[0])))
        keep = np.where(ys > 0, p >= spec.sentence_confidence, p <= 1 - spec.sentence_confidence)
        stats.update(sentences=int(xs.shape[0]), sentences_kept=int(keep.sum()))
        if progress:
            print(f"{name}: {keep.sum():,} of {xs.shape[0]:,} sentences kept", flush=True)
        if keep.any():
            weights = np.concatenate([np.ones(x.shape[0]), np.full(int(keep.sum()), spec.sentence_weight)])
            fitted = _logistic(sp.vstack([xr, xf[keep]]).tocsr(),
                               np.concatenate([labels, ys[keep]]), spec.c, weights)
    coef = np.where(seen, fitted.coef_.ravel(), 0.0).astype(np.float32)
    return LinearModel(name, scale, coef, float(fitted.intercept_[0])), stats


def _logistic(x, labels: np.ndarray, c: float, weights: np.ndarray | None = None) -> LogisticRegression:
    if len(set(np.asarray(labels).tolist())) < 2:
        raise ValueError("a linear view needs reviews of both labels")
    return LogisticRegression(C=c, solver="liblinear", max_iter=300).fit(x, labels, sample_weight=weights)


def linear_layout(config: SentimentConfig) -> SentimentConfig:
    """A config of the hand-hashed n-gram layout (a checkpoint from before issue 20) trains as
    the same-named profile of today's linear layout."""
    if config.views:
        return config
    profile = PROFILES.get(config.name)
    return profile if profile is not None and profile.views else PROFILES["default"]


def train_blend(config: SentimentConfig, home: Path, data_dir: Path, *, start: Checkpoint | None,
                 data: Path | None, extra, promote: bool, progress: bool, evaluate_test: bool,
                 keep_runs: int | None) -> TrainingResult:
    """Fit the linear views, blend them on validation, publish a version; see the module doc."""
    started = time.perf_counter()
    home, data_dir = Path(home), Path(data_dir)
    if not config.views:
        config, start = linear_layout(config), None
    manager = CheckpointManager.in_home(home, NAME)
    split = training_split(data_dir, data, extra, config)

    weights: dict[str, np.ndarray] = {}
    val_columns = []
    per_model: dict[str, dict[str, Any]] = {}
    fit_started = time.perf_counter()
    lexicon = Lexicon.build(split.train_texts)
    vocab = lexicon.vocab
    text = TrainingText.read(split.train_texts, split.train_labels, lexicon)
    val_ids = read(split.val_texts, lexicon)
    for name in config.linear_views:
        t0 = time.perf_counter()
        model, stats = fit_view(name, text, lexicon, progress)
        weights.update(model.arrays())
        val_logit = model.logits(counts(split.val_texts, model.spec, lexicon, val_ids))
        val_columns.append(val_logit)
        per_model[name] = {"val_accuracy": hit_rate(val_logit, split.val_labels),
                           "seconds": time.perf_counter() - t0, **stats}
        if progress:
            print(f"{name}: validation accuracy {per_model[name]['val_accuracy']:.4f} "
                  f"({per_model[name]['seconds']:.1f} s)", flush=True)
    if config.sequence_units:
        t0 = time.perf_counter()
        weights.update(fit_sequence(text.review_ids, text.sentence_ids, text.labels, text.sentence_labels, config,
                                    progress))
        val_logit = SequenceMember(weights, config).logits(*val_ids, len(split.val_texts))
        val_columns.append(val_logit)
        per_model[SEQUENCE] = {"val_accuracy": hit_rate(val_logit, split.val_labels),
                               "seconds": time.perf_counter() - t0}
        if progress:
            print(f"{SEQUENCE}: validation accuracy {per_model[SEQUENCE]['val_accuracy']:.4f} "
                  f"({per_model[SEQUENCE]['seconds']:.1f} s)", flush=True)
    columns = np.column_stack(val_columns)
    without_sequence: dict[str, np.ndarray] = {}
    for key in config.blend_names:
        weights[key] = blend_columns(columns[:, config.blend_members(key)], split.val_labels)
        if config.sequence_units:  # what the LSTM adds, for the record (issue 20: it earns its place)
            without_sequence[key] = blend_columns(columns[:, config.blend_members(key, sequence=False)],
                                                  split.val_labels)
    if config.sequence_units:
        per_model[SEQUENCE]["val_accuracy_blend_without"] = hit_rate(
            blended(columns, review_tokens(val_ids[1], len(split.val_texts)), without_sequence, config,
                    sequence=False), split.val_labels)
    train_seconds = time.perf_counter() - fit_started
    memory = memory_of(split.extras, config.memory_min_weight)
    if split.extras:
        texts = [t for t, _, _ in split.extras]
        base_model = SentimentModel(weights, vocab, config)
        base = base_model.model_logits(texts).astype(np.float64)
        table = fit_correction(base_model.community_rows(texts), np.asarray([y for _, y, _ in split.extras]),
                               np.asarray([w for _, _, w in split.extras]), base, config.community_l2)
        weights.update(ngram_arrays(COMMUNITY_WORDS, table, 0.0))
    serving = SentimentModel(weights, vocab, config, memory=memory)
    val_logits = serving.logits(split.val_texts).astype(np.float64)  # as served: memory and community included
    metrics: dict[str, Any] = {"val_loss": log_loss(val_logits, split.val_labels),
                               "val_accuracy": hit_rate(val_logits, split.val_labels)}
    if data is None and evaluate_test:
        test = load_imdb(data_dir, "test")
        metrics["test_accuracy"] = accuracy(serving, test.texts, test.labels)
        metrics["test_n"] = len(test)

    run = manager.new_run()
    manager.save(FitState(weights), run, 1, metrics, config=asdict(config), data=split.fingerprint,
                 epochs_total=1)  # one fit is the whole budget
    registry = ModelRegistry.in_home(home, NAME)
    meta = {
        "metrics": metrics,
        "profile": config.name,
        "config": asdict(config),
        "views": {name: asdict(view(name)) for name in config.linear_views},
        "per_model": per_model,
        "data_fingerprint": split.fingerprint,
        "data_source": "IMDB train" if data is None else f"CSV {Path(data).name}",
        "train_reviews": len(split.train_texts),
        "validation_reviews": len(split.val_texts),
        "extra_examples": len(split.extras),
        "remembered_reviews": len(memory),
        "epochs_run": 1,
        "last_epoch": 1,
        "blend": [float(x) for x in weights["blend"]],
        "blend_long": [float(x) for x in weights["blend_long"]] if config.long_blend else None,
        "blend_without_lstm": {key: [float(x) for x in blend] for key, blend in without_sequence.items()} or None,
        "training_seconds": round(train_seconds, 1),
        "started_from": start.label() if start else None,
        "checkpoint_run": run,
    }
    with registry.new_version(meta) as staged:
        np.savez(staged.path / WEIGHTS_FILE, **weights)
        vocab.save(staged.path / VOCAB_FILE)
        (staged.path / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2), "utf-8")
        (staged.path / MEMORY_FILE).write_text(json.dumps(memory, ensure_ascii=False), "utf-8")
    if promote:
        registry.promote(staged.version, reason="train_sentiment")
    if keep_runs:
        manager.prune_runs(keep_runs)
    return TrainingResult(
        model=NAME, version=staged.version, metrics=metrics, epochs_run=1, last_epoch=1,
        started_from=start.label() if start else None, promoted=promote, seconds=time.perf_counter() - started,
        extra={"checkpoint_run": run, "training_seconds": train_seconds, "profile": config.name, "done": True,
               "epochs_total": 1, "per_model": per_model},
    )
