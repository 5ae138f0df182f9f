"""Training the critic (Keras): two branches side by side, blended on validation.

Model (wide and deep):
- deep: Embedding + LSTM over a window of at most `config.window` tokens. A longer review
  is split into ceil(n / window) consecutive windows of (nearly) equal size; every window
  is scored and the review's deep logit is the MEAN of the window logits, so nothing is
  cut off. During training each review shows one of its windows, drawn anew each epoch.
- wide: NB-weighted logistic regression (NBSVM, Wang & Manning 2012, with a logistic
  loss): a linear model over which hashed unigrams and bigrams the WHOLE review contains,
  each scaled by its fixed Naive-Bayes log-count ratio r; only the weights are learnt.
  Alone it reaches ~91.8% on IMDB test; the LSTM adds word-order evidence.
- Each branch has its own loss and keeps the weights of its own best validation epoch.
  Why: trained as one summed logit, the wide branch memorises the training reviews within
  two epochs and the LSTM stops learning (88.8%, docs/benchmarks.md). The served logit is
  a * deep + b * wide + c, with (a, b, c) a logistic regression on the validation reviews.

Validation runs through the serving path (`engine.sentiment.serving`), so the figures
recorded are the served model's. This is the slice's only module that imports Keras;
`engine.sentiment` reaches it on first use.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from playbill.engine.checkpoints import CheckpointManager
from playbill.engine.errors import CheckpointError
from playbill.engine.imdb import load_imdb
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment.config import CONFIG_FILE, MODEL_FILE, NAME, VOCAB_FILE, WEIGHTS_FILE
from playbill.engine.sentiment.config import SentimentConfig
from playbill.engine.sentiment.data import training_split
from playbill.engine.sentiment.evaluate import accuracy, fit_blend, hit_rate, log_loss
from playbill.engine.sentiment.features import features, pad_ngrams, pad_windows, split_windows
from playbill.engine.sentiment.serving import SentimentModel
from playbill.engine.text import Vocabulary, tokenize
from playbill.engine.training import TrainingResult

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the Keras model (training)


def build_model(config: SentimentConfig, vocab_size: int):
    """Two outputs, each with its own loss: {"deep": LSTM logit, "wide": n-gram logit}."""
    window = keras.Input((None,), dtype="int32", name="window")
    ngrams = keras.Input((None,), dtype="int32", name="ngrams")
    x = layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="word_embedding")(window)
    x = layers.LSTM(config.lstm_units, name="lstm")(x)
    x = layers.Dropout(config.dropout, name="lstm_dropout")(x)
    deep = layers.Dense(1, name="deep_logit")(x)
    wide = NBScore(config.ngram_buckets + 1, config.wide_l2, name="nb_score")(ngrams)
    model = keras.Model([window, ngrams], {"deep": deep, "wide": wide}, name="critic")
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss={"deep": loss, "wide": loss},
        metrics={name: [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)] for name in ("deep", "wide")},
    )
    return model


BRANCH_LAYERS = {"deep": ("word_embedding", "lstm", "deep_logit"), "wide": ("nb_score",)}

@keras.saving.register_keras_serializable(package="playbill")
class NBScore(layers.Layer):
    """The wide branch: logit = b + sum over the review's distinct n-grams g of w[g] * r[g].

    r is the n-gram's Naive-Bayes log-count ratio, computed once from the training reviews
    and kept fixed. Scaling by r makes the evidence NB already sees cheap for the learnt
    weights; the L2 on w keeps rare n-grams near plain NB. Id 0 is padding and has r = 0.
    """

    def __init__(self, size: int, l2: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size, self.l2 = size, l2

    def build(self, input_shape) -> None:
        self.w = self.add_weight(shape=(self.size,), name="w", initializer="zeros",
                                 regularizer=keras.regularizers.L2(self.l2) if self.l2 else None)
        self.r = self.add_weight(shape=(self.size,), name="r", initializer="zeros", trainable=False)
        self.b = self.add_weight(shape=(1,), name="b", initializer="zeros")

    def call(self, ids):
        scores = ops.take(self.w, ids) * ops.take(self.r, ids)
        return ops.sum(scores, axis=1, keepdims=True) + self.b

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "l2": self.l2}


def nb_log_count_ratios(grams: Sequence[np.ndarray], labels: np.ndarray, size: int, alpha: float = 1.0) -> np.ndarray:
    """r = log((p / |p|) / (q / |q|)) with p, q the smoothed document counts in positive and negative reviews."""
    positive = labels > 0.5
    empty = np.zeros(0, np.int32)
    pos = np.bincount(np.concatenate([g for g, y in zip(grams, positive) if y] or [empty]), minlength=size)
    neg = np.bincount(np.concatenate([g for g, y in zip(grams, positive) if not y] or [empty]), minlength=size)
    p, q = pos + alpha, neg + alpha
    r = np.log((p / p.sum()) / (q / q.sum()))
    r[(pos + neg) == 0] = 0.0  # never seen: no evidence either way (padding id 0 included)
    return r.astype(np.float32)


def export_weights(model) -> dict[str, np.ndarray]:
    """The Keras weights the numpy forward pass needs, by name (the blend is fitted afterwards)."""
    lstm = model.get_layer("lstm")
    kernel, recurrent, bias = (np.asarray(v) for v in lstm.get_weights())
    dense_w, dense_b = (np.asarray(v) for v in model.get_layer("deep_logit").get_weights())
    nb = model.get_layer("nb_score")
    return {
        "embedding": np.asarray(model.get_layer("word_embedding").get_weights()[0]),
        "kernel": kernel,
        "recurrent": recurrent,
        "bias": bias,
        "dense_w": dense_w[:, 0],
        "dense_b": dense_b,
        "ngram_weight": np.asarray(nb.w) * np.asarray(nb.r),
        "wide_b": np.asarray(nb.b),
    }


class ReviewBatches(keras.utils.PyDataset):
    """Training batches: per-epoch seeded order and window draw, so a resume replays exactly."""

    def __init__(self, ids: list[np.ndarray], ngrams: list[np.ndarray], labels: np.ndarray, config: SentimentConfig):
        super().__init__()
        self.windows = [split_windows(x, config.window) for x in ids]
        self.ngrams, self.labels, self.config = ngrams, labels.astype(np.float32), config
        self.epoch = 0  # set by the training callback at each epoch's start
        # fixed batch shapes (one traced graph): the window, and the longest review's n-grams
        self.ngram_width = max(len(g) for g in ngrams)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.config.batch_size)

    def __getitem__(self, index: int):
        return self.batch(self.epoch, index)

    def batch(self, epoch: int, index: int):
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(len(self.labels))
        pick = rng.random(len(self.labels))
        rows = order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
        chosen = [self.windows[r][int(pick[r] * len(self.windows[r]))] for r in rows]
        x = {"window": pad_windows(chosen, self.config.window),
             "ngrams": pad_ngrams([self.ngrams[r] for r in rows], self.ngram_width)}
        y = self.labels[rows]
        return x, {"deep": y, "wide": y}


class ServingValidation(keras.callbacks.Callback):
    """Validation through the serving path (all windows); each branch keeps its best epoch.

    Early stopping: when neither branch's validation loss has improved for `patience` epochs.
    """

    def __init__(self, batches: ReviewBatches, vocab: Vocabulary, config: SentimentConfig,
                 val_features: list[tuple[np.ndarray, np.ndarray]], val_y: np.ndarray, initial_epoch: int) -> None:
        super().__init__()
        self.batches, self.vocab, self.config = batches, vocab, config
        self.val_features, self.val_y = val_features, val_y
        self.best = {branch: {"loss": math.inf, "epoch": initial_epoch, "weights": None}
                     for branch in BRANCH_LAYERS}
        self.history: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.batches.epoch = epoch

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        serving = SentimentModel(export_weights(self.model), self.vocab, self.config)
        logits = dict(zip(("deep", "wide"), serving.branch_logits(self.val_features)))
        a, b, c = fit_blend(logits["deep"], logits["wide"], self.val_y)
        blended = a * logits["deep"] + b * logits["wide"] + c
        row = {"epoch": epoch + 1, "loss": float((logs or {}).get("loss", math.nan)),
               "val_loss": log_loss(blended, self.val_y), "val_accuracy": hit_rate(blended, self.val_y)}
        for branch, layer_names in BRANCH_LAYERS.items():
            loss = row[f"{branch}_val_loss"] = log_loss(logits[branch], self.val_y)
            row[f"{branch}_val_accuracy"] = hit_rate(logits[branch], self.val_y)
            if loss < self.best[branch]["loss"]:
                weights = [self.model.get_layer(name).get_weights() for name in layer_names]
                self.best[branch] = {"loss": loss, "epoch": epoch + 1, "weights": weights}
        if logs is not None:
            logs.update(val_loss=row["val_loss"], val_accuracy=row["val_accuracy"])
        self.history.append(row)
        if epoch + 1 - max(best["epoch"] for best in self.best.values()) > self.config.patience:
            self.model.stop_training = True

    def restore_best(self) -> None:
        for branch, layer_names in BRANCH_LAYERS.items():
            if self.best[branch]["weights"] is not None:
                for name, weights in zip(layer_names, self.best[branch]["weights"]):
                    self.model.get_layer(name).set_weights(weights)


class EpochCheckpoint(keras.callbacks.Callback):
    """A checkpoint at the end of every epoch (epochs counted from 1), after validation has
    added its figures to the epoch's logs."""

    def __init__(self, manager: CheckpointManager, run: str, **extra: Any) -> None:
        super().__init__()
        self.manager, self.run, self.extra = manager, run, extra

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.manager.save(self.model, self.run, epoch + 1, dict(logs or {}), **self.extra)


