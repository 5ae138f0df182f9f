"""The critic's settings in one place: its hyper-parameters, its serving limits, its request.

Everything here is plain Python: front ends import it to build and check requests without
loading a model (or TensorFlow). The review rule (not empty, not too long) is written here
once; Discord, the console and the command line all show its message as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from playbill.engine.errors import InvalidInput
from playbill.engine.fields import known_fields

NAME = "sentiment"
MEMORY_FILE = "memory.json"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocabulary.json"
WEIGHTS_FILE = "serving.npz"
CONFIG_FILE = "config.json"
MAX_CHARS = 200_000  # longer input is refused with a message, not silently cut


@dataclass(frozen=True)
class SentimentConfig:
    """Hyper-parameters of one critic (all of them: nothing else is tuned).

    Three layouts. `views` names linear views (`engine.sentiment.linear.VIEWS`: scikit-learn
    hashed n-grams and logistic regressions), with `sequence_units` an LSTM beside them
    (`engine.sentiment.sequence`), blended and calibrated on validation: the profiles "quick"
    and "default". `ngrams` names the hand-hashed n-gram models of versions trained
    before (served, no longer trained). Neither is the wide-and-deep layout (an LSTM beside one
    n-gram branch, Keras): the profile "wide_deep", and what a config built with no profile (or
    saved before profiles) means, so old versions and tiny test configs keep their meaning.
    """

    name: str = "custom"  # the profile it came from, for metadata and warm-up progress
    views: tuple[str, ...] = ()  # linear views, blended on validation (engine.sentiment.linear)
    # A second blend for long reviews: a review of more than `long_review_tokens` tokens is judged
    # by these views (and the LSTM member), blended on validation too; () or 0: one blend for
    # every review. Views read long and short reviews best with different statistics, and no
    # one blend of them is best for both (docs/benchmarks.md "## Critic"); 50 tokens: every
    # sentence of the short development set is shorter (48 at most), 99% of IMDB's reviews longer
    long_views: tuple[str, ...] = ()
    long_review_tokens: int = 0
    ngrams: tuple[str, ...] = ()  # hand-hashed n-gram models of earlier versions (serving only)
    # a verdict whose calibrated probability is within this of 0.5 is shown as mixed ("leans
    # positive, 56%"); checked on validation (docs/benchmarks.md "## Critic")
    mixed_band: float = 0.1
    # votes (extra examples), n-gram layout: a community layer on top of the IMDB-only models
    # (engine.sentiment.community): L2 of its mean-pooled correction, and the settled weight
    # from which a review is remembered verbatim (docs/benchmarks.md "votes")
    community_l2: float = 0.03
    memory_min_weight: float = 1.0
    # the linear layout's word-order member (engine.sentiment.sequence): an LSTM over the views'
    # tokens, blended with them; 0 units: none (versions trained before it, the quick profile).
    # Chosen on IMDB validation and the short development set (docs/benchmarks.md "## Critic")
    sequence_units: int = 0
    sequence_vocab: int = 10_000  # most frequent tokens it knows (30,000: worse on validation)
    sequence_window: int = 25  # tokens per window; a longer review: its first and last (40: as good on
    # validation, 0.15-0.5 ms slower for one review; 60: worse)
    sequence_epochs: int = 1
    sequence_batch_size: int = 128
    sequence_dropout: float = 0.3
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "ngrams", tuple(self.ngrams))  # JSON gives lists
        object.__setattr__(self, "views", tuple(self.views))
        object.__setattr__(self, "long_views", tuple(self.long_views))

    @property
    def linear_views(self) -> tuple[str, ...]:
        """Every linear view the critic fits and reads: the blend's, then the long blend's others."""
        return self.views + tuple(v for v in self.long_views if v not in self.views)

    @property
    def long_blend(self) -> bool:
        return bool(self.views and self.long_views and self.long_review_tokens > 0)

    @property
    def blend_names(self) -> tuple[str, ...]:
        """The blends a version of this config stores (weights under these names)."""
        return ("blend", "blend_long") if self.long_blend else ("blend",)

    def blend_members(self, blend: str, sequence: bool = True) -> list[int]:
        """The member columns ("blend": `views`, "blend_long": `long_views`, each then the LSTM
        member unless `sequence` is off) that blend reads, members in `linear_views` order
        with the LSTM last."""
        views = self.long_views if blend == "blend_long" else self.views
        members = [self.linear_views.index(name) for name in views]
        return members + [len(self.linear_views)] if sequence and self.sequence_units else members

    @property
    def wide_deep(self) -> bool:
        """The Keras layout (LSTM + one n-gram branch), trained epoch by epoch."""
        return not self.ngrams and not self.views

    def with_overrides(self, **changes: Any) -> SentimentConfig:
        """This config with the given fields changed; None leaves a field as it is."""
        return replace(self, **known_fields(SentimentConfig, changes))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SentimentConfig:
        """A config as saved with a model version (older versions: the "fasttext" layout)."""
        values = {"wide": "fasttext", **values}  # as saved before the option existed
        if "bigram_buckets" in values:  # fasttext layout's name for the n-gram table
            values.setdefault("ngram_buckets", values["bigram_buckets"])
        return cls(**known_fields(cls, values, keep_none=True))

    @classmethod
    def from_settings(cls, values: Mapping[str, Any], profile: str | None = None) -> SentimentConfig:
        """The one place a `[sentiment]` settings section becomes a config: the profile (`profile`,
        else the section's `profile`, else "default") with every key that names a
        hyper-parameter applied on top (None means "the profile's"); other keys are not ours."""
        return get_profile(profile or values.get("profile")).with_overrides(**values)


PROFILES: dict[str, SentimentConfig] = {
    # First start: one logistic regression over NB-scaled, normalised word uni+bigrams, seconds.
    "quick": SentimentConfig(name="quick", views=("words12",)),
    # The full critic: linear views blended on validation (docs/benchmarks.md "## Critic").
    "default": SentimentConfig(name="default", views=("words13_neg", "words12_sharp"), sequence_units=32,
                               long_views=("words13_neg_reviews", "words13_neg"), long_review_tokens=50),
    # The previous default (LSTM + n-gram branch, Keras, ~8 min): the benchmark's baseline.
    "wide_deep": SentimentConfig(name="wide_deep"),
}


def get_profile(name: str | None) -> SentimentConfig:
    name = name or "default"
    if name not in PROFILES:
        raise InvalidInput(f"unknown sentiment profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


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
