"""`playbill bench sentiment`: the tutorial (seed) recipe, a plain TF-IDF logistic regression
and the critic of `config` (any profile), or a baseline profile instead of the seed recipe,
measured in one run: IMDB test accuracy, the short development set (`sst2_dev.tsv` in the data
directory, when there), calibration (expected calibration error on each), one review at a time
(p50, p99) and batched reviews/s.

The tutorial recipe (Embedding(88584, 32) + LSTM(32) + sigmoid, rmsprop, reviews pre-padded
and pre-truncated to their last 250 words, 10 epochs, validation_split=0.2, batch 32) is
rebuilt here from the same raw training reviews (keras.datasets.imdb would download), and
predicts with `model.predict`, as the tutorial did. The TF-IDF baseline is scikit-learn's
`TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)` + `LogisticRegression()` on the same
training split the critic learns from. The critic is trained in a process of its own (as the
nightly job trains) and predicts with `SentimentModel`, timed in a fresh process that only
loads the version, as the bot serves it (`evaluate.speed_as_served`).
Same machine, same run, same test reviews.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

from playbill.engine.imdb import load_imdb
from playbill.engine.registry import ModelRegistry
from playbill.engine.sentiment.config import NAME
from playbill.engine.sentiment.data import short_reviews, split_rows
from playbill.engine.sentiment.evaluate import calibration_error, in_fresh_process, speed, speed_as_served
from playbill.engine.sentiment.serving import SentimentModel, blended
from playbill.engine.sentiment.fit import train_blend
from playbill.engine.sentiment.train import train_sentiment
from playbill.engine.text import Vocabulary, tokenize

TUTORIAL_VOCAB = 88_584
TUTORIAL_MAXLEN = 250


def _tutorial_encode(token_lists, vocab: Vocabulary) -> np.ndarray:
    out = np.zeros((len(token_lists), TUTORIAL_MAXLEN), dtype=np.int32)
    for row, tokens in enumerate(token_lists):
        ids = vocab.encode(tokens)[-TUTORIAL_MAXLEN:]  # pad_sequences' default: keep the LAST words
        if len(ids):
            out[row, -len(ids):] = ids
    return out


def bench_tutorial(train, test, short, epochs: int, progress: bool) -> dict:
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
    def probabilities(texts):
        return model.predict(_tutorial_encode([tokenize(t) for t in texts], vocab), batch_size=512, verbose=0).ravel()

    def predict_one(text):
        model.predict(_tutorial_encode([tokenize(text)], vocab), verbose=0)

    figures = _quality(probabilities, test, short)
    figures.update(speed(predict_one, lambda texts: probabilities(texts), test.texts))
    return {**figures, "train_seconds": train_seconds, "epochs": epochs}


def bench_tfidf(train, test, short, progress: bool) -> dict:
    """The plain baseline of issue 20: TF-IDF word uni+bigrams (sublinear tf) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    started = time.perf_counter()
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000))
    model.fit(train.texts, train.labels)
    train_seconds = time.perf_counter() - started
    if progress:
        print(f"tf-idf baseline: fitted in {train_seconds:.0f} s", flush=True)

    def probabilities(texts):
        return model.predict_proba(texts)[:, 1]

    figures = _quality(probabilities, test, short)
    figures.update(speed(lambda text: probabilities([text]), probabilities, test.texts))
    return {**figures, "train_seconds": train_seconds, "epochs": 1}


def _quality(probabilities, test, short) -> dict:
    """Accuracy and calibration on the test reviews and the short development set."""
    p = np.concatenate([probabilities(test.texts[i : i + 5000]) for i in range(0, len(test), 5000)])
    y = np.asarray(test.labels)
    out = {"accuracy": float(np.mean((p >= 0.5) == (y > 0))), "ece": calibration_error(p, y)}
    if short is not None:
        p, y = probabilities(short.texts), np.asarray(short.labels)
        out.update(short_accuracy=float(np.mean((p >= 0.5) == (y > 0))), short_ece=calibration_error(p, y))
    return out


def _train(config, home: Path, data_dir: Path, progress: bool) -> tuple[str, float, int]:
    """(version, training seconds, epochs) of the critic of `config`, trained and promoted in `home`."""
    if config.wide_deep:
        result = train_sentiment(config, home, data_dir, progress=progress)
    else:
        result = train_blend(config, home, data_dir, start=None, data=None, extra=(), promote=True,
                             progress=progress, evaluate_test=True, keep_runs=2)
    return result.version, result.extra["training_seconds"], result.epochs_run


