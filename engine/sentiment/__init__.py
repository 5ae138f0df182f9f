"""The critic, one slice: config and limits, features, numpy serving, training, evaluation.

    config     SentimentConfig, SentimentLimits, ReviewRequest, file names (plain Python)
    features   review text -> LSTM windows and n-gram ids (numpy)
    serving    SentimentModel, Verdict: check, predict (numpy, on the shared `engine.lstm` cell)
    data       the fixed train/validation split; extra (voted) examples with weights; the memory
    linear     the linear views: scikit-learn hashed n-grams, NB-scaled normalised features, logistic regression
    sequence   the default's LSTM member: a review's first and last window (numpy serving, Keras training)
    ngrams     how versions trained before issue 20 read a review (hand-hashed n-grams; serving only)
    community  the votes' correction (scipy sparse rows, L-BFGS-B)
    fit        train_blend: the "quick" and "default" profiles (scikit-learn views; the default's LSTM with Keras)
    evaluate   accuracy on labelled reviews in memory, a CSV, IMDB validation or test
    train      train_sentiment, build_model, NBScore, export_weights: the "wide_deep" profile (Keras)
    bench      `playbill bench sentiment` (Keras)

Serving needs no TensorFlow, so importing this package loads none; the Keras names in
`_TRAINING` come from `engine.sentiment.train` when first asked for (the one hop).
"""

from playbill.engine.sentiment.config import (
    CONFIG_FILE,
    MAX_CHARS,
    MODEL_FILE,
    NAME,
    PROFILES,
    VOCAB_FILE,
    WEIGHTS_FILE,
    ReviewRequest,
    SentimentConfig,
    SentimentLimits,
    get_profile,
)
from playbill.engine.sentiment.data import VALIDATION_SEED, validation_reviews
from playbill.engine.sentiment.evaluate import accuracy, evaluate_sentiment, fit_blend
from playbill.engine.sentiment.fit import train_blend
from playbill.engine.sentiment.features import encode, features, pad_ngrams, pad_windows, split_windows
from playbill.engine.sentiment.serving import SentimentModel, Verdict

_TRAINING = ("train_sentiment", "build_model", "export_weights", "nb_log_count_ratios")

__all__ = [
    "CONFIG_FILE", "MAX_CHARS", "MODEL_FILE", "NAME", "PROFILES", "VALIDATION_SEED", "VOCAB_FILE", "WEIGHTS_FILE",
    "ReviewRequest", "SentimentConfig", "SentimentLimits", "SentimentModel", "Verdict", "accuracy", "encode",
    "evaluate_sentiment", "features", "fit_blend", "get_profile", "pad_ngrams", "pad_windows", "split_windows",
    "train_blend", "validation_reviews", *_TRAINING,
]


def __getattr__(name: str):
    """The one hop to Keras: `train_sentiment` and friends load `engine.sentiment.train` when first asked for."""
    if name in _TRAINING:
        from playbill.engine.sentiment import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