# ---------------------------------------------------------------- training


def train_sentiment(config: SentimentConfig, home: Path, data_dir: Path, *, epochs: int | None = None,
                    resume: bool = False, checkpoint: str | Path | None = None, data: Path | None = None,
                    extra_examples: Sequence[Any] = (), promote: bool = True, progress: bool = True,
                    evaluate_test: bool = True, keep_runs: int | None = 2) -> TrainingResult:
    """Train (or continue) the critic; publish a new registry version; return its metrics.

    `epochs` is how many epochs to run now (the epoch counter continues across resumes);
    None: `config.epochs`, or on a resume what is left of it (at least one).
    `resume` continues the best epoch (lowest validation loss) of the newest run,
    `checkpoint` a chosen one; the vocabulary is taken from that checkpoint's run so the
    ids keep their meaning. Extra examples join the training reviews (their weights are not
    used by this layout: the n-gram profiles use them).
    Test accuracy (all 25,000 IMDB test reviews) is measured when training on IMDB.
    `keep_runs` bounds disk use (each epoch's checkpoint holds the optimizer state): the
    newest that many checkpoint runs are kept; None keeps all (the nightly job prunes itself).
    """
    started = time.perf_counter()
    home, data_dir = Path(home), Path(data_dir)
    manager = CheckpointManager.in_home(home, NAME)
    start = None
    if checkpoint is not None:
        start = manager.resolve(checkpoint)
    elif resume:
        start = manager.best_valid()
        if start is None:
            log.info("no valid sentiment checkpoint to resume; starting from scratch")
    if start is not None:
        saved = start.extra.get("config")
        if saved:  # the architecture must match the checkpoint's
            config = replace(SentimentConfig.from_dict(saved), epochs=config.epochs, patience=config.patience,
                             max_train_reviews=config.max_train_reviews)
        if config.wide != "nblr":
            raise CheckpointError(f"checkpoint {start.label()} has the older {config.wide!r} layout, which this "
                                  "version only serves; train from scratch")

    split = training_split(data_dir, data, extra_examples, config)
    train_texts = split.train_texts + [t for t, _, _ in split.extras]
    train_labels = [int(y) for y in split.train_labels] + [y for _, y, _ in split.extras]
    val_texts, val_labels = split.val_texts, split.val_labels
    fingerprint = split.fingerprint
    train_tokens = [tokenize(t) for t in train_texts]
    if start is not None:
        vocab_path = start.path.parent / VOCAB_FILE
        if not vocab_path.is_file():
            raise CheckpointError(f"checkpoint {start.label()} has no {VOCAB_FILE} beside it; start from scratch")
        vocab = Vocabulary.load(vocab_path)
    else:
        vocab = Vocabulary.build(train_tokens, config.vocab_size)
    train_ids, train_grams = zip(*(features(t, vocab, config) for t in train_tokens))
    val_features = [features(tokenize(t), vocab, config) for t in val_texts]
    vocab_size = config.vocab_size  # fixed table size, even if the data has fewer words
    labels = np.asarray(train_labels, dtype=np.float32)
    val_y = np.asarray(val_labels, dtype=np.float32)

    keras.utils.set_random_seed(config.seed)
    if start is not None:
        try:
            model = keras.models.load_model(start.path)
        except Exception as exc:  # a checkpoint that Keras cannot read
            raise CheckpointError(f"cannot load checkpoint {start.label()}: {exc}") from None
        initial_epoch = start.epoch
    else:
        model = build_model(config, vocab_size)
        model.get_layer("nb_score").r.assign(nb_log_count_ratios(train_grams, labels, config.ngram_buckets + 1))
        initial_epoch = 0
    if epochs is None:
        epochs = max(1, config.epochs - initial_epoch) if start is not None else config.epochs

    run = manager.new_run()
    vocab.save(manager.root / run / VOCAB_FILE)
    batches = ReviewBatches(list(train_ids), list(train_grams), labels, config)
    batches.epoch = initial_epoch  # Keras peeks at the first batches before the first on_epoch_begin

    validation = ServingValidation(batches, vocab, config, val_features, val_y, initial_epoch)
    callbacks = [validation, EpochCheckpoint(manager, run, config=asdict(config), data=fingerprint)]
    verbose = (1 if sys.stdout.isatty() else 2) if progress else 0
    fit_started = time.perf_counter()
    model.fit(batches, epochs=initial_epoch + epochs, initial_epoch=initial_epoch,
              callbacks=callbacks, verbose=verbose, shuffle=False)  # our own seeded order per epoch
    train_seconds = time.perf_counter() - fit_started
    last_epoch = validation.history[-1]["epoch"] if validation.history else initial_epoch
    validation.restore_best()

    weights = export_weights(model)
    deep, wide = SentimentModel(weights, vocab, config).branch_logits(val_features)
    weights["blend"] = blend = fit_blend(deep, wide, val_y)
    serving = SentimentModel(weights, vocab, config)
    val_logits = serving.logits_from_features(val_features)
    metrics: dict[str, float] = {"val_loss": log_loss(val_logits, val_y), "val_accuracy": hit_rate(val_logits, val_y)}
    best_epoch = {branch: best["epoch"] for branch, best in validation.best.items()}
    if data is None and evaluate_test:
        test = load_imdb(data_dir, "test")
        metrics["test_accuracy"] = accuracy(serving, test.texts, test.labels)
        metrics["test_n"] = len(test)

    registry = ModelRegistry.in_home(home, NAME)
    meta = {
        "metrics": metrics,
        "config": asdict(config),
        "data_fingerprint": fingerprint,
        "data_source": "IMDB train" if data is None else f"CSV {Path(data).name}",
        "train_reviews": len(train_texts),
        "validation_reviews": len(val_texts),
        "extra_examples": len(split.extras),
        "profile": config.name,
        "epochs_run": len(validation.history),
        "last_epoch": last_epoch,
        "best_epoch": best_epoch,
        "blend": dict(zip(("deep", "wide", "bias"), blend.tolist())),
        "history": validation.history,
        "training_seconds": round(train_seconds, 1),
        "started_from": start.label() if start else None,
        "checkpoint_run": run,
    }
    with registry.new_version(meta) as staged:
        model.save(staged.path / MODEL_FILE)
        vocab.save(staged.path / VOCAB_FILE)
        np.savez(staged.path / WEIGHTS_FILE, **weights)
        (staged.path / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2), "utf-8")
    if promote:
        registry.promote(staged.version, reason="train_sentiment")
    if keep_runs:
        manager.prune_runs(keep_runs)
    return TrainingResult(
        model=NAME, version=staged.version, metrics=metrics, epochs_run=len(validation.history),
        last_epoch=last_epoch, started_from=start.label() if start else None, promoted=promote,
        seconds=time.perf_counter() - started,
        extra={"checkpoint_run": run, "best_epoch": best_epoch, "training_seconds": train_seconds,
               "history": validation.history, "profile": config.name, "epochs_total": config.epochs,
               "done": last_epoch >= config.epochs},
    )
