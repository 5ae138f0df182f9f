"""How good a critic is: accuracy and log loss on labelled reviews, held in memory or on disk.

Also the blend: the three numbers that weigh the two branches, fitted on validation reviews
(training calls it; it is numpy and needs no model). The review rule's length limit is the
served model's; reviews longer than it are scored on their first `max_chars` characters.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from playbill.engine.errors import InvalidInput
from playbill.engine.imdb import Reviews, load_csv, load_imdb
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment.config import NAME, SentimentConfig
from playbill.engine.sentiment.data import validation_reviews
from playbill.engine.sentiment.serving import SentimentModel

SPLITS = ("validation", "test")

LabelledReviews = Sequence[tuple[str, int]]  # (text, 1 for positive / 0 for negative)
Progress = Callable[[int, int], None]  # (reviews judged so far, reviews in all), after each batch


def hit_rate(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of reviews whose logit has the label's sign (accuracy at probability 0.5)."""
    return float(np.mean((np.asarray(logits) >= 0) == (np.asarray(labels) > 0)))


def calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: over `bins` equal-width bins of the confidence max(p, 1 - p),
    the share-weighted gap between the mean confidence and the accuracy in the bin."""
    p = np.asarray(probabilities, np.float64)
    right = (p >= 0.5) == (np.asarray(labels) > 0)
    confidence = np.maximum(p, 1.0 - p)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    gap = 0.0
    for b in np.unique(which):
        inside = which == b
        gap += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    return float(gap)


LATENCY_REVIEWS = 300  # single-review calls timed (p50 and p99 reported, the first 5 left out)
THROUGHPUT_REVIEWS = 5_000  # reviews judged in batches of 1,000


def speed(predict_one: Callable[[str], Any], predict_batch: Callable[[Sequence[str]], Any],
          texts: Sequence[str]) -> dict:
    """p50/p99 of one review at a time, and reviews/s in batches of 1,000 (`texts`: full-length
    reviews, at least `LATENCY_REVIEWS`)."""
    latencies = []
    for text in texts[:LATENCY_REVIEWS]:
        t0 = time.perf_counter()
        predict_one(text)
        latencies.append(time.perf_counter() - t0)
    batch = texts[:THROUGHPUT_REVIEWS]
    t0 = time.perf_counter()
    for start in range(0, len(batch), 1000):
        predict_batch(batch[start : start + 1000])
    throughput = len(batch) / (time.perf_counter() - t0)
    ms = 1000 * np.asarray(latencies[5:])
    return {"latency_ms": float(np.percentile(ms, 50)), "latency_p99_ms": float(np.percentile(ms, 99)),
            "throughput": throughput}


def speed_as_served(version_path: Path, texts: Sequence[str]) -> dict:
    """`speed` of a saved version in a fresh process that only loads it, as the bot serves it: a
    process that has just trained with Keras keeps TensorFlow's threads spinning for seconds
    after, and everything in it runs ~30% slower meanwhile (docs/benchmarks.md "## Critic")."""
    timed = list(texts[: max(LATENCY_REVIEWS, THROUGHPUT_REVIEWS)])
    return in_fresh_process(_speed_of_version, str(version_path), timed)


def in_fresh_process(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a fresh (spawned) process, its result returned here: what it leaves
    behind (TensorFlow's spinning threads, its memory) goes with that process instead of slowing
    what this one times next."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _speed_of_version(path: str, texts: list[str]) -> dict:
    model = SentimentModel.load(Path(path))
    return speed(model.predict_one, model.predict, texts)


def log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean log(1 + exp(-y*z)) with y in {-1, +1}, computed stably."""
    signed = np.where(np.asarray(labels) > 0, logits, -np.asarray(logits)).astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, -signed)))


