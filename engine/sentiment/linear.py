"""The critic's linear models (the "quick" and "default" profiles): scikit-learn fits, served
with one sparse matrix product per view and batch.

A view reads a review as word n-grams (1..`ngram_max`), optionally with negation scope marked
("not good at all" -> "not neg_good neg_at neg_all", up to the next punctuation). Tokens are
found with one regular expression per review and looked up in the training vocabulary
(`engine.text.Vocabulary`, saved with the version as JSON); an n-gram of known tokens is an
integer key built with numpy and hashed into `N_FEATURES` columns with scikit-learn's
MurmurHash3 (`sklearn.utils.murmurhash3_32`, vectorised; the same in every process). An n-gram
with a token never seen in training has no weight anyway, so nothing is lost by the lookup,
and a whole batch is hashed in a few array operations (scikit-learn's `HashingVectorizer` builds
each n-gram as a Python string: ~8x slower, docs/benchmarks.md "## Critic"; it still reads the
views of versions saved without a vocabulary).

Features are sublinear counts (1 + log tf), scaled per column by idf * (floor + |r|), r the
n-gram's Naive-Bayes log-count ratio (NBSVM, Wang & Manning 2012, as a feature scale), then
L2-normalised per review: a one-line review and a 230-word one land on the same scale, which is
what lets one model read both. A logistic regression (liblinear) on top.

The idf and the NB ratios are counted over the training reviews and their sentences (each
labelled by its review), so short-text evidence counts (a view with `sentence_stats` off: over
the reviews alone, what long reviews are read with); the fit is on whole reviews, and for a
view with `sentences` also on the sentences that a first fit reads with their review's label
confidently enough (self-training, noisy sentence labels denoised), each at a small weight.
Everything stored is a plain array (`arrays`/`from_arrays`): the scale and the weights of the
columns seen in training.
"""

from __future__ import annotations

import re
from itertools import chain, repeat
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32

from playbill.engine.text import OOV, Vocabulary, clean_markup

N_FEATURES = 2**22
TOKEN_PATTERN = r"(?u)\b\w[\w']*\b|[!?]"  # words (with inner apostrophes), and ! ? as tokens
_READ = re.compile(r"(?u)\b\w[\w']*\b|[!?.,;:()]")  # the same, plus the punctuation that ends a negation
PAUSES = frozenset(".,;:()")  # end a negation's scope; not n-gram tokens themselves
NEGATORS = frozenset({"not", "no", "never", "nothing", "nobody", "none", "nor", "neither", "cannot", "without"})
NEGATION_SCOPE = 4  # words after a negation (up to the next punctuation) that are marked
NEGATED_PREFIX = "neg_"
_NEGATION = re.compile(r"\b(not|no|never|nothing|nobody|none|nor|neither|cannot|without|\w+n't)\b([^.,;:!?()]*)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*<\s*br\s*/?\s*>\s*", re.IGNORECASE)
_KEY_BASE = 1 << 21  # n-gram key = ((a * B) + b) * B + c over token ids < B: unique per n-gram
MAX_VOCABULARY = _KEY_BASE - 1


@dataclass(frozen=True)
class View:
    """How one linear model reads a review, and how it is fitted (chosen on validation:
    docs/benchmarks.md "## Critic")."""

    ngram_max: int  # word n-grams 1..ngram_max (at most 3)
    negation: bool  # mark negation scope
    nb_floor: float  # column scale idf * (nb_floor + |r|)
    c: float  # the logistic regression's inverse L2 strength (liblinear)
    sentences: bool  # learn from the training reviews' sentences too (self-training)
    sentence_weight: float = 0.3
    sentence_confidence: float = 0.6  # a sentence is kept when the review fit gives its review's label this probability
    # idf and NB ratios counted over the reviews and their sentences (short-text evidence), or
    # over the reviews alone (the long-review blend's view: better on IMDB validation, worse on
    # one-line reviews)
    sentence_stats: bool = True

    @property
    def reading(self) -> tuple[int, bool]:
        """What `counts` reads a review by: views alike in this share one count matrix."""
        return self.ngram_max, self.negation


