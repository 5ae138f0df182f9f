"""Review text -> tokens -> ids: the one tokenization used at training and at prediction.

`standardize` is plain Python (no TensorFlow), so the numpy serving path and the Keras
training path cannot drift apart. The vocabulary is built from the training reviews and
saved with the model as JSON; the hashed bigram ids are computed from unigram ids with a
fixed integer formula (no salted `hash()`), so they are the same in every process.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

PAD, OOV = 0, 1  # reserved ids: padding and out-of-vocabulary
OOV_TOKEN = "[UNK]"

_BREAKS = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]{0,40}>")
_EMPHASIS = re.compile(r"([!?])")  # kept as tokens of their own: they carry sentiment
_NOT_WORD = re.compile(r"[^\w'!? ]+")  # other punctuation and symbols become spaces
_QUOTES = re.compile(r"(?<!\w)'|'(?!\w)")  # quotes around words, not apostrophes inside them


def standardize(text: str) -> str:
    """Lower-cased words separated by single spaces; `!` and `?` kept as tokens.

    HTML entities are unescaped, `<br />` and other tags become spaces, other punctuation
    is dropped (so "7/10" becomes "7 10": scores stay visible), apostrophes inside words
    are kept ("don't").
    """
    text = html.unescape(text)
    text = _BREAKS.sub(" ", text)
    text = _TAGS.sub(" ", text)
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("`", "'")
    text = _EMPHASIS.sub(r" \1 ", text)
    text = _NOT_WORD.sub(" ", text)
    text = _QUOTES.sub(" ", text)
    text = text.replace("_", " ")
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    return standardize(text).split()


class Vocabulary:
    """Token <-> id. Ids 0 and 1 are padding and unknown; the rest by descending frequency."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        if self.tokens[:2] != ["", OOV_TOKEN]:
            raise ValueError("a vocabulary starts with the padding and unknown tokens")
        self._index = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_size: int, min_count: int = 1) -> Vocabulary:
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        # ties broken alphabetically: the same data always gives the same ids
        ranked = sorted((c for c in counts.items() if c[1] >= min_count), key=lambda kv: (-kv[1], kv[0]))
        return cls(["", OOV_TOKEN] + [token for token, _ in ranked[: max_size - 2]])

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        get = self._index.get
        return np.fromiter((get(t, OOV) for t in tokens), dtype=np.int32, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.tokens, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(Path(path).read_text("utf-8")))


def ngram_ids(ids: np.ndarray, vocab_size: int, buckets: int, trigrams: bool = False) -> np.ndarray:
    """Unique unigram ids plus hashed bigram (and trigram) ids, offset by `vocab_size`, of a whole review.

    Bigram (a, b) -> vocab_size + (a * 1_000_003 + b) mod buckets, trigram (a, b, c) ->
    vocab_size + ((a * 1_000_003 + b) * 1_000_033 + c) mod buckets: deterministic, no salt.
    Unknown unigrams are dropped (they say nothing); n-grams with an unknown word are kept.
    Sorted and unique: the wide branch sees which n-grams occur, not how often.
    """
    ids = np.asarray(ids, dtype=np.int64)
    parts = [ids[ids > OOV]]
    if len(ids) > 1:
        pair = ids[:-1] * 1_000_003 + ids[1:]
        parts.append(vocab_size + pair % buckets)
        if trigrams and len(ids) > 2:
            parts.append(vocab_size + (pair[:-1] * 1_000_033 + ids[2:]) % buckets)
    return np.unique(np.concatenate(parts)).astype(np.int32)
