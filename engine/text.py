"""Review text -> tokens -> ids: the one tokenization used at training and at prediction.

`standardize` is plain Python (no TensorFlow), so the numpy serving path and the Keras
training path cannot drift apart. The vocabulary is built from the training reviews and
saved with the model as JSON. N-gram ids are hashed with fixed formulas (zlib.crc32 of a
token, integer arithmetic for pairs; never the salted `hash()`), so they are the same in
every process.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
import zlib
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


def clean_markup(text: str) -> str:
    """Lower case, HTML entities unescaped, `<br />` a sentence break and other tags spaces, curly
    apostrophes straight: what the linear critic's tokenizer (engine.sentiment.linear) reads."""
    text = _TAGS.sub(" ", _BREAKS.sub(" . ", html.unescape(text)))
    return text.lower().replace("\u2019", "'").replace("`", "'")


_PUNCT_TOKENS = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[.,!?;:()\"-]")


def tokenize_punct(text: str) -> list[str]:
    """Words as `standardize` cleans them, but with the punctuation . , ! ? ; : ( ) " - kept as tokens.

    What the n-gram critic reads (Mesnil et al.'s NBSVM data keeps punctuation): "not bad ."
    and "not bad ," are different evidence; 0.04-0.3 points on validation (docs/benchmarks.md).
    """
    text = _TAGS.sub(" ", _BREAKS.sub(" ", html.unescape(text)))
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("`", "'")
    return _PUNCT_TOKENS.findall(text)


class Vocabulary:
    """Token <-> id. Ids 0 and 1 are padding and unknown; the rest by descending frequency."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        if self.tokens[:2] != ["", OOV_TOKEN]:
            raise ValueError("a vocabulary starts with the padding and unknown tokens")
        self._index = {token: i for i, token in enumerate(self.tokens)}
        self._hashes: np.ndarray | None = None

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

    @property
    def ids_by_token(self) -> dict[str, int]:
        """token -> id (read only, please: a lookup table for batch encoders)."""
        return self._index

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        get = self._index.get
        return np.fromiter((get(t, OOV) for t in tokens), dtype=np.int32, count=len(tokens))

    @property
    def hashes(self) -> np.ndarray:
        """crc32 of every token by id (computed once): known words need no hashing at serving."""
        if self._hashes is None:
            self._hashes = token_hashes(self.tokens)
        return self._hashes

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.tokens, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(Path(path).read_text("utf-8")))


def ngram_ids(ids: np.ndarray, vocab_size: int, buckets: int) -> np.ndarray:
    """The older "fasttext" layout's n-grams (kept to serve models trained with it).

    Unique known unigram ids, plus bigram (a, b) -> vocab_size + (a * 1_000_003 + b) mod buckets.
    """
    ids = np.asarray(ids, dtype=np.int64)
    parts = [ids[ids > OOV]]
    if len(ids) > 1:
        parts.append(vocab_size + (ids[:-1] * 1_000_003 + ids[1:]) % buckets)
    return np.unique(np.concatenate(parts)).astype(np.int32)


def token_hashes(tokens: Sequence[str]) -> np.ndarray:
    """crc32 of each token: a fixed formula, never the salted `hash()`, so every process agrees."""
    return np.fromiter((zlib.crc32(t.encode("utf-8", "surrogatepass")) for t in tokens), dtype=np.int64,
                       count=len(tokens))


def hashed_ngrams(tokens: Sequence[str], buckets: int, hashes: np.ndarray | None = None, n: int = 2) -> np.ndarray:
    """Sorted, unique ids in [1, buckets] of a review's unigrams and bigrams (and trigrams for
    n=3); 0 is padding.

    Hashed from the token strings themselves, not from vocabulary ids: a bigram of two rare
    words keeps its identity. Unigram t -> crc32(t), bigram (a, b) -> (crc32(a) * 1_000_003
    + crc32(b)) * 7 + 1, trigram (a, b, c) -> ((bigram mod 2**31 - 1) * 1_000_003 + crc32(c))
    * 7 + 2, all mod `buckets`, plus one. `hashes`: the tokens' crc32s, if known.
    """
    h = token_hashes(tokens) if hashes is None else np.asarray(hashes, dtype=np.int64)
    if len(h) == 0:
        return np.zeros(0, dtype=np.int32)
    # in place on one buffer, sort-based dedupe: 5x faster than np.unique on a review (~11 us)
    size = len(h)
    triples = max(0, size - 2) if n >= 3 else 0
    grams = np.empty(2 * size - 1 + triples, dtype=np.int64)
    grams[:size] = h
    pairs = grams[size : 2 * size - 1]
    np.multiply(h[:-1], 7_000_021, out=pairs)  # (a * 1_000_003 + b) * 7 + 1, expanded
    pairs += h[1:] * 7
    pairs += 1
    if triples:
        grams[2 * size - 1 :] = ((pairs[:-1] % 2_147_483_647) * 1_000_003 + h[2:]) * 7 + 2
    grams %= buckets
    grams.sort()
    first = np.empty(len(grams), dtype=bool)
    first[0] = True
    np.not_equal(grams[1:], grams[:-1], out=first[1:])
    return (grams[first] + 1).astype(np.int32)


_CHAR_PRIME = np.int64(1_000_003)


def char_ngrams(tokens: Sequence[str], buckets: int, sizes: Sequence[int] = (4, 5)) -> np.ndarray:
    """Sorted, unique ids in [1, buckets] of the character n-grams (of each size in `sizes`) of
    the tokens joined by spaces, with a space before and after: spelling variants, word stems
    and "!!!" runs share evidence. A polynomial hash of the UTF-8 bytes (wrapping int64
    arithmetic: a fixed formula, the same in every process), times 31 plus the size."""
    data = np.frombuffer((" " + " ".join(tokens) + " ").encode("utf-8", "surrogatepass"), np.uint8).astype(np.int64) + 1
    parts, h = [], data.copy()
    with np.errstate(over="ignore"):
        for size in range(2, max(sizes) + 1):
            h = h[:-1] * _CHAR_PRIME + data[size - 1 :]
            if size in sizes and len(h):
                parts.append(h * 31 + size)
    if not parts:
        return np.zeros(0, dtype=np.int32)
    return (np.unique(np.concatenate(parts) % buckets) + 1).astype(np.int32)