VIEWS: dict[str, View] = {
    "words12": View(2, False, 1.0, 30.0, False),
    "words12_sharp": View(2, False, 0.25, 10.0, False),
    "words12_neg": View(2, True, 1.0, 30.0, False),
    "words13_neg": View(3, True, 1.0, 30.0, False),
    "words13_neg_reviews": View(3, True, 1.0, 100.0, False, sentence_stats=False),
    "words12_sentences": View(2, False, 0.5, 30.0, True),  # measured, not used: no better on short reviews
}


# What the community's correction of votes is written over (engine.sentiment.community): single
# words, which paraphrases of a voted review share more often than its bi- or trigrams
# (docs/benchmarks.md "## Votes").
COMMUNITY_VIEW = View(1, False, 0.0, 0.0, False)


def view(name: str) -> View:
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"unknown view {name!r}; known: {', '.join(VIEWS)}") from None


class Lexicon:
    """A vocabulary and what each of its ids means to a view: a pause (punctuation that ends a
    negation's scope and is no n-gram token), a negator ("not", "don't"...), its negated twin's id."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        tokens = vocab.tokens
        get = vocab.ids_by_token.get
        self.pause = np.fromiter((t in PAUSES for t in tokens), bool, count=len(tokens))
        self.ends_scope = self.pause | np.fromiter((t in ("!", "?") for t in tokens), bool, count=len(tokens))
        self.negator = np.fromiter((t in NEGATORS or t.endswith("n't") for t in tokens), bool, count=len(tokens))
        self.negated = np.fromiter((get(NEGATED_PREFIX + t, OOV) for t in tokens), np.int64, count=len(tokens))
        self.negated[:OOV + 1] = OOV

    @classmethod
    def build(cls, texts: Sequence[str], max_size: int = MAX_VOCABULARY) -> Lexicon:
        """Every token of the training texts (most frequent first), then the negated twins of the
        tokens seen in a negation's scope."""
        plain = Lexicon(Vocabulary.build((_READ.findall(clean_markup(t)) for t in texts), max_size))
        ids, row = read(texts, plain)
        inside = ids[in_scope(ids, row, plain)]
        found = np.bincount(inside, minlength=len(plain.vocab))
        ranked = sorted(np.flatnonzero(found > 0).tolist(), key=lambda i: (-found[i], plain.vocab.tokens[i]))
        twins = [NEGATED_PREFIX + plain.vocab.tokens[i] for i in ranked if i > OOV]
        room = max(0, max_size - len(plain.vocab))
        return cls(Vocabulary(plain.vocab.tokens + twins[:room]))


