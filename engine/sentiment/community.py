"""What the community taught the critic: a small correction on top of the IMDB-trained models.

Votes (extra examples, already settled and capped per member by the caller) never enter the
big n-gram fit: one troll's capped votes on long reviews would still be memorised there
(2.6-8 validation points lost, research-critic.md Q3). Instead:

- a memory: reviews settled with weight >= `memory_min_weight` answer with their label
  (engine.sentiment.data.memory_of; served first);
- a correction d over the hashed word uni+bigrams of the voted reviews, fitted on the votes
  alone with the base logit as offset, no bias, L2 `community_l2`:
      minimise sum_i w_i log(1 + exp(-y_i (base_i + sum_j d[ids_ij] / len(ids_i)))) + l2/2 |d|^2
  and served as base + sum(d[ids]) / len(ids). Mean pooling is what keeps IMDB intact: on a
  400-n-gram review the correction is divided by 400, on a six-word member review by ~11.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from playbill.engine.sentiment.ngrams import Rows, lbfgs, ngram_set, review_ids

SET = "words"  # the n-grams the correction is written over
ITERATIONS = 200


def community_ids(texts: Sequence[str]) -> list[np.ndarray]:
    return review_ids(texts, (SET,))[SET]


def correction(ids: Sequence[np.ndarray], table: np.ndarray) -> np.ndarray:
    """Per review, the mean of `table` over its n-grams (0 for a review without any)."""
    rows = Rows(ids)
    counts = np.maximum(1, np.diff(rows.indptr))
    return rows.sums(table) / counts


def fit_correction(ids: Sequence[np.ndarray], labels: np.ndarray, weights: np.ndarray, base: np.ndarray,
                   l2: float) -> np.ndarray:
    """The correction table (float32, the n-gram set's size; non-zero only on the votes' n-grams)."""
    rows = Rows(ids)
    size = ngram_set(SET).buckets + 1
    table = np.zeros(size, np.float32)
    if not rows.n or not len(rows.indices):
        return table
    columns, inverse = np.unique(rows.indices, return_inverse=True)
    scale = (1.0 / np.maximum(1, np.diff(rows.indptr)))[rows.rows]
    signs = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    w = np.asarray(weights, np.float64)

    def objective(d: np.ndarray) -> tuple[float, np.ndarray]:
        z = base + np.bincount(rows.rows, weights=d[inverse] * scale, minlength=rows.n)
        margin = -signs * z
        loss = np.logaddexp(0.0, margin)
        dz = -signs * w * np.exp(margin - loss)
        grad = np.bincount(inverse, weights=dz[rows.rows] * scale, minlength=len(columns)) + l2 * d
        return float(w @ loss + 0.5 * l2 * d @ d), grad

    d = lbfgs(objective, np.zeros(len(columns)), ITERATIONS, tol=1e-10)
    table[columns] = d
    return table
