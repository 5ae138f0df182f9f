"""The n-gram critic, numpy only: hashed n-gram features, Naive-Bayes ratios, and a logistic
regression fitted directly (full-batch L-BFGS), no Keras.

One n-gram model (NBSVM, Wang & Manning 2012, with a logistic loss and an NB prior):

    logit = b + sum over the review's distinct n-grams j of (c0 + u_j) * r_j

r_j is the n-gram's Naive-Bayes log-count ratio (fixed, from the training reviews), c0 a fixed
prior weight, and only u is learnt, with L2 on u alone. Why the prior: Keras/Adam from w = 0
moves every weight at about the same rate in the direction of sign(r), so its early-stopped
answer is close to "a constant times NB plus a correction"; writing that down makes the fit
converge in ~20 L-BFGS iterations (seconds) to the figure the Keras branch needed epochs for.
The served table is v = (c0 + u) * r: a review's logit is a sum of table entries.

Several models read a review differently (`NGRAM_SETS`: words, words with trigrams,
characters); the served logit is a logistic-regression blend of theirs fitted on validation.
Every number in `NGRAM_SETS` was chosen on validation (docs/benchmarks.md "## Sentiment").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from playbill.engine.text import char_ngrams, hashed_ngrams, tokenize, tokenize_punct


@dataclass(frozen=True)
class NgramSet:
    """How one n-gram model reads a review, and how it is fitted."""

    tokens: str  # "words": engine.text.tokenize; "punct": tokenize_punct (punctuation kept)
    grams: str  # "words": uni..n-grams of the tokens; "chars": character n-grams of the joined tokens
    n: int  # word n-grams up to n (2 or 3); character n-grams of sizes 4 and 5
    buckets: int  # hash table size (ids 1..buckets; 0 unused)
    min_count: int  # n-grams in fewer training reviews get no weight (r = 0)
    prior: float  # c0: the fixed weight of the NB ratio
    l2: float  # on u (the learnt correction), per review of mean loss
    iterations: int  # L-BFGS iterations


NGRAM_SETS: dict[str, NgramSet] = {
    "words": NgramSet("words", "words", 2, 2**21, 1, 0.05, 1e-4, 20),
    "words_p": NgramSet("punct", "words", 2, 2**21, 1, 0.05, 1e-4, 20),
    "trigrams_p": NgramSet("punct", "words", 3, 2**22, 2, 0.03, 1e-4, 25),
    "chars": NgramSet("words", "chars", 5, 2**22, 2, 0.02, 1e-4, 20),
}

TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"words": tokenize, "punct": tokenize_punct}


def ngram_set(name: str) -> NgramSet:
    try:
        return NGRAM_SETS[name]
    except KeyError:
        raise ValueError(f"unknown n-gram set {name!r}; known: {', '.join(NGRAM_SETS)}") from None


def set_ids(tokens: Sequence[str], spec: NgramSet) -> np.ndarray:
    """Sorted unique n-gram ids in [1, spec.buckets] of one tokenized review."""
    if spec.grams == "chars":
        return char_ngrams(tokens, spec.buckets)
    return hashed_ngrams(tokens, spec.buckets, n=spec.n)


def review_ids(texts: Sequence[str], names: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Per n-gram set, each review's ids; each tokenizer runs once per review."""
    specs = {name: ngram_set(name) for name in names}
    tokens = {kind: [TOKENIZERS[kind](t) for t in texts] for kind in {s.tokens for s in specs.values()}}
    return {name: [set_ids(tk, s) for tk in tokens[s.tokens]] for name, s in specs.items()}


class Rows:
    """Binary sparse rows (one per review) of n-gram ids, in CSR form."""

    def __init__(self, id_lists: Sequence[np.ndarray]) -> None:
        self.n = len(id_lists)
        lengths = np.fromiter((len(g) for g in id_lists), np.int64, count=self.n)
        self.indptr = np.concatenate([[0], np.cumsum(lengths)])
        self.indices = np.concatenate(list(id_lists)).astype(np.int64) if self.n and lengths.sum() else np.zeros(0, np.int64)
        self.rows = np.repeat(np.arange(self.n), lengths)

    def sums(self, table: np.ndarray) -> np.ndarray:
        """Per row, the sum of `table` over its ids."""
        return np.bincount(self.rows, weights=table[self.indices], minlength=self.n)


def nb_ratios(x: Rows, labels: np.ndarray, weights: np.ndarray, size: int, min_count: int = 1,
              alpha: float = 1.0) -> np.ndarray:
    """r = log((p / |p|) / (q / |q|)), p and q the (weighted) document counts in positive and
    negative reviews plus `alpha`; 0 for n-grams in fewer than `min_count` reviews."""
    per_nz = np.repeat(np.asarray(weights, np.float64), np.diff(x.indptr))
    positive = np.repeat(np.asarray(labels) > 0, np.diff(x.indptr))
    pos = np.bincount(x.indices[positive], weights=per_nz[positive], minlength=size)
    neg = np.bincount(x.indices[~positive], weights=per_nz[~positive], minlength=size)
    p, q = pos + alpha, neg + alpha
    r = np.log((p / p.sum()) / (q / q.sum()))
    seen = np.bincount(x.indices, minlength=size)
    r[seen < max(1, min_count)] = 0.0
    r[0] = 0.0
    return r.astype(np.float32)