def read(texts: Sequence[str], lexicon: Lexicon) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, their review's row) of a batch, all reviews end to end (OOV for unknown
    tokens): one regular expression per review, then dictionary lookups."""
    token_lists = [_READ.findall(clean_markup(t)) for t in texts]
    lengths = np.fromiter(map(len, token_lists), np.int64, count=len(texts))
    words = chain.from_iterable(token_lists)
    ids = np.fromiter(map(lexicon.vocab.ids_by_token.get, words, repeat(OOV)), np.int64, count=int(lengths.sum()))
    return ids, np.repeat(np.arange(len(texts)), lengths)


def in_scope(ids: np.ndarray, row: np.ndarray, lexicon: Lexicon) -> np.ndarray:
    """Which tokens are within `NEGATION_SCOPE` tokens after a negator, with no punctuation (nor a
    review's start) between: vectorised with running maxima over positions."""
    position = np.arange(len(ids))
    starts = np.ones(len(ids), bool)
    starts[1:] = row[1:] != row[:-1]
    last_negator = np.maximum.accumulate(np.where(lexicon.negator[ids], position, -1)) if len(ids) else position
    last_end = np.maximum.accumulate(np.where(lexicon.ends_scope[ids] | starts, position, -1)) if len(ids) else position
    distance = position - last_negator
    return (last_negator >= last_end) & (distance >= 1) & (distance <= NEGATION_SCOPE) & (last_negator >= 0)


def view_ids(ids: np.ndarray, row: np.ndarray, spec: View, lexicon: Lexicon) -> tuple[np.ndarray, np.ndarray]:
    """The tokens a view reads: negated twins within a negation's scope (if the view marks
    negation), pauses left out."""
    if spec.negation:
        ids = np.where(in_scope(ids, row, lexicon), lexicon.negated[ids], ids)
    keep = ~lexicon.pause[ids]
    return ids[keep], row[keep]


def _mark_negation(text: str) -> str:
    def scope(match: re.Match) -> str:
        return match.group(1) + " " + " ".join("neg_" + w for w in match.group(2).split()[:NEGATION_SCOPE])
    return _NEGATION.sub(scope, text)


def _plain(text: str) -> str:
    return clean_markup(text)


def _negated(text: str) -> str:
    return _mark_negation(clean_markup(text))


def counts(texts: Sequence[str], spec: View, lexicon: Lexicon | None,
           ids: tuple[np.ndarray, np.ndarray] | None = None) -> sp.csr_matrix:
    """Raw n-gram counts, one row per review. `ids`: `read(texts, lexicon)`, if known (views
    share it). `lexicon` None: scikit-learn's HashingVectorizer (versions saved without a
    vocabulary)."""
    if lexicon is None:
        x = vectorizer(spec).transform(texts)
        x.sum_duplicates()
        return x
    ids, row = view_ids(*(ids if ids is not None else read(texts, lexicon)), spec, lexicon)
    known = ids > OOV
    key, ok = ids, known
    keys, rows = [key[ok]], [row[ok]]
    for n in range(2, spec.ngram_max + 1):
        key = key[:-1] * _KEY_BASE + ids[n - 1:]
        ok = ok[:-1] & known[n - 1:] & (row[: len(key)] == row[n - 1:])
        keys.append(key[ok])
        rows.append(row[: len(key)][ok])
    key, row = np.concatenate(keys), np.concatenate(rows)
    folded = ((key ^ (key >> 32)) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    columns = murmurhash3_32(folded, seed=0, positive=True).astype(np.int64) % N_FEATURES if len(folded) else key
    # (row, column) pairs sorted and counted: the CSR arrays directly. The pairs come as one
    # row-ordered run per n-gram size, which a stable sort (timsort) merges ~3x faster than np.unique
    cells = row * N_FEATURES + columns
    cells.sort(kind="stable")
    first = np.ones(len(cells), bool)
    first[1:] = cells[1:] != cells[:-1]
    starts = np.flatnonzero(first)
    tf = np.diff(np.append(starts, len(cells)))
    cells = cells[starts]
    indptr = np.searchsorted(cells, np.arange(len(texts) + 1) * N_FEATURES)
    return sp.csr_matrix((tf.astype(np.float32), (cells % N_FEATURES).astype(np.int32), indptr),
                         shape=(len(texts), N_FEATURES))


def vectorizer(spec: View) -> HashingVectorizer:
    return HashingVectorizer(ngram_range=(1, spec.ngram_max), n_features=N_FEATURES, alternate_sign=False,
                             norm=None, token_pattern=TOKEN_PATTERN, preprocessor=_negated if spec.negation else _plain,
                             dtype=np.float32)


def features(x: sp.csr_matrix, scale: np.ndarray) -> sp.csr_matrix:
    """Counts -> the model's input: 1 + log(tf), times the column scale, L2-normalised rows
    (a row of unknown n-grams stays 0)."""
    values, _ = feature_values(x, scale)
    return sp.csr_matrix((values, x.indices, x.indptr), shape=x.shape)


def feature_values(x: sp.csr_matrix, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the values `features` gives x's stored entries, the row of each): numpy only."""
    values = np.log(x.data)
    values += 1.0
    values *= scale[x.indices]
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=x.shape[0]))
    values /= np.where(norms > 0, norms, 1.0)[rows].astype(values.dtype)
    return values, rows


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


def review_sentences(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(the sentences of every review, end to end; the review row of each): short-text evidence
    the fits learn from, each sentence labelled by its review."""
    parts: list[str] = []
    owner: list[int] = []
    for row, text in enumerate(texts):
        found = sentences(text)
        parts.extend(found)
        owner.extend([row] * len(found))
    return parts, np.asarray(owner, np.int64)


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
        """Logits of counts (`counts`) read with this view: features(x) @ coef + bias, summed per
        row without building the feature matrix (for one review, the two default views took
        0.40 ms with it and 0.28 ms without)."""
        values, rows = feature_values(x, self.scale)
        return np.bincount(rows, weights=values * self.coef[x.indices], minlength=x.shape[0]) + self.bias

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
