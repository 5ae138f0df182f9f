"""The critic, one slice: config and limits, features, numpy serving, training, evaluation.

    config     SentimentConfig, SentimentLimits, ReviewRequest, file names (plain Python)
    features   review text -> LSTM windows and n-gram ids (numpy)
    serving    SentimentModel, Verdict: check, predict (numpy, on the shared `engine.lstm` cell)
    evaluate   accuracy on labelled reviews in memory, a CSV or IMDB test; the validation blend
    train      train_sentiment, build_model, NBScore, export_weights (Keras)
    bench      `playbill bench sentiment` (Keras)

Serving needs no TensorFlow, so importing this package loads none; the Keras names in
`_TRAINING` come from `engine.sentiment.train` when first asked for (the one hop).
"""

from engine.sentiment.config import (
    CONFIG_FILE,
    MAX_CHARS,
    MODEL_FILE,
    NAME,
    VOCAB_FILE,
    WEIGHTS_FILE,
    ReviewRequest,
    SentimentConfig,
    SentimentLimits,
)
from engine.sentiment.evaluate import accuracy, evaluate_sentiment, fit_blend
from engine.sentiment.features import encode, features, pad_ngrams, pad_windows, split_windows
from engine.sentiment.serving import SentimentModel, Verdict

_TRAINING = ("train_sentiment", "build_model", "export_weights", "nb_log_count_ratios")

__all__ = [
    "CONFIG_FILE", "MAX_CHARS", "MODEL_FILE", "NAME", "VOCAB_FILE", "WEIGHTS_FILE", "ReviewRequest",
    "SentimentConfig", "SentimentLimits", "SentimentModel", "Verdict", "accuracy", "encode", "evaluate_sentiment",
    "features", "fit_blend", "pad_ngrams", "pad_windows", "split_windows", *_TRAINING,
]


def __getattr__(name: str):
    """The one hop to Keras: `train_sentiment` and friends load `engine.sentiment.train` when first asked for."""
    if name in _TRAINING:
        from engine.sentiment import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
