"""`playbill bench sentiment`: the tutorial recipe, the critic of `config` (any profile) and,
when asked, a baseline profile (the previous default, "wide_deep"), measured in one run.

The tutorial recipe (Embedding(88584, 32) + LSTM(32) + sigmoid, rmsprop, reviews pre-padded
and pre-truncated to their last 250 words, 10 epochs, validation_split=0.2, batch 32) is
rebuilt here from the same raw training reviews (keras.datasets.imdb would download), and
predicts with `model.predict`, as the tutorial did. The default critic predicts with the
numpy `SentimentModel`. Same machine, same run, same test reviews.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

from playbill.engine.imdb import load_imdb
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment.config import NAME
from playbill.engine.sentiment.evaluate import accuracy as model_accuracy
from playbill.engine.sentiment.serving import SentimentModel
from playbill.engine.sentiment.fit import train_ngrams
from playbill.engine.sentiment.train import train_sentiment
from playbill.engine.text import Vocabulary, tokenize

TUTORIAL_VOCAB = 88_584
TUTORIAL_MAXLEN = 250
LATENCY_REVIEWS = 200  # single-review calls timed (median reported)
THROUGHPUT_REVIEWS = 5_000


def _tutorial_encode(token_lists, vocab: Vocabulary) -> np.ndarray:
    out = np.zeros((len(token_lists), TUTORIAL_MAXLEN), dtype=np.int32)
    for row, tokens in enumerate(token_lists):
        ids = vocab.encode(tokens)[-TUTORIAL_MAXLEN:]  # pad_sequences' default: keep the LAST words
        if len(ids):
            out[row, -len(ids):] = ids
    return out


def bench_tutorial(train, test, epochs: int, progress: bool) -> dict:
    keras.utils.set_random_seed(1337)
    train_tokens = [tokenize(t) for t in train.texts]
    vocab = Vocabulary.build(train_tokens, TUTORIAL_VOCAB)
    x_train = _tutorial_encode(train_tokens, vocab)
    y_train = np.asarray(train.labels, dtype=np.float32)
    shuffle = np.random.default_rng(1337).permutation(len(y_train))  # the tutorial's data came shuffled
    x_train, y_train = x_train[shuffle], y_train[shuffle]
    x_test = _tutorial_encode([tokenize(t) for t in test.texts], vocab)
    y_test = np.asarray(test.labels, dtype=np.float32)

    model = keras.Sequential([
        keras.Input((TUTORIAL_MAXLEN,), dtype="int32"),
        layers.Embedding(TUTORIAL_VOCAB, 32),
        layers.LSTM(32),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["acc"])
    started = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, validation_split=0.2, verbose=2 if progress else 0)
    train_seconds = time.perf_counter() - started
    accuracy = float(model.evaluate(x_test, y_test, verbose=0, batch_size=512)[1])

    latencies = []
    for text in test.texts[:LATENCY_REVIEWS]:
        t0 = time.perf_counter()
        model.predict(_tutorial_encode([tokenize(text)], vocab), verbose=0)
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    texts = test.texts[:THROUGHPUT_REVIEWS]
    model.predict(_tutorial_encode([tokenize(t) for t in texts], vocab), batch_size=512, verbose=0)
    throughput = len(texts) / (time.perf_counter() - t0)
    return {"accuracy": accuracy, "train_seconds": train_seconds, "epochs": epochs,
            "latency_ms": 1000 * statistics.median(latencies[5:]), "throughput": throughput}


def bench_default(config, home: Path, data_dir: Path, test, skip_train: bool, progress: bool) -> dict:
    if skip_train:
        version = ModelRegistry.in_home(home, NAME).current()
        train_seconds = float(version.metadata.get("training_seconds", float("nan")))
        epochs = version.metadata.get("epochs_run")
    else:
        if config.wide_deep:
            result = train_sentiment(config, home, data_dir, progress=progress)
        else:
            result = train_ngrams(config, home, data_dir, start=None, data=None, extra=(), promote=True,
                                  progress=progress, evaluate_test=True, keep_runs=2)
        version = ModelRegistry.in_home(home, NAME).get(result.version)
        train_seconds, epochs = result.extra["training_seconds"], result.epochs_run
    model = SentimentModel.load(version.path)
    accuracy = version.metrics.get("test_accuracy") if not skip_train else None
    if accuracy is None:
        accuracy = model_accuracy(model, test.texts, test.labels)
    latencies = []
    for text in test.texts[:LATENCY_REVIEWS]:
        t0 = time.perf_counter()
        model.predict_one(text)
        latencies.append(time.perf_counter() - t0)
    texts = test.texts[:THROUGHPUT_REVIEWS]
    t0 = time.perf_counter()
    for start in range(0, len(texts), 1000):
        model.predict(texts[start : start + 1000])
    throughput = len(texts) / (time.perf_counter() - t0)
    return {"accuracy": accuracy, "val_accuracy": version.metrics.get("val_accuracy"), "train_seconds": train_seconds,
            "epochs": epochs, "version": version.version, "profile": config.name,
            "latency_ms": 1000 * statistics.median(latencies[5:]), "throughput": throughput}


def run_bench(config, home: Path, data_dir: Path, *, tutorial_epochs: int = 10, skip_train: bool = False,
              skip_tutorial: bool = False, progress: bool = True, baseline=None) -> dict:
    """`baseline`: another config trained in the same run (its own home under `home`), the
    denominator of the ratios instead of the tutorial."""
    test = load_imdb(Path(data_dir), "test")
    default = bench_default(config, home, data_dir, test, skip_train, progress)
    tutorial = None
    if baseline is not None:
        tutorial = bench_default(baseline, Path(home) / "baseline", data_dir, test, False, progress)
    elif not skip_tutorial:
        tutorial = bench_tutorial(load_imdb(Path(data_dir), "train"), test, tutorial_epochs, progress)
    rows = [("validation accuracy", "val_accuracy", "{:.4f}"), ("test accuracy (25,000)", "accuracy", "{:.4f}"), ("training seconds", "train_seconds", "{:.0f}"),
            ("epochs", "epochs", "{}"), ("one review, median ms", "latency_ms", "{:.2f}"),
            ("batch reviews/s", "throughput", "{:,.0f}")]
    base_name = baseline.name if baseline is not None else "tutorial"
    lines = [f"{'':24s} {base_name:>12s} {config.name:>12s} {'ratio':>17s}"]
    for title, key, fmt in rows:
        t = tutorial.get(key) if tutorial else None
        d = default.get(key)
        ratio = f"{d / t:.2f}x" if t and isinstance(d, (int, float)) and isinstance(t, (int, float)) else "-"
        lines.append(f"{title:24s} {fmt.format(t) if t is not None else '-':>12s} {fmt.format(d) if d is not None else '-':>12s} {ratio:>17s}")
    return {"tutorial": tutorial, "default": default, "table": "\n".join(lines)}
