"""Review text -> the critic's inputs: word-id windows for the LSTM, n-gram ids for the wide branch.

Shared by training and serving, so both read a review the same way. A long review is split
into ceil(n / window) consecutive windows of (nearly) equal size: nothing is cut off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from playbill.engine.sentiment.config import SentimentConfig
from playbill.engine.text import OOV, Vocabulary, hashed_ngrams, ngram_ids, token_hashes, tokenize


def encode(text: str, vocab: Vocabulary) -> np.ndarray:
    """Word ids of a review; a review with no known words is one unknown token."""
    return _at_least_one(vocab.encode(tokenize(text)))


def _at_least_one(ids: np.ndarray) -> np.ndarray:
    """The LSTM needs a token to read: an empty review is one unknown word."""
    return ids if len(ids) else np.array([OOV], dtype=np.int32)


def features(tokens: Sequence[str], vocab: Vocabulary, config: SentimentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(word ids for the LSTM, n-gram ids for the wide branch) of one tokenized review."""
    ids = vocab.encode(tokens)
    if config.wide == "fasttext":
        grams = ngram_ids(ids, config.vocab_size, config.ngram_buckets)
    else:
        hashes = vocab.hashes[ids]
        unknown = np.flatnonzero(ids == OOV)
        if len(unknown):
            hashes[unknown] = token_hashes([tokens[i] for i in unknown])
        grams = hashed_ngrams(tokens, config.ngram_buckets, hashes)
    return _at_least_one(ids), grams


def split_windows(ids: np.ndarray, window: int) -> list[np.ndarray]:
    """ceil(n / window) consecutive, nearly equal windows covering every token."""
    count = max(1, math.ceil(len(ids) / window))
    return np.array_split(ids, count) if count > 1 else [ids]


def pad_windows(windows: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Pre-padded (right-aligned) id matrix, as the LSTM reads it."""
    length = length or max(len(w) for w in windows)
    out = np.zeros((len(windows), length), dtype=np.int32)
    for row, w in enumerate(windows):
        if len(w):
            out[row, -len(w):] = w
    return out


def pad_ngrams(ngram_lists: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Post-padded n-gram ids (padding id 0 is masked out of the mean)."""
    width = width or max(1, max(len(g) for g in ngram_lists))
    out = np.zeros((len(ngram_lists), width), dtype=np.int32)
    for row, g in enumerate(ngram_lists):
        out[row, : len(g)] = g
    return out