def blend_columns(columns: np.ndarray, labels: np.ndarray, l2: float = 1e-4) -> np.ndarray:
    """(a_1..a_k, c) of the logistic regression sigmoid(sum a_i x_i + c) on held-out reviews (scikit-learn,
    L2 `l2` per review on the a_i: finite on separable, tiny data): how much to trust each model,
    and the calibration of the served probability."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels) > 0.5
    x = np.asarray(columns, np.float64).reshape(len(labels), -1)
    if labels.all() or not labels.any():  # one label only: no evidence to weigh; trust the models as they are
        return np.concatenate([np.ones(x.shape[1]), [0.0]]).astype(np.float32)
    fitted = LogisticRegression(C=1.0 / (l2 * len(labels)), max_iter=1000, tol=1e-8).fit(x, labels)
    return np.concatenate([fitted.coef_.ravel(), fitted.intercept_]).astype(np.float32)


def fit_blend(deep: np.ndarray, wide: np.ndarray, labels: np.ndarray, l2: float = 1e-4) -> np.ndarray:
    """(a, b, c) of the logistic regression sigmoid(a * deep + b * wide + c) on held-out reviews:
    the wide-and-deep layout's blend (three numbers fitted on reviews the branches never trained on)."""
    return blend_columns(np.column_stack([deep, wide]), labels, l2)


def accuracy(model: SentimentModel, texts: Sequence[str], labels: Sequence[int], batch: int = 2048,
             progress: Progress | None = None) -> float:
    """Share of `texts` the model labels as `labels` says (batched, any number of reviews)."""
    if not len(texts):
        raise ValueError("accuracy of no reviews")
    texts = [t[: model.limits.max_chars] for t in texts]
    parts = []
    if progress is not None:
        progress(0, len(texts))
    for start in range(0, len(texts), batch):
        parts.append(model.logits(texts[start : start + batch]))
        if progress is not None:
            progress(min(start + batch, len(texts)), len(texts))
    return hit_rate(np.concatenate(parts), np.asarray(labels))


def evaluate_sentiment(home: Path, data_dir: Path, *, version: str | None = None,
                       data: Path | LabelledReviews | None = None, split: str | None = None,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Accuracy of a version (default: the current one) on labelled reviews; `progress(done, total)`
    is called once the reviews are read and after each batch judged.

    `data` None: `split` "validation" (the default: the fixed held-out split of the IMDB training
    reviews, what gates promotion) or "test" (all 25,000 IMDB test reviews: reported, never used
    to choose). `data` a labelled CSV: all of it, or with split="validation" its held-out split.
    `data` (text, label) pairs in memory: all of them.
    """
    if split is not None and split not in SPLITS:
        raise InvalidInput(f"split must be one of {', '.join(SPLITS)}")
    registry = ModelRegistry.in_home(home, NAME)
    chosen = registry.get(version) if version else registry.current()
    model = SentimentModel.load(chosen.path)
    reviews, used = _reviews(Path(data_dir), data, split, model.config)
    return {"accuracy": accuracy(model, reviews.texts, reviews.labels, progress=progress), "n": len(reviews),
            "model_version": chosen.version, "split": used}


def _reviews(data_dir: Path, data: Path | LabelledReviews | None, split: str | None,
             config: SentimentConfig) -> tuple[Reviews, str]:
    if data is None:
        if split == "test":
            return load_imdb(data_dir, "test"), "test"
        return validation_reviews(data_dir, None, config), "validation"
    if isinstance(data, (str, Path)):
        if split == "validation":
            return validation_reviews(data_dir, data, config), "validation"
        if split == "test":
            raise InvalidInput("a CSV has no test split: evaluate on all of it (no split) or its validation split")
        return load_csv(Path(data)), "all"
    pairs = [(str(text), int(label)) for text, label, *_ in data]
    if not pairs:
        raise ValueError("no labelled reviews to evaluate on")
    return Reviews([t for t, _ in pairs], [y for _, y in pairs], f"{len(pairs)} reviews in memory", ""), "all"
