"""What the community taught the critic: a small correction on top of the IMDB-trained models.

Votes (extra examples, already settled and capped per member by the caller) never enter the
big fit: one troll's capped votes on long reviews would still be memorised there (2.6-8
validation points lost; docs/jobs.md, how the votes move the critic). Instead:

- a memory: reviews settled with weight >= `memory_min_weight` answer with their label
  (engine.sentiment.data.memory_of; served first);
- a correction d over the words of the voted reviews (each review's row: 1 / (its number of
  distinct words) at each of them, `pooled`; linear.COMMUNITY_VIEW: single words, which
  paraphrases share; versions before issue 20: hashed word uni+bigrams), fitted on the votes alone with the
  base logit as offset, no bias, L2 `l2` (scipy's L-BFGS-B):
      minimise sum_i w_i log(1 + exp(-y_i (base_i + x_i . d))) + l2/2 |d|^2
  and served as base + x . d. Mean pooling is what keeps IMDB intact: on a 230-word review
  the correction is divided by ~150 distinct words, on a six-word member review by 6.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

ITERATIONS = 200


def pooled(x: sp.csr_matrix) -> sp.csr_matrix:
    """Binary rows divided by their number of non-zeros (a review without any stays 0)."""
    x = x.tocsr(copy=True)
    x.data[:] = 1.0
    per_row = np.maximum(1, np.diff(x.indptr))
    x.data /= np.repeat(per_row, np.diff(x.indptr)).astype(x.data.dtype)
    return x


def fit_correction(x: sp.csr_matrix, labels: np.ndarray, weights: np.ndarray, base: np.ndarray,
                   l2: float) -> np.ndarray:
    """The correction table (float32, one entry per column of `x`; non-zero only on the votes'
    n-grams). `x`: the votes' pooled rows."""
    table = np.zeros(x.shape[1], np.float32)
    columns = np.unique(x.indices)
    if not len(columns):
        return table
    x = x[:, columns].tocsr().astype(np.float64)
    signs = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    w = np.asarray(weights, np.float64)

    def objective(d: np.ndarray) -> tuple[float, np.ndarray]:
        margin = -signs * (base + x @ d)
        loss = np.logaddexp(0.0, margin)
        dz = -signs * w * np.exp(margin - loss)
        return float(w @ loss + 0.5 * l2 * d @ d), x.T @ dz + l2 * d

    found = minimize(objective, np.zeros(len(columns)), jac=True, method="L-BFGS-B",
                     options={"maxiter": ITERATIONS, "ftol": 1e-12, "gtol": 1e-8})
    table[columns] = found.x
    return table
