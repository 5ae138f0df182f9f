"""The critic's linear models (the "quick" and "default" profiles): scikit-learn features and
fits, served with one sparse matrix product per batch.

A view reads a review as hashed word n-grams (scikit-learn's `HashingVectorizer`: MurmurHash3,
the same ids in every process and version, no vocabulary to store), optionally with negation
scope marked ("not good at all" -> "not neg_good neg_at neg_all", up to the next punctuation).
Its features are sublinear counts (1 + log tf), scaled per column by idf * (floor + |r|), r the
n-gram's Naive-Bayes log-count ratio (NBSVM, Wang & Manning 2012, as a feature scale), then
L2-normalised per review: a one-line review and a 230-word one land on the same scale, which is
what lets one model read both. A logistic regression (liblinear) on top.

The idf and the NB ratios are counted over the training reviews and their sentences (each
labelled by its review), so short-text evidence counts; the fit is on whole reviews, and for a
view with `sentences` also on the sentences that a first fit reads with their review's label
confidently enough (self-training, noisy sentence labels denoised), each at a small weight. Everything stored is a plain array
(`arrays`/`from_arrays`): the scale and the weights of the columns seen in training.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from playbill.engine.text import clean_markup

N_FEATURES = 2**22
TOKEN_PATTERN = r"(?u)\b\w[\w']*\b|[!?]"  # words (with inner apostrophes), and ! ? as tokens
_NEGATION = re.compile(r"\b(not|no|never|nothing|nobody|none|nor|neither|cannot|without|\w+n't)\b([^.,;:!?()]*)")
NEGATION_SCOPE = 4  # words after a negation that are marked
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*<\s*br\s*/?\s*>\s*", re.IGNORECASE)


@dataclass(frozen=True)
class View:
    """How one linear model reads a review, and how it is fitted (chosen on validation:
    docs/benchmarks.md "## Critic")."""

    ngram_max: int  # word n-grams 1..ngram_max
    negation: bool  # mark negation scope
    nb_floor: float  # column scale idf * (nb_floor + |r|)
    c: float  # the logistic regression's inverse L2 strength (liblinear)
    sentences: bool  # learn from the training reviews' sentences too (self-training)
    sentence_weight: float = 0.3
    sentence_confidence: float = 0.6  # a sentence is kept when the review fit gives its review's label this probability


VIEWS: dict[str, View] = {
    "words12": View(2, False, 1.0, 30.0, False),
    "words12_neg": View(2, True, 1.0, 30.0, False),
    "words13_neg": View(3, True, 1.0, 30.0, False),
    "words12_sentences": View(2, False, 0.5, 30.0, True),  # measured, not used: no better on short reviews
}


def view(name: str) -> View:
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"unknown view {name!r}; known: {', '.join(VIEWS)}") from None


def _mark_negation(text: str) -> str:
    def scope(match: re.Match) -> str:
        return match.group(1) + " " + " ".join("neg_" + w for w in match.group(2).split()[:NEGATION_SCOPE])
    return _NEGATION.sub(scope, text)


def _plain(text: str) -> str:
    return clean_markup(text)


def _negated(text: str) -> str:
    return _mark_negation(clean_markup(text))


def vectorizer(spec: View) -> HashingVectorizer:
    return HashingVectorizer(ngram_range=(1, spec.ngram_max), n_features=N_FEATURES, alternate_sign=False,
                             norm=None, token_pattern=TOKEN_PATTERN, preprocessor=_negated if spec.negation else _plain,
                             dtype=np.float32)


def counts(texts: Sequence[str], spec: View) -> sp.csr_matrix:
    """Raw n-gram counts, one row per review."""
    x = vectorizer(spec).transform(texts)
    x.sum_duplicates()
    return x


def features(x: sp.csr_matrix, scale: np.ndarray) -> sp.csr_matrix:
    """Counts -> the model's input: 1 + log(tf), times the column scale, L2-normalised rows."""
    x = x.copy()
    np.log(x.data, out=x.data)
    x.data += 1.0
    x.data *= scale[x.indices]
    return normalize(x, copy=False)


def idf(x: sp.csr_matrix) -> np.ndarray:
    df = np.bincount(x.indices, minlength=x.shape[1])
    return (np.log((1 + x.shape[0]) / (1 + df)) + 1).astype(np.float32)


def nb_ratios(x: sp.csr_matrix, labels: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """r = log((p / |p|) / (q / |q|)), p and q the document counts in positive and negative rows plus alpha."""
    present = x.copy()
    present.data[:] = 1.0
    positive = np.asarray(labels) > 0
    p = np.asarray(present[positive].sum(axis=0)).ravel() + alpha
    q = np.asarray(present[~positive].sum(axis=0)).ravel() + alpha
    return np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)


def sentences(text: str, min_words: int = 3) -> list[str]:
    """A review's sentences of at least `min_words` words (line breaks end sentences too)."""
    return [s for s in _SENTENCE_END.split(text) if len(s.split()) >= min_words]


@dataclass
class LinearModel:
    """One fitted view: logit = features(counts) @ coef + bias."""

    name: str
    scale: np.ndarray  # float32 [N_FEATURES]: 0 for columns never seen in training
    coef: np.ndarray  # float32 [N_FEATURES]
    bias: float

    @property
    def spec(self) -> View:
        return view(self.name)

    def logits(self, x: sp.csr_matrix) -> np.ndarray:
        return features(x, self.scale) @ self.coef + self.bias

    def arrays(self) -> dict[str, np.ndarray]:
        ids = np.flatnonzero(self.scale).astype(np.int32)
        return {f"{self.name}_ids": ids, f"{self.name}_scale": self.scale[ids], f"{self.name}_coef": self.coef[ids],
                f"{self.name}_bias": np.asarray([self.bias], np.float32)}

    @classmethod
    def from_arrays(cls, name: str, weights: dict[str, np.ndarray]) -> LinearModel:
        ids = weights[f"{name}_ids"]
        scale, coef = np.zeros(N_FEATURES, np.float32), np.zeros(N_FEATURES, np.float32)
        scale[ids], coef[ids] = weights[f"{name}_scale"], weights[f"{name}_coef"]
        return cls(name, scale, coef, float(np.asarray(weights[f"{name}_bias"]).reshape(-1)[0]))
