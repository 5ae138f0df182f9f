"""The critic's settings in one place: its hyper-parameters, its serving limits, its request.

Everything here is plain Python: front ends import it to build and check requests without
loading a model (or TensorFlow). The review rule (not empty, not too long) is written here
once; Discord, the console and the command line all show its message as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidInput
from engine.fields import known_fields

NAME = "sentiment"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocabulary.json"
WEIGHTS_FILE = "serving.npz"
CONFIG_FILE = "config.json"
MAX_CHARS = 200_000  # longer input is refused with a message, not silently cut


@dataclass(frozen=True)
class SentimentConfig:
    """Hyper-parameters of the default critic (all of them: nothing else is tuned)."""

    vocab_size: int = 40_000  # words the LSTM knows, including the padding and unknown ids
    ngram_buckets: int = 2**21  # hashed unigram + bigram table of the wide branch (2**22: no better)
    wide_l2: float = 2e-5  # L2 on the wide weights: liblinear's C = 1 for 22,500 reviews (1 / 2NC)
    # "nblr": the wide branch of engine.sentiment.train. "fasttext": averaged n-gram vectors summed
    # with the LSTM's logit, the layout of models trained before (88.8%): such versions still serve.
    wide: str = "nblr"
    window: int = 200  # tokens the LSTM reads at once (longer reviews: several windows)
    embedding_dim: int = 64
    lstm_units: int = 48
    dropout: float = 0.5  # on the LSTM's output: it overfits long before the n-gram branch has learnt
    learning_rate: float = 2e-3
    batch_size: int = 64
    epochs: int = 8
    patience: int = 2  # early stopping on validation loss
    validation_fraction: float = 0.1
    seed: int = 1337
    max_train_reviews: int | None = None  # a seeded subset, for quick runs and tests

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SentimentConfig:
        """A config as saved with a model version (older versions: the "fasttext" layout)."""
        values = {"wide": "fasttext", **values}  # as saved before the option existed
        if "bigram_buckets" in values:  # fasttext layout's name for the n-gram table
            values.setdefault("ngram_buckets", values["bigram_buckets"])
        return cls(**known_fields(cls, values, keep_none=True))

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> SentimentConfig:
        """The one place a `[sentiment]` settings section becomes a config: every key that names
        a hyper-parameter is used (None means "the default"); other keys are not ours."""
        return cls(**known_fields(cls, values))


@dataclass(frozen=True)
class SentimentLimits:
    """What a served critic accepts."""

    max_chars: int = MAX_CHARS

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError("max_chars must be at least 1")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> SentimentLimits:
        return cls(**known_fields(cls, values))

    def check(self, request: ReviewRequest) -> ReviewRequest:
        """The review rule; raises InvalidInput with the one message every front end shows."""
        text = request.text
        if not isinstance(text, str):
            raise InvalidInput("a review must be text")
        if not text.strip():
            raise InvalidInput("the review is empty; give some text to judge")
        if len(text) > self.max_chars:
            raise InvalidInput(f"the review is too long ({len(text):,} characters; the limit is {self.max_chars:,})")
        return request


@dataclass(frozen=True)
class ReviewRequest:
    """One review to judge."""

    text: str
