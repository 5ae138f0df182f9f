"""Training the n-gram critic (the "quick" and "default" profiles): numpy only, no Keras.

Each n-gram model of `config.ngrams` is fitted directly (engine.sentiment.ngrams) on the
training reviews only; the blend of their logits is fitted on the validation reviews; the
extra examples (votes) go into the community layer on top (engine.sentiment.community: a
memory and a mean-pooled correction). One checkpoint per fit holds the learnt n-gram
weights, so a resume (the nightly job's path) warm-starts from them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from playbill.engine.checkpoints import Checkpoint, CheckpointManager
from playbill.engine.errors import CheckpointError
from playbill.engine.imdb import load_imdb
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment.config import CONFIG_FILE, MEMORY_FILE, NAME, WEIGHTS_FILE, SentimentConfig
from playbill.engine.sentiment.data import memory_of, training_split
from playbill.engine.sentiment.evaluate import accuracy, hit_rate, log_loss
from playbill.engine.sentiment.community import community_ids, fit_correction
from playbill.engine.sentiment.ngrams import NGRAM_SETS, Rows, fit, fit_blend, nb_ratios, review_ids
from playbill.engine.sentiment.serving import COMMUNITY, SentimentModel, ngram_arrays
from playbill.engine.training import TrainingResult

log = logging.getLogger(__name__)


class FitState:
    """What a checkpoint of an n-gram fit holds: each model's learnt correction u (non-zeros)."""

    def __init__(self, corrections: dict[str, np.ndarray]) -> None:
        self.corrections = corrections

    def save(self, path: str | Path) -> None:
        arrays = {}
        for name, u in self.corrections.items():
            ids = np.flatnonzero(u).astype(np.int32)
            arrays.update({f"{name}_ids": ids, f"{name}_values": u[ids], f"{name}_size": np.asarray([len(u)])})
        with open(path, "wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, checkpoint: Checkpoint, names: tuple[str, ...]) -> FitState:
        try:
            with np.load(checkpoint.path) as data:
                out = {}
                for name in names:
                    u = np.zeros(int(data[f"{name}_size"][0]), np.float32)
                    u[data[f"{name}_ids"]] = data[f"{name}_values"]
                    out[name] = u
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot load checkpoint {checkpoint.label()}: {exc}") from None
        return cls(out)


def train_ngrams(config: SentimentConfig, home: Path, data_dir: Path, *, start: Checkpoint | None,
                 data: Path | None, extra, promote: bool, progress: bool, evaluate_test: bool,
                 keep_runs: int | None) -> TrainingResult:
    """Fit the n-gram models, blend them on validation, publish a version; see the module doc."""
    started = time.perf_counter()
    home, data_dir = Path(home), Path(data_dir)
    manager = CheckpointManager(home / "checkpoints", NAME)
    warm = FitState.load(start, config.ngrams) if start is not None else None
    split = training_split(data_dir, data, extra, config)
    train_ids = review_ids(split.train_texts, config.ngrams)
    val_ids = review_ids(split.val_texts, config.ngrams)

    weights: dict[str, np.ndarray] = {}
    corrections: dict[str, np.ndarray] = {}
    val_columns = []
    per_model: dict[str, dict[str, float]] = {}
    fit_started = time.perf_counter()
    for name in config.ngrams:
        spec = NGRAM_SETS[name]
        t0 = time.perf_counter()
        rows = Rows(train_ids[name])
        ones = np.ones(rows.n)
        r = nb_ratios(rows, split.train_labels, ones, spec.buckets + 1, spec.min_count)
        fitted = fit(rows, split.train_labels, ones, r, spec,
                     u0=warm.corrections.get(name) if warm else None)
        weights.update(ngram_arrays(name, fitted.table, fitted.bias))
        corrections[name] = fitted.u
        val_logit = Rows(val_ids[name]).sums(fitted.table) + fitted.bias
        val_columns.append(val_logit)
        per_model[name] = {"val_accuracy": hit_rate(val_logit, split.val_labels), "seconds": time.perf_counter() - t0}
        if progress:
            print(f"{name}: validation accuracy {per_model[name]['val_accuracy']:.4f} "
                  f"({per_model[name]['seconds']:.1f} s)", flush=True)
    columns = np.column_stack(val_columns)
    weights["blend"] = blend = fit_blend(columns, split.val_labels)
    train_seconds = time.perf_counter() - fit_started
    memory = memory_of(split.extras, config.memory_min_weight)
    if split.extras:
        texts = [t for t, _, _ in split.extras]
        base = SentimentModel(weights, None, config).model_logits(texts).astype(np.float64)
        table = fit_correction(community_ids(texts), np.asarray([y for _, y, _ in split.extras]),
                               np.asarray([w for _, _, w in split.extras]), base, config.community_l2)
        weights.update(ngram_arrays(COMMUNITY, table, 0.0))
    serving = SentimentModel(weights, None, config, memory=memory)
    val_logits = serving.logits(split.val_texts).astype(np.float64)  # as served: memory and community included
    metrics: dict[str, Any] = {"val_loss": log_loss(val_logits, split.val_labels),
                               "val_accuracy": hit_rate(val_logits, split.val_labels)}
    if data is None and evaluate_test:
        test = load_imdb(data_dir, "test")
        metrics["test_accuracy"] = accuracy(serving, test.texts, test.labels)
        metrics["test_n"] = len(test)

    run = manager.new_run()
    manager.save(FitState(corrections), run, 1, metrics, config=asdict(config), data=split.fingerprint,
                 epochs_total=1)  # one fit is the whole budget
    registry = ModelRegistry.in_home(home, NAME)
    meta = {
        "metrics": metrics,
        "profile": config.name,
        "config": asdict(config),
        "ngram_sets": {name: asdict(NGRAM_SETS[name]) for name in config.ngrams},
        "per_model": per_model,
        "data_fingerprint": split.fingerprint,
        "data_source": "IMDB train" if data is None else f"CSV {Path(data).name}",
        "train_reviews": len(split.train_texts),
        "validation_reviews": len(split.val_texts),
        "extra_examples": len(split.extras),
        "remembered_reviews": len(memory),
        "epochs_run": 1,
        "last_epoch": 1,
        "blend": [float(x) for x in blend],
        "training_seconds": round(train_seconds, 1),
        "started_from": start.label() if start else None,
        "checkpoint_run": run,
    }
    with registry.new_version(meta) as staged:
        np.savez(staged.path / WEIGHTS_FILE, **weights)
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
