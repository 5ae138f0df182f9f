"""The served critic: raw review text in, probability that it is positive out; numpy only.

At save time training exports the Keras weights to numpy (`serving.npz`) and
`SentimentModel` runs the forward pass itself: the embedding@kernel table precomputed, the
shared `engine.lstm` step, padding steps skipped, many windows stepped together. The
review's deep logit is the mean of its windows' logits; the served logit is
a * deep + b * wide + c, the blend fitted on validation reviews.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from engine.errors import ModelUnavailable
from engine.lstm import cell_step, fuse_gates, input_table
from engine.registry import ModelRegistry
from engine.sentiment.config import CONFIG_FILE, NAME, VOCAB_FILE, WEIGHTS_FILE, ReviewRequest, SentimentConfig, SentimentLimits
from engine.sentiment.features import features, pad_windows, split_windows
from engine.text import Vocabulary, tokenize
from engine.weights import read_arrays


@dataclass(frozen=True)
class Verdict:
    label: str  # "positive" or "negative"
    positive_probability: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "positive_probability": round(self.positive_probability, 6)}


class SentimentModel:
    """A trained critic for serving: numpy only, read-only weights, safe to share across threads."""

    def __init__(self, weights: dict[str, np.ndarray], vocab: Vocabulary, config: SentimentConfig,
                 version: str | None = None, path: Path | None = None, limits: SentimentLimits | None = None) -> None:
        self.vocab, self.config, self.version, self.path = vocab, config, version, path
        self.limits = limits or SentimentLimits()
        self._table = input_table(weights["embedding"], weights["kernel"], weights["bias"])  # id -> gates' input part
        self._recurrent = fuse_gates(weights["recurrent"])
        self._dense_w = weights["dense_w"].astype(np.float32)
        self._dense_b = float(np.asarray(weights["dense_b"]).reshape(-1)[0])
        self._wide_b = float(np.asarray(weights["wide_b"]).reshape(-1)[0])
        self._ngram_weight = weights["ngram_weight"].astype(np.float32)
        # served logit = a * deep + b * wide + c (models of the fasttext layout: the plain sum)
        self._blend = np.asarray(weights.get("blend", (1.0, 1.0, 0.0)), dtype=np.float64).reshape(3)
        for array in (self._table, self._recurrent, self._dense_w, self._ngram_weight):
            array.flags.writeable = False
        # Our matrices are small: OpenBLAS threads only spin against each other (10x slower
        # on a busy 2-core machine, measured), so BLAS gets one thread for the process.
        threadpool_limits(1, user_api="blas")

    @classmethod
    def load(cls, version_dir: Path, limits: SentimentLimits | None = None) -> SentimentModel:
        version_dir = Path(version_dir)
        try:
            weights = read_arrays(version_dir / WEIGHTS_FILE)  # finite, or ValueError
            vocab = Vocabulary.load(version_dir / VOCAB_FILE)
            config = SentimentConfig.from_dict(json.loads((version_dir / CONFIG_FILE).read_text("utf-8")))
            model = cls(weights, vocab, config, version=version_dir.name, path=version_dir, limits=limits)
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
        return cls.load(ModelRegistry(Path(home) / "models", NAME).current().path, limits)

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
        return [Verdict("positive" if p >= 0.5 else "negative", float(p)) for p in probs]

    def logits(self, texts: Sequence[str], chunk: int = 512) -> np.ndarray:
        return self.logits_from_features([self.features(t) for t in texts], chunk=chunk)

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
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        by_length = np.argsort(-lengths, kind="stable")
        window_logits = np.empty(len(windows), dtype=np.float32)
        for start in range(0, len(windows), chunk):
            rows = by_length[start : start + chunk]
            window_logits[rows] = self._lstm_logits([windows[r] for r in rows])
        deep_sum = np.bincount(owner_arr, weights=window_logits, minlength=len(feats))
        deep = deep_sum / np.bincount(owner_arr, minlength=len(feats))
        return deep, wide

    def _lstm_logits(self, windows: list[np.ndarray]) -> np.ndarray:
        """LSTM over windows sorted longest first: at step t only the first k rows have started."""
        padded = pad_windows(windows)
        n, steps = padded.shape
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=n)
        active = np.searchsorted(-lengths, -(steps - np.arange(steps)), side="right")  # rows started by step t
        units = self._recurrent.shape[0]
        h = np.zeros((n, units), dtype=np.float32)
        c = np.zeros((n, units), dtype=np.float32)
        tmp = np.empty((n, units), dtype=np.float32)
        for t in range(steps):
            k = active[t]
            z = self._table[padded[:k, t]]
            z += h[:k] @ self._recurrent
            cell_step(z, h[:k], c[:k], tmp[:k])
        return h @ self._dense_w + self._dense_b
