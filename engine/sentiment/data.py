"""The critic's data: the fixed train/validation split, and extra (voted) examples with weights.

One split for training and for gating: a permutation seeded by `VALIDATION_SEED` (not by the
config's training seed, so every version holds out the same reviews), the first
`validation_fraction` held out. `evaluate(split="validation")` scores exactly these reviews;
the IMDB test set is only ever reported.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from playbill.engine.errors import InvalidInput
from playbill.engine.imdb import Reviews, load_csv, load_imdb
from playbill.engine.sentiment.config import ReviewRequest, SentimentConfig, SentimentLimits
from playbill.engine.text import standardize

log = logging.getLogger(__name__)

VALIDATION_SEED = 1337  # the held-out reviews are the same for every version, whatever its seed


@dataclass
class Split:
    """Training reviews (IMDB or a CSV), the held-out validation reviews, and the usable extra
    examples (kept apart: the n-gram layout learns them in its community layer, the
    wide-and-deep layout appends them to its training reviews)."""

    train_texts: list[str]
    train_labels: np.ndarray  # int 0/1
    val_texts: list[str]
    val_labels: np.ndarray
    fingerprint: str  # of the dataset and the extra examples
    extras: list[tuple[str, int, float]]  # (text, label, weight)


def read_reviews(data_dir: Path, data: Path | str | None, split: str = "train") -> Reviews:
    return load_csv(Path(data)) if data is not None else load_imdb(Path(data_dir), split)


def split_rows(count: int, config: SentimentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, training rows) of a dataset of `count` reviews."""
    order = np.random.default_rng(VALIDATION_SEED).permutation(count)
    if config.max_train_reviews:
        order = order[: config.max_train_reviews]
    n_val = max(1, int(round(len(order) * config.validation_fraction)))
    return order[:n_val], order[n_val:]


def validation_reviews(data_dir: Path, data: Path | str | None, config: SentimentConfig) -> Reviews:
    """The held-out reviews training kept out (IMDB train, or a CSV's), for gating."""
    reviews = read_reviews(data_dir, data)
    rows, _ = split_rows(len(reviews), config)
    return Reviews([reviews.texts[i] for i in rows], [reviews.labels[i] for i in rows],
                   f"validation split of {reviews.source}", reviews.fingerprint)


SHORT_REVIEWS_FILE = "sst2_dev.tsv"  # one `label<TAB>sentence` a line, in the data directory


def short_reviews(data_dir: Path) -> Reviews | None:
    """The short development set (one-sentence reviews; for choosing and reporting, never for
    fitting), or None when the data directory has none."""
    path = Path(data_dir) / SHORT_REVIEWS_FILE
    if not path.is_file():
        return None
    texts, labels = [], []
    for line in path.read_text("utf-8").splitlines():
        label, _, text = line.partition("\t")
        if text.strip() and label in ("positive", "negative"):
            texts.append(text)
            labels.append(int(label == "positive"))
    return Reviews(texts, labels, f"short reviews ({path.name})", "")


def clean_extras(extra: Sequence[Any]) -> list[tuple[str, int, float]]:
    """(text, label, weight) of each usable extra example: (text, 0|1) pairs weigh 1.0; rows that
    are not reviews, labels other than 0/1 and weights that are not finite and above 0 are dropped."""
    kept = []
    for row in extra:
        try:
            text, label, *rest = row
            weight = float(rest[0]) if rest else 1.0
        except (TypeError, ValueError):
            continue
        if label in (0, 1) and not isinstance(label, bool) and math.isfinite(weight) and weight > 0 and _is_review(text):
            kept.append((text, int(label), weight))
    if len(kept) < len(extra):
        log.warning("ignored %d extra examples that were not (text, 0 or 1[, weight > 0]) rows", len(extra) - len(kept))
    return kept


def _is_review(text: object) -> bool:
    """Does an extra example pass the review rule that serving applies?"""
    try:
        SentimentLimits().check(ReviewRequest(text))  # type: ignore[arg-type]
    except InvalidInput:
        return False
    return True


def training_split(data_dir: Path, data: Path | str | None, extra: Sequence[Any], config: SentimentConfig) -> Split:
    reviews = read_reviews(data_dir, data)
    kinds = set(reviews.labels)
    if len(kinds) < 2:  # it would learn to say one word to everything, and pass its own validation
        only = "positive" if kinds == {1} else "negative"
        raise InvalidInput(f"{reviews.source} has only {only} reviews ({len(reviews)}); the critic learns from both "
                           "kinds, so give it positive and negative ones")
    val_rows, train_rows = split_rows(len(reviews), config)
    if len(train_rows) < 2:
        raise InvalidInput(f"{reviews.source} has too few reviews to train on ({len(reviews)})")
    extras = clean_extras(extra)
    texts = [reviews.texts[i] for i in train_rows]
    labels = np.asarray([reviews.labels[i] for i in train_rows], np.int64)
    fingerprint = reviews.fingerprint
    if extras:
        digest = hashlib.sha256(reviews.fingerprint.encode())
        for text, label, weight in extras:
            digest.update(f"{label}\t{weight:g}\t{text}\n".encode())
        fingerprint = f"{reviews.fingerprint}+{len(extras)}extra:{digest.hexdigest()[:8]}"
    return Split(texts, labels, [reviews.texts[i] for i in val_rows],
                 np.asarray([reviews.labels[i] for i in val_rows], np.int64), fingerprint, extras)


def memory_of(extras: Sequence[tuple[str, int, float]], min_weight: float) -> dict[str, int]:
    """Reviews to remember verbatim (standardized text -> label): per review, the label with the
    larger total weight, when that total reaches `min_weight` and the two labels are not tied."""
    totals: dict[str, list[float]] = {}
    for text, label, weight in extras:
        totals.setdefault(standardize(text), [0.0, 0.0])[label] += weight
    return {key: int(pos > neg) for key, (neg, pos) in totals.items() if max(neg, pos) >= min_weight and neg != pos}
