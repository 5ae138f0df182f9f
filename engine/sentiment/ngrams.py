"""Versions trained before issue 20 (the hand-hashed n-gram profiles): how they read a review,
kept so that those versions still load and serve. Nothing new is trained with it.

Each such model's logit is a sum of table entries over the review's hashed n-gram ids
(engine.text: crc32 and polynomial hashes) plus a bias; the served logit is a blend of the
models' logits. A review's ids become one row of a scipy sparse matrix, so a batch is scored
with one sparse matrix product per model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from playbill.engine.text import char_ngrams, hashed_ngrams, tokenize, tokenize_punct


@dataclass(frozen=True)
class NgramSet:
    """How one n-gram model of the earlier layout read a review."""

    tokens: str  # "words": engine.text.tokenize; "punct": tokenize_punct (punctuation kept)
    grams: str  # "words": uni..n-grams of the tokens; "chars": character n-grams of the joined tokens
    n: int  # word n-grams up to n (2 or 3); character n-grams of sizes 4 and 5
    buckets: int  # hash table size (ids 1..buckets; 0 unused)


NGRAM_SETS: dict[str, NgramSet] = {
    "words": NgramSet("words", "words", 2, 2**21),
    "words_p": NgramSet("punct", "words", 2, 2**21),
    "trigrams_p": NgramSet("punct", "words", 3, 2**22),
    "chars": NgramSet("words", "chars", 5, 2**22),
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


def id_matrix(id_lists: Sequence[np.ndarray], size: int) -> sp.csr_matrix:
    """Binary rows (one per review) with a 1 at each of its ids."""
    lengths = np.fromiter((len(g) for g in id_lists), np.int64, count=len(id_lists))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(list(id_lists)).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(id_lists), size))


def community_ids(texts: Sequence[str]) -> list[np.ndarray]:
    """The earlier layout's community correction was written over the "words" set."""
    return review_ids(texts, ("words",))["words"]