def bench_default(config, home: Path, data_dir: Path, test, short, skip_train: bool, progress: bool) -> dict:
    if skip_train:
        version = ModelRegistry.in_home(home, NAME).current()
        train_seconds = float(version.metadata.get("training_seconds", float("nan")))
        epochs = version.metadata.get("epochs_run")
    else:  # in its own process, as the nightly job trains: Keras leaves nothing running here
        name, train_seconds, epochs = in_fresh_process(_train, config, home, data_dir, progress)
        version = ModelRegistry.in_home(home, NAME).get(name)
    model = SentimentModel.load(version.path)

    def probabilities(texts):
        return np.asarray([v.positive_probability for v in model.predict(texts)])

    figures = _quality(probabilities, test, short)
    figures.update(speed_as_served(version.path, test.texts))
    without = version.metadata.get("blend_without_lstm")
    if without:  # the same version's views blended without its LSTM member (fitted on validation too)
        blends = {key: np.asarray(weights, np.float64) for key, weights in
                  (without.items() if isinstance(without, dict) else [("blend", without)])}

        def views_only(texts):
            columns, tokens = model.members(texts)
            return 1.0 / (1.0 + np.exp(-blended(columns, tokens, blends, model.config, sequence=False)))

        alone = _quality(views_only, test, short)
        figures.update({f"{key}_without_lstm": value for key, value in alone.items()})
        figures["val_accuracy_without_lstm"] = version.metadata["per_model"]["lstm"]["val_accuracy_blend_without"]
    return {**figures, "val_accuracy": version.metrics.get("val_accuracy"), "train_seconds": train_seconds,
            "epochs": epochs, "version": version.version, "profile": config.name}


def run_bench(config, home: Path, data_dir: Path, *, tutorial_epochs: int = 10, skip_train: bool = False,
              skip_tutorial: bool = False, progress: bool = True, baseline=None) -> dict:
    """`baseline`: another config trained in the same run (its own home under `home`), the
    denominator of the ratios instead of the tutorial."""
    test = load_imdb(Path(data_dir), "test")
    short = short_reviews(Path(data_dir))
    train = load_imdb(Path(data_dir), "train")
    _, rows = split_rows(len(train), config)  # the critic's own training split
    train_split = type(train)([train.texts[i] for i in rows], [train.labels[i] for i in rows], train.source, "")
    tfidf = bench_tfidf(train_split, test, short, progress)  # first: before any Keras training in this process
    default = bench_default(config, home, data_dir, test, short, skip_train, progress)
    tutorial = None
    if baseline is not None:
        tutorial = bench_default(baseline, Path(home) / "baseline", data_dir, test, short, False, progress)
    elif not skip_tutorial:
        tutorial = bench_tutorial(train, test, short, tutorial_epochs, progress)
    rows_shown = [("validation accuracy", "val_accuracy", "{:.4f}"), ("test accuracy (25,000)", "accuracy", "{:.4f}"),
                  ("short reviews (sst2 dev)", "short_accuracy", "{:.4f}"),
                  ("  without the LSTM: val", "val_accuracy_without_lstm", "{:.4f}"),
                  ("  without the LSTM: test", "accuracy_without_lstm", "{:.4f}"),
                  ("  without the LSTM: short", "short_accuracy_without_lstm", "{:.4f}"), ("ECE, test", "ece", "{:.4f}"),
                  ("ECE, short reviews", "short_ece", "{:.4f}"), ("training seconds", "train_seconds", "{:.0f}"),
                  ("one review, p50 ms", "latency_ms", "{:.2f}"), ("one review, p99 ms", "latency_p99_ms", "{:.2f}"),
                  ("batch reviews/s", "throughput", "{:,.0f}")]
    base_name = baseline.name if baseline is not None else "seed recipe"
    lines = [f"{'':26s} {base_name:>12s} {'tf-idf LR':>12s} {config.name:>12s} {'ratio':>8s}"]

    def cell(figures, key, fmt):
        value = figures.get(key) if figures else None
        return fmt.format(value) if value is not None else "-"

    for title, key, fmt in rows_shown:
        t, d = (tutorial or {}).get(key), default.get(key)
        ratio = f"{d / t:.2f}x" if t and isinstance(d, (int, float)) and isinstance(t, (int, float)) else "-"
        lines.append(f"{title:26s} {cell(tutorial, key, fmt):>12s} {cell(tfidf, key, fmt):>12s} "
                     f"{cell(default, key, fmt):>12s} {ratio:>8s}")
    return {"tutorial": tutorial, "tfidf": tfidf, "default": default, "table": "\n".join(lines)}