def lbfgs(fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, iterations: int,
          memory: int = 10, tol: float = 1e-9) -> np.ndarray:
    """Minimise f, given fg(x) -> (f, gradient): two-loop L-BFGS with Armijo backtracking."""
    x = x0.copy()
    f, g = fg(x)
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(iterations):
        q = g.copy()
        alphas = []
        for s, y in reversed(steps):
            rho = 1.0 / (y @ s)
            a = rho * (s @ q)
            alphas.append((a, rho, s, y))
            q -= a * y
        if steps:
            s, y = steps[-1]
            q *= (s @ y) / (y @ y)
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for a, rho, s, y in reversed(alphas):
            q += (a - rho * (y @ q)) * s
        direction = -q
        slope = g @ direction
        if slope >= 0:  # not a descent direction: restart from the gradient
            direction, slope, steps = -g, -(g @ g), []
        t = 1.0
        while True:
            x_new = x + t * direction
            f_new, g_new = fg(x_new)
            if f_new <= f + 1e-4 * t * slope or t < 1e-8:
                break
            t *= 0.5
        s, y = x_new - x, g_new - g
        if s @ y > 1e-12:
            steps = [*steps[-(memory - 1):], (s, y)]
        done = abs(f - f_new) < tol * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        if done:
            break
    return x


@dataclass
class Fitted:
    """One fitted n-gram model: the served table v = (c0 + u) * r (only n-grams seen in training
    are non-zero) and the bias; u is kept to warm-start a later fit."""

    table: np.ndarray  # float32 [buckets + 1]
    bias: float
    u: np.ndarray  # float32 [buckets + 1]


def fit(x: Rows, labels: np.ndarray, weights: np.ndarray, r: np.ndarray, spec: NgramSet,
        u0: np.ndarray | None = None) -> Fitted:
    """The NB-prior logistic regression: weighted mean log-loss + l2/2 |u|^2, in the space of the
    columns seen in `x` (per-nonzero float32 gathers, reduceat sums: ~0.3 s per iteration for
    22,500 reviews of uni+bigrams on one core)."""
    columns, inverse = np.unique(x.indices, return_inverse=True)
    d, n = len(columns), x.n
    values = r[columns][inverse].astype(np.float32)  # r of each non-zero
    starts = x.indptr[:-1]
    empty = np.diff(x.indptr) == 0
    by_column = np.argsort(inverse, kind="stable")
    column_starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=d))])[:-1]
    rows_c, values_c = x.rows[by_column], values[by_column]
    signs = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    share = np.asarray(weights, np.float64)
    share = share / share.sum()

    def row_sums(per_nz: np.ndarray) -> np.ndarray:
        if not len(per_nz):
            return np.zeros(n)
        out = np.add.reduceat(per_nz, starts[~empty]) if (~empty).any() else np.zeros(0)
        full = np.zeros(n)
        full[~empty] = out
        return full

    offset = spec.prior * row_sums(values)

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        u, b = p[:d], p[d]
        z = row_sums(u.astype(np.float32)[inverse] * values) + offset + b
        margin = -signs * z
        loss = np.logaddexp(0.0, margin)
        dz = -signs * share * np.exp(margin - loss)
        grad_u = (np.add.reduceat(dz.astype(np.float32)[rows_c] * values_c, column_starts).astype(np.float64)
                  if d else np.zeros(0)) + spec.l2 * u
        return float(share @ loss + 0.5 * spec.l2 * (u @ u)), np.concatenate([grad_u, [dz.sum()]])

    p0 = np.zeros(d + 1)
    if u0 is not None and len(u0) == len(r):
        p0[:d] = u0[columns]
    p = lbfgs(objective, p0, spec.iterations)
    u = np.zeros(len(r), np.float32)
    u[columns] = p[:d]
    table = ((spec.prior + u) * r).astype(np.float32)
    return Fitted(table, float(p[d]), u)


def fit_blend(columns: np.ndarray, labels: np.ndarray, l2: float = 1e-4) -> np.ndarray:
    """(a_1..a_k, c) of the logistic regression sigmoid(sum a_i x_i + c) on held-out reviews:
    how much to trust each model (Newton's method with step halving; a little L2 keeps it
    finite on separable, tiny data)."""
    x = np.column_stack([np.asarray(columns, np.float64).reshape(len(labels), -1), np.ones(len(labels))])
    signs = np.where(np.asarray(labels) > 0.5, 1.0, -1.0)
    k = x.shape[1]

    def objective(coef: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -signs * (x @ coef))) + 0.5 * l2 * coef @ coef)

    coef = np.zeros(k)
    value = objective(coef)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ coef, -60, 60)))
        grad = x.T @ (p - (signs > 0)) / len(x) + l2 * coef
        hess = (x.T * (p * (1 - p))) @ x / len(x) + l2 * np.eye(k)
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
