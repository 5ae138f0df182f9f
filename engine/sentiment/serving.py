"""The served critic: raw review text in, probability that it is positive out; no TensorFlow.

Three layouts (`SentimentConfig`):
- linear views (`views`, the "quick" and "default" profiles since issue 20): scikit-learn's
  hashed n-gram counts of a batch, one sparse matrix product per view
  (engine.sentiment.linear); the served logit is the blend of the views' logits fitted on
  validation (a logistic regression there: the probability is calibrated on it). With
  `long_views`, a review of more than `long_review_tokens` tokens has a blend of its own
  (`blended`): what reads long reviews best reads one-liners worse.
- hand-hashed n-gram models (`ngrams`, versions trained before issue 20): each model's logit
  is its table's entries over the review's hashed n-grams plus a bias (engine.sentiment.ngrams,
  one sparse product per model); the served logit is a_1 * logit_1 + ... + a_k * logit_k + c.
- wide and deep (the "wide_deep" profile and versions trained before profiles): training
  exports the Keras weights to numpy and `SentimentModel` runs the forward pass itself: the
  embedding@kernel table precomputed, the shared `engine.lstm` step, padding steps skipped,
  many windows stepped together. The review's deep logit is the mean of its windows'
  logits; the served logit is a * deep + b * wide + c.
All may carry a memory (`memory.json`): reviews the community settled, by standardized
text, answered with their settled label. A verdict whose probability lies within
`config.mixed_band` of 0.5 is marked mixed: the critic cannot call it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from playbill.engine.errors import ModelUnavailable
from playbill.engine.lstm import WindowLSTM
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment.config import (CONFIG_FILE, MEMORY_FILE, NAME, VOCAB_FILE, WEIGHTS_FILE, ReviewRequest,
                                     SentimentConfig, SentimentLimits)
from playbill.engine.sentiment.features import features, pad_windows, split_windows
from playbill.engine.sentiment.community import pooled
from playbill.engine.sentiment.linear import COMMUNITY_VIEW, Lexicon, LinearModel, counts, read
from playbill.engine.sentiment.sequence import SequenceMember
from playbill.engine.sentiment.ngrams import community_ids, id_matrix, review_ids
from playbill.engine.text import Vocabulary, standardize, tokenize
from playbill.engine.weights import read_arrays

COMMUNITY = "community"  # the stored name of the votes' correction table (engine.sentiment.community)
# the linear layout's correction, over `COMMUNITY_VIEW`'s words (versions of that layout trained on
# 2026-12-07 before it stored theirs under COMMUNITY, over their first view's n-grams)
COMMUNITY_WORDS = "community_words"
HALF_BATCH = 128  # a batch of at least twice this is judged in two halves, on two threads
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
MEMORY_LOGIT = 4.0  # a remembered review's answer: probability 0.982 for its settled label


@dataclass(frozen=True)
class Verdict:
    label: str  # "positive" or "negative"
    positive_probability: float
    mixed: bool = False  # too close to call: the label is only where it leans

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "positive_probability": round(self.positive_probability, 6), "mixed": self.mixed}


class SentimentModel:
    """A trained critic for serving: numpy only, read-only weights, safe to share across threads."""

    def __init__(self, weights: dict[str, np.ndarray], vocab: Vocabulary | None, config: SentimentConfig,
                 version: str | None = None, path: Path | None = None, limits: SentimentLimits | None = None,
                 memory: dict[str, int] | None = None) -> None:
        self.vocab, self.config, self.version, self.path = vocab, config, version, path
        self.limits = limits or SentimentLimits()
        self.memory = dict(memory or {})
        if config.wide_deep:
            self._lstm = WindowLSTM.from_arrays(weights)
            self._wide_b = float(np.asarray(weights["wide_b"]).reshape(-1)[0])
            self._ngram_weight = weights["ngram_weight"].astype(np.float32)
            # served logit = a * deep + b * wide + c (models of the fasttext layout: the plain sum)
            self._blend = np.asarray(weights.get("blend", (1.0, 1.0, 0.0)), dtype=np.float64).reshape(3)
            tables = [*self._lstm.tables(), self._ngram_weight]
        elif config.views:
            self._linear = [LinearModel.from_arrays(name, weights) for name in config.linear_views]
            self._lexicon = Lexicon(vocab) if vocab is not None else None
            self._sequence = SequenceMember(weights, config) if config.sequence_units else None
            self._blends = {key: np.asarray(weights[key], dtype=np.float64).reshape(len(config.blend_members(key)) + 1)
                            for key in config.blend_names}
            self._community_over_first_view = f"{COMMUNITY}_ids" in weights
            stored = COMMUNITY if self._community_over_first_view else COMMUNITY_WORDS
            self._community = ngram_table(weights, stored) if f"{stored}_ids" in weights else None
            tables = [a for m in self._linear for a in (m.scale, m.coef)]
            tables += [self._community] if self._community is not None else []
            tables += self._sequence.tables() if self._sequence is not None else []
        else:
            self._tables = {name: ngram_table(weights, name) for name in config.ngrams}
            self._biases = {name: float(np.asarray(weights[f"{name}_bias"]).reshape(-1)[0]) for name in config.ngrams}
            self._blend = np.asarray(weights["blend"], dtype=np.float64).reshape(len(config.ngrams) + 1)
            self._community = ngram_table(weights, COMMUNITY) if f"{COMMUNITY}_ids" in weights else None
            tables = list(self._tables.values()) + ([self._community] if self._community is not None else [])
        for array in tables:
            array.flags.writeable = False
        # Our matrices are small: OpenBLAS threads only spin against each other (10x slower
        # on a busy 2-core machine, measured), so BLAS gets one thread for the process.
        threadpool_limits(1, user_api="blas")

    @classmethod
    def load(cls, version_dir: Path, limits: SentimentLimits | None = None) -> SentimentModel:
        version_dir = Path(version_dir)
        try:
            weights = read_arrays(version_dir / WEIGHTS_FILE)  # finite, or ValueError
            config = SentimentConfig.from_dict(json.loads((version_dir / CONFIG_FILE).read_text("utf-8")))
            has_vocab = config.wide_deep or (config.views and (version_dir / VOCAB_FILE).is_file())
            vocab = Vocabulary.load(version_dir / VOCAB_FILE) if has_vocab else None
            memory_path = version_dir / MEMORY_FILE
            memory = json.loads(memory_path.read_text("utf-8")) if memory_path.is_file() else {}
            model = cls(weights, vocab, config, version=version_dir.name, path=version_dir, limits=limits,
                        memory=memory)
            model.probe()
        except Exception as exc:  # any damage (zip CRC, junk JSON, wrong shapes): this version cannot serve
            raise ModelUnavailable(
                f"the sentiment model at {version_dir} is incomplete or corrupt ({type(exc).__name__}: {exc}); "
                "roll back or train a new one") from None
        return model

    def probe(self) -> None:
        """Judge one short review: ValueError unless the answer is a finite probability (a
        version whose weights do not fit its vocabulary or config fails here, not on a member)."""
        logits = self.logits(["a good film"])
        if not np.isfinite(logits).all():
            raise ValueError("its weights give a non-finite verdict")

    @classmethod
    def load_current(cls, home: Path, limits: SentimentLimits | None = None) -> SentimentModel:
        return cls.load(ModelRegistry.in_home(home, NAME).current().path, limits)

    def check(self, request: ReviewRequest) -> ReviewRequest:
        """The request as it will be judged, or InvalidInput with the one message for a person."""
        return self.limits.check(request)

    def predict_one(self, text: str) -> Verdict:
        return self.predict([text])[0]

    def predict(self, texts: Iterable[str]) -> list[Verdict]:
        """Verdicts for many reviews at once (batched: much faster per review than one by one);
        each review is checked first, and one bad review refuses the batch."""
        logits = self.logits([self.check(ReviewRequest(t)).text for t in texts])
        probs = 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
        band = self.config.mixed_band
        return [Verdict("positive" if p >= 0.5 else "negative", float(p), bool(abs(p - 0.5) < band)) for p in probs]

    def logits(self, texts: Sequence[str], chunk: int = 512) -> np.ndarray:
        """The served logits (memory first, then the model) of reviews already checked."""
        if self.config.wide_deep:
            out = self.logits_from_features([self.features(t) for t in texts], chunk=chunk)
        else:
            out = self.model_logits(texts)
        if self.memory:
            for row, text in enumerate(texts):
                label = self.memory.get(standardize(text))
                if label is not None:
                    out[row] = MEMORY_LOGIT if label else -MEMORY_LOGIT
        return out

    def model_logits(self, texts: Sequence[str]) -> np.ndarray:
        """The n-gram layouts' blended logits plus the community's correction, without the memory.
        A large batch of the views' layout is judged in two halves on two threads: half of the
        work (numpy's sorts, lookups and products) runs outside the GIL, so a 2-core machine
        judges ~1.3-1.45x the reviews per second (docs/benchmarks.md "## Critic"); each review's
        answer is the same either way."""
        if self.config.views and len(texts) >= 2 * HALF_BATCH and _CORES > 1:
            middle = len(texts) // 2
            halves = _batch_halves().map(self._model_logits, (texts[:middle], texts[middle:]))
            return np.concatenate(list(halves))
        return self._model_logits(texts)

    def _model_logits(self, texts: Sequence[str]) -> np.ndarray:
        if self.config.views:
            columns, ids, first, tokens = self._view_columns(texts)
            out = blended(columns, tokens, self._blends, self.config)
            if self._community is not None:
                x = first if self._community_over_first_view else counts(texts, COMMUNITY_VIEW, self._lexicon, ids)
                out += pooled(x) @ self._community
        else:
            columns = self.ngram_logits(texts)
            out = columns @ self._blend[:-1] + self._blend[-1]
            if self._community is not None:
                out += pooled(id_matrix(community_ids(texts), len(self._community))) @ self._community
        return out.astype(np.float32)

    def view_logits(self, texts: Sequence[str]) -> np.ndarray:
        """[reviews, members]: each linear view's own logit (`config.linear_views`), then the LSTM
        member's, if the version has one (before the blend)."""
        return self.members(texts)[0]

    def members(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(`view_logits`, each review's token count: what `blended` reads to pick its blend)."""
        columns, _, _, tokens = self._view_columns(texts, every_member=True)
        return columns, tokens

    def community_rows(self, texts: Sequence[str]) -> Any:
        """The pooled rows the votes' correction reads (engine.sentiment.community): the words of
        `COMMUNITY_VIEW`."""
        return pooled(counts(texts, COMMUNITY_VIEW, self._lexicon))

    def _view_columns(self, texts: Sequence[str], every_member: bool = False) -> tuple[np.ndarray, Any, Any, Any]:
        """(the members' logits, the batch's token ids, the first view's counts, each review's
        token count): one tokenization for the batch, one count matrix per way of reading
        (views that differ only in their statistics share it), one sparse product per view, one
        batched pass of the LSTM. A member no review's blend reads (the short blend's views for
        a batch of long reviews) is skipped, its column NaN, unless `every_member`."""
        out = np.full((len(texts), len(self._linear) + (self._sequence is not None)), np.nan)
        ids = read(texts, self._lexicon) if self._lexicon is not None else None  # once for every view
        tokens = review_tokens(ids[1], len(texts)) if ids is not None else None
        needed = range(out.shape[1]) if every_member else needed_members(
            long_reviews(tokens, len(texts), self._blends, self.config), self.config)
        read_as: dict[tuple[int, bool], Any] = {}
        for k, model in enumerate(self._linear):
            if k in needed or (k == 0 and self._community_over_first_view):
                if model.spec.reading not in read_as:
                    read_as[model.spec.reading] = counts(texts, model.spec, self._lexicon, ids)
                out[:, k] = model.logits(read_as[model.spec.reading])
        if self._sequence is not None and out.shape[1] - 1 in needed:
            out[:, -1] = self._sequence.logits(*ids, len(texts))
        return out, ids, read_as.get(self._linear[0].spec.reading), tokens

    def ngram_logits(self, texts: Sequence[str]) -> np.ndarray:
        """[reviews, models]: each hand-hashed n-gram model's own logit (before the blend)."""
        ids = review_ids(texts, self.config.ngrams)
        out = np.empty((len(texts), len(self.config.ngrams)), np.float64)
        for k, name in enumerate(self.config.ngrams):
            table = self._tables[name]
            out[:, k] = id_matrix(ids[name], len(table)) @ table + self._biases[name]
        return out

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return features(tokenize(text), self.vocab, self.config)

    def logits_from_features(self, feats: Sequence[tuple[np.ndarray, np.ndarray]], chunk: int = 512) -> np.ndarray:
        a, b, c = self._blend
        deep, wide = self.branch_logits(feats, chunk=chunk)
        return (a * deep + b * wide + c).astype(np.float32)

    def branch_logits(self, feats: Sequence[tuple[np.ndarray, np.ndarray]], chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(deep, wide) logits: the mean over each review's windows, and its n-gram score."""
        pool = np.mean if self.config.wide == "fasttext" else np.sum
        wide = np.empty(len(feats), dtype=np.float64)
        windows, owner = [], []
        for row, (ids, grams) in enumerate(feats):
            wide[row] = (pool(self._ngram_weight[grams]) if len(grams) else 0.0) + self._wide_b
            parts = split_windows(ids, self.config.window)
            windows.extend(parts)
            owner.extend([row] * len(parts))
        owner_arr = np.asarray(owner)
        window_logits = self._lstm.logits(pad_windows(windows), chunk=chunk)
        deep_sum = np.bincount(owner_arr, weights=window_logits, minlength=len(feats))
        deep = deep_sum / np.bincount(owner_arr, minlength=len(feats))
        return deep, wide


def review_tokens(row: np.ndarray, count: int) -> np.ndarray:
    """How many tokens (`linear.read`'s, punctuation included) each review of a batch has: what
    picks its blend."""
    return np.bincount(row, minlength=count)


def long_reviews(tokens: np.ndarray | None, count: int, blends: dict[str, np.ndarray],
                 config: SentimentConfig) -> np.ndarray:
    """Which of a batch's `count` reviews the long blend judges: those of more than
    `config.long_review_tokens` tokens, if the version has a long blend (and its token counts
    are known: a version saved without a vocabulary has one blend)."""
    if tokens is None or "blend_long" not in blends:
        return np.zeros(count, bool)
    return tokens > config.long_review_tokens


def needed_members(long_rows: np.ndarray, config: SentimentConfig) -> set[int]:
    """The member columns some review of the batch is blended from (`long_rows`: `long_reviews`)."""
    needed = set(config.blend_members("blend_long")) if long_rows.any() else set()
    return needed | set(config.blend_members("blend")) if not long_rows.all() else needed


def blended(columns: np.ndarray, tokens: np.ndarray | None, blends: dict[str, np.ndarray], config: SentimentConfig,
            sequence: bool = True) -> np.ndarray:
    """Each review's logit from its members' logits (`SentimentModel.view_logits`' columns): the
    long blend for a long review (`long_reviews`), the blend for the others. `blends` holds
    the weights (a_1..a_k, c) by name; `sequence` False: blends without the LSTM member."""
    long_rows = long_reviews(tokens, len(columns), blends, config)
    out = np.empty(len(columns), np.float64)
    for key, rows in (("blend", ~long_rows), ("blend_long", long_rows)):
        if rows.any():
            weights = blends[key]
            out[rows] = columns[np.ix_(rows, config.blend_members(key, sequence))] @ weights[:-1] + weights[-1]
    return out


@functools.cache
def _batch_halves() -> ThreadPoolExecutor:
    """The two threads large batches are judged on (one pool per process, made on first use)."""
    return ThreadPoolExecutor(2, thread_name_prefix="critic-batch")


def ngram_table(weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The dense table of one n-gram model, from its stored non-zero entries."""
    table = np.zeros(int(np.asarray(weights[f"{name}_size"]).reshape(-1)[0]), np.float32)
    table[weights[f"{name}_ids"]] = weights[f"{name}_values"]
    return table


def ngram_arrays(name: str, table: np.ndarray, bias: float) -> dict[str, np.ndarray]:
    """What `ngram_table` reads back: only the non-zero entries are stored (most buckets are empty)."""
    ids = np.flatnonzero(table).astype(np.int32)
    return {f"{name}_ids": ids, f"{name}_values": table[ids].astype(np.float32),
            f"{name}_size": np.asarray([len(table)]), f"{name}_bias": np.asarray([bias], np.float32)}
