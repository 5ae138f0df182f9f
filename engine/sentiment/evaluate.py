"""How good a critic is: accuracy and log loss on labelled reviews, held in memory or on disk.

Also the blend: the three numbers that weigh the two branches, fitted on validation reviews
(training calls it; it is numpy and needs no model). The review rule's length limit is the
served model's; reviews longer than it are scored on their first `max_chars` characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.imdb import Reviews, load_csv, load_imdb
from engine.registry import ModelRegistry
from engine.sentiment.config import NAME
from engine.sentiment.serving import SentimentModel

LabelledReviews = Sequence[tuple[str, int]]  # (text, 1 for positive / 0 for negative)


def hit_rate(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of reviews whose logit has the label's sign (accuracy at probability 0.5)."""
    return float(np.mean((np.asarray(logits) >= 0) == (np.asarray(labels) > 0)))


def log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean log(1 + exp(-y*z)) with y in {-1, +1}, computed stably."""
    signed = np.where(np.asarray(labels) > 0, logits, -np.asarray(logits)).astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, -signed)))


def fit_blend(deep: np.ndarray, wide: np.ndarray, labels: np.ndarray, l2: float = 1e-4) -> np.ndarray:
    """(a, b, c) of the logistic regression sigmoid(a * deep + b * wide + c) on held-out reviews.

    Three numbers fitted on thousands of reviews the branches never trained on: how much to
    trust each branch. Newton's method with step halving (a full Newton step can overshoot
    when the logits are large); a little L2 keeps it finite on separable (tiny) data.
    """
    x = np.column_stack([deep, wide, np.ones(len(deep))]).astype(np.float64)
    signs = np.where(np.asarray(labels) > 0.5, 1.0, -1.0)

    def objective(coef: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -signs * (x @ coef))) + 0.5 * l2 * coef @ coef)

    coef = np.zeros(3)
    value = objective(coef)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ coef, -60, 60)))  # P(positive)
        grad = x.T @ (p - (signs > 0)) / len(x) + l2 * coef
        hess = (x.T * (p * (1 - p))) @ x / len(x) + l2 * np.eye(3)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6 and objective(coef - scale * step) > value:
            scale /= 2
        if scale <= 1e-6:
            break
        coef -= scale * step
        value = objective(coef)
        if np.max(np.abs(scale * step)) < 1e-9:
            break
    return coef.astype(np.float32)


def accuracy(model: SentimentModel, texts: Sequence[str], labels: Sequence[int], batch: int = 2048) -> float:
    """Share of `texts` the model labels as `labels` says (batched, any number of reviews)."""
    if not len(texts):
        raise ValueError("accuracy of no reviews")
    texts = [t[: model.limits.max_chars] for t in texts]
    logits = np.concatenate([model.logits(texts[start : start + batch]) for start in range(0, len(texts), batch)])
    return hit_rate(logits, np.asarray(labels))


def evaluate_sentiment(home: Path, data_dir: Path, *, version: str | None = None,
                       data: Path | LabelledReviews | None = None) -> dict[str, Any]:
    """Accuracy of a version (default: the current one) on labelled reviews: `data` as a list of
    (text, label) pairs in memory, a labelled CSV file, or (None) all 25,000 IMDB test reviews."""
    registry = ModelRegistry(Path(home) / "models", NAME)
    chosen = registry.get(version) if version else registry.current()
    model = SentimentModel.load(chosen.path)
    reviews = _reviews(Path(data_dir), data)
    return {"accuracy": accuracy(model, reviews.texts, reviews.labels), "n": len(reviews),
            "model_version": chosen.version}


def _reviews(data_dir: Path, data: Path | LabelledReviews | None) -> Reviews:
    if data is None:
        return load_imdb(data_dir, "test")
    if isinstance(data, (str, Path)):
        return load_csv(Path(data))
    pairs = [(str(text), int(label)) for text, label in data]
    if not pairs:
        raise ValueError("no labelled reviews to evaluate on")
    return Reviews([t for t, _ in pairs], [y for _, y in pairs], f"{len(pairs)} reviews in memory", "")
