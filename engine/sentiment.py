"""The critic: raw review text in, probability that it is positive out.

Model (wide and deep: two branches trained side by side, blended on validation):
- deep: Embedding + LSTM over a window of at most `config.window` tokens. A longer review
  is split into ceil(n / window) consecutive windows of (nearly) equal size; every window
  is scored and the review's deep logit is the MEAN of the window logits, so nothing is
  cut off. During training each review shows one of its windows, drawn anew each epoch.
- wide: NB-weighted logistic regression (NBSVM, Wang & Manning 2012, with a logistic
  loss): a linear model over which hashed unigrams and bigrams the WHOLE review contains,
  each scaled by its fixed Naive-Bayes log-count ratio r; only the weights are learnt.
  Alone it reaches ~91.8% on IMDB test; the LSTM adds word-order evidence.
- Each branch has its own loss and keeps the weights of its own best validation epoch.
  Why: trained as one summed logit, the wide branch memorises the training reviews within
  two epochs and the LSTM stops learning (88.8%, docs/benchmarks.md). The served logit is
  a * deep + b * wide + c, with (a, b, c) a logistic regression on the validation reviews.

Serving never calls Keras: at save time the weights are exported to numpy and
`SentimentModel` runs the forward pass itself (embedding@kernel tables precomputed, LSTM
gates fused into one tanh, padding steps skipped, many windows stepped together).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.checkpoints import CheckpointManager, make_keras_callback
from engine.errors import CheckpointError, InvalidInput, ModelUnavailable
from engine.imdb import load_csv, load_imdb
from engine.registry import ModelRegistry
from engine.text import OOV, Vocabulary, hashed_ngrams, ngram_ids, token_hashes, tokenize
from engine.training import TrainingResult

log = logging.getLogger(__name__)

NAME = "sentiment"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocabulary.json"
WEIGHTS_FILE = "serving.npz"
CONFIG_FILE = "config.json"
MAX_CHARS = 200_000  # longer input is refused with a message, not silently cut


@dataclass
class SentimentConfig:
    """Hyper-parameters of the default critic (all of them: nothing else is tuned)."""

    vocab_size: int = 40_000  # words the LSTM knows, including the padding and unknown ids
    ngram_buckets: int = 2**21  # hashed unigram + bigram table of the wide branch (2**22: no better)
    wide_l2: float = 2e-5  # L2 on the wide weights: liblinear's C = 1 for 22,500 reviews (1 / 2NC)
    # "nblr": the wide branch above. "fasttext": averaged n-gram vectors summed with the LSTM's
    # logit, the layout of models trained before (88.8%): such versions still load and serve.
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
    def from_dict(cls, values: dict[str, Any]) -> SentimentConfig:
        known = {f.name for f in fields(cls)}
        values = {"wide": "fasttext", **values}  # as saved before the option existed
        if "bigram_buckets" in values:  # fasttext layout's name for the n-gram table
            values.setdefault("ngram_buckets", values["bigram_buckets"])
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class Verdict:
    label: str  # "positive" or "negative"
    positive_probability: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "positive_probability": round(self.positive_probability, 6)}


# ---------------------------------------------------------------- text -> model inputs


def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidInput("a review must be text")
    if not text.strip():
        raise InvalidInput("the review is empty; give some text to judge")
    if len(text) > MAX_CHARS:
        raise InvalidInput(f"the review is too long ({len(text):,} characters; the limit is {MAX_CHARS:,})")
    return text


def encode(text: str, vocab: Vocabulary) -> np.ndarray:
    """Word ids of a review; a review with no known words is one unknown token."""
    return _at_least_one(vocab.encode(tokenize(text)))


def _at_least_one(ids: np.ndarray) -> np.ndarray:
    """The LSTM needs a token to read: an empty review is one unknown word."""
    return ids if len(ids) else np.array([OOV], dtype=np.int32)


def features(tokens: Sequence[str], vocab: Vocabulary, config: SentimentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(word ids for the LSTM, n-gram ids for the wide branch) of one tokenized review."""
    ids = vocab.encode(tokens)
    if config.wide == "fasttext":
        grams = ngram_ids(ids, config.vocab_size, config.ngram_buckets)
    else:
        hashes = vocab.hashes[ids]
        unknown = np.flatnonzero(ids == OOV)
        if len(unknown):
            hashes[unknown] = token_hashes([tokens[i] for i in unknown])
        grams = hashed_ngrams(tokens, config.ngram_buckets, hashes)
    return _at_least_one(ids), grams


def split_windows(ids: np.ndarray, window: int) -> list[np.ndarray]:
    """ceil(n / window) consecutive, nearly equal windows covering every token."""
    count = max(1, math.ceil(len(ids) / window))
    return np.array_split(ids, count) if count > 1 else [ids]


def pad_windows(windows: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Pre-padded (right-aligned) id matrix, as the LSTM reads it."""
    length = length or max(len(w) for w in windows)
    out = np.zeros((len(windows), length), dtype=np.int32)
    for row, w in enumerate(windows):
        if len(w):
            out[row, -len(w):] = w
    return out


def pad_ngrams(ngram_lists: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    """Post-padded n-gram ids (padding id 0 is masked out of the mean)."""
    width = width or max(1, max(len(g) for g in ngram_lists))
    out = np.zeros((len(ngram_lists), width), dtype=np.int32)
    for row, g in enumerate(ngram_lists):
        out[row, : len(g)] = g
    return out


# ---------------------------------------------------------------- the Keras model (training)


def build_model(config: SentimentConfig, vocab_size: int):
    """Two outputs, each with its own loss: {"deep": LSTM logit, "wide": n-gram logit}."""
    import keras
    from keras import layers

    window = keras.Input((None,), dtype="int32", name="window")
    ngrams = keras.Input((None,), dtype="int32", name="ngrams")
    x = layers.Embedding(vocab_size, config.embedding_dim, mask_zero=True, name="word_embedding")(window)
    x = layers.LSTM(config.lstm_units, name="lstm")(x)
    x = layers.Dropout(config.dropout, name="lstm_dropout")(x)
    deep = layers.Dense(1, name="deep_logit")(x)
    wide = _nb_score_layer()(config.ngram_buckets + 1, config.wide_l2, name="nb_score")(ngrams)
    model = keras.Model([window, ngrams], {"deep": deep, "wide": wide}, name="critic")
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss={"deep": loss, "wide": loss},
        metrics={name: [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)] for name in ("deep", "wide")},
    )
    return model


BRANCH_LAYERS = {"deep": ("word_embedding", "lstm", "deep_logit"), "wide": ("nb_score",)}

_NB_LAYER = None


def _nb_score_layer():
    """The wide branch's layer (defined on first use, so importing this module needs no Keras).

    logit = b + sum over the review's distinct n-grams g of w[g] * r[g], where r is the
    n-gram's Naive-Bayes log-count ratio, computed once from the training reviews and kept
    fixed. Scaling by r makes the evidence NB already sees cheap for the learnt weights;
    the L2 on w keeps rare n-grams near plain NB. Id 0 is padding and has r = 0.
    """
    global _NB_LAYER
    if _NB_LAYER is None:
        import keras
        from keras import ops

        @keras.saving.register_keras_serializable(package="playbill")
        class NBScore(keras.layers.Layer):
            def __init__(self, size: int, l2: float = 0.0, **kwargs) -> None:
                super().__init__(**kwargs)
                self.size, self.l2 = size, l2

            def build(self, input_shape) -> None:
                self.w = self.add_weight(shape=(self.size,), name="w", initializer="zeros",
                                         regularizer=keras.regularizers.L2(self.l2) if self.l2 else None)
                self.r = self.add_weight(shape=(self.size,), name="r", initializer="zeros", trainable=False)
                self.b = self.add_weight(shape=(1,), name="b", initializer="zeros")

            def call(self, ids):
                scores = ops.take(self.w, ids) * ops.take(self.r, ids)
                return ops.sum(scores, axis=1, keepdims=True) + self.b

            def get_config(self) -> dict[str, Any]:
                return {**super().get_config(), "size": self.size, "l2": self.l2}

        _NB_LAYER = NBScore
    return _NB_LAYER


def nb_log_count_ratios(grams: Sequence[np.ndarray], labels: np.ndarray, size: int, alpha: float = 1.0) -> np.ndarray:
    """r = log((p / |p|) / (q / |q|)) with p, q the smoothed document counts in positive and negative reviews."""
    positive = labels > 0.5
    empty = np.zeros(0, np.int32)
    pos = np.bincount(np.concatenate([g for g, y in zip(grams, positive) if y] or [empty]), minlength=size)
    neg = np.bincount(np.concatenate([g for g, y in zip(grams, positive) if not y] or [empty]), minlength=size)
    p, q = pos + alpha, neg + alpha
    r = np.log((p / p.sum()) / (q / q.sum()))
    r[(pos + neg) == 0] = 0.0  # never seen: no evidence either way (padding id 0 included)
    return r.astype(np.float32)


def fit_blend(deep: np.ndarray, wide: np.ndarray, labels: np.ndarray, l2: float = 1e-4) -> np.ndarray:
    """(a, b, c) of the logistic regression sigmoid(a * deep + b * wide + c) on held-out reviews.

    Three numbers fitted on thousands of reviews the branches never trained on: how much to
    trust each branch. Newton's method with step halving (a full Newton step can overshoot
    when the logits are large); a little L2 keeps it finite on separable (tiny) data.
    """
    x = np.column_stack([deep, wide, np.ones(len(deep))]).astype(np.float64)
    signs = np.where(np.asarray(labels) > 0.5, 1.0, -1.0)

    def objective(coef: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, -signs * (x @ coef))) + 0.5 * l2 * coef @ coef)

    coef = np.zeros(3)
    value = objective(coef)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ coef, -60, 60)))  # P(positive)
        grad = x.T @ (p - (signs > 0)) / len(x) + l2 * coef
        hess = (x.T * (p * (1 - p))) @ x / len(x) + l2 * np.eye(3)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6 and objective(coef - scale * step) > value:
            scale /= 2
        if scale <= 1e-6:
            break
        coef -= scale * step
        value = objective(coef)
        if np.max(np.abs(scale * step)) < 1e-9:
            break
    return coef.astype(np.float32)


def export_weights(model) -> dict[str, np.ndarray]:
    """The Keras weights the numpy forward pass needs, by name (the blend is fitted afterwards)."""
    lstm = model.get_layer("lstm")
    kernel, recurrent, bias = (np.asarray(v) for v in lstm.get_weights())
    dense_w, dense_b = (np.asarray(v) for v in model.get_layer("deep_logit").get_weights())
    nb = model.get_layer("nb_score")
    return {
        "embedding": np.asarray(model.get_layer("word_embedding").get_weights()[0]),
        "kernel": kernel,
        "recurrent": recurrent,
        "bias": bias,
        "dense_w": dense_w[:, 0],
        "dense_b": dense_b,
        "ngram_weight": np.asarray(nb.w) * np.asarray(nb.r),
        "wide_b": np.asarray(nb.b),
    }


class ReviewBatches:
    """Training batches: per-epoch seeded order and window draw, so a resume replays exactly."""

    def __init__(self, ids: list[np.ndarray], ngrams: list[np.ndarray], labels: np.ndarray, config: SentimentConfig):
        import keras

        self.windows = [split_windows(x, config.window) for x in ids]
        self.ngrams, self.labels, self.config = ngrams, labels.astype(np.float32), config
        self.epoch = 0
        # fixed batch shapes (one traced graph): the window, and the longest review's n-grams
        self.ngram_width = max(len(g) for g in ngrams)
        outer = self

        class _Batches(keras.utils.PyDataset):
            def __len__(self) -> int:
                return math.ceil(len(outer.labels) / outer.config.batch_size)

            def __getitem__(self, index: int):
                return outer.batch(outer.epoch, index)

        self.dataset = _Batches()

    def batch(self, epoch: int, index: int):
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(len(self.labels))
        pick = rng.random(len(self.labels))
        rows = order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
        chosen = [self.windows[r][int(pick[r] * len(self.windows[r]))] for r in rows]
        x = {"window": pad_windows(chosen, self.config.window),
             "ngrams": pad_ngrams([self.ngrams[r] for r in rows], self.ngram_width)}
        y = self.labels[rows]
        return x, {"deep": y, "wide": y}


# ---------------------------------------------------------------- serving (pure numpy)


def _one_blas_thread() -> None:
    """Our matrices are small: OpenBLAS threads only spin against each other (10x slower
    on a busy 2-core machine, measured). Limit BLAS to one thread for the process; best effort."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional; slower on busy machines without it
        return
    threadpool_limits(1, user_api="blas")


class SentimentModel:
    """A trained critic for serving: numpy only, read-only weights, safe to share across threads."""

    def __init__(self, weights: dict[str, np.ndarray], vocab: Vocabulary, config: SentimentConfig,
                 version: str | None = None, path: Path | None = None) -> None:
        self.vocab, self.config, self.version, self.path = vocab, config, version, path
        units = weights["recurrent"].shape[0]
        # Keras gate order is [i, f, c, o]; reorder to [i, f, o, c] and halve the sigmoid
        # gates' pre-activations, so one tanh serves all four: sigmoid(x) = 0.5 + 0.5*tanh(x/2).
        order = np.r_[0:units, units : 2 * units, 3 * units : 4 * units, 2 * units : 3 * units]
        scale = np.r_[np.full(3 * units, 0.5), np.ones(units)].astype(np.float32)
        table = (weights["embedding"] @ weights["kernel"] + weights["bias"])[:, order] * scale
        self._units = units
        self._table = np.ascontiguousarray(table, dtype=np.float32)  # id -> input part of the gates
        self._recurrent = np.ascontiguousarray(weights["recurrent"][:, order] * scale, dtype=np.float32)
        self._dense_w = weights["dense_w"].astype(np.float32)
        self._dense_b = float(np.asarray(weights["dense_b"]).reshape(-1)[0])
        self._wide_b = float(np.asarray(weights["wide_b"]).reshape(-1)[0])
        self._ngram_weight = weights["ngram_weight"].astype(np.float32)
        # served logit = a * deep + b * wide + c (models of the fasttext layout: the plain sum)
        self._blend = np.asarray(weights.get("blend", (1.0, 1.0, 0.0)), dtype=np.float64).reshape(3)
        for array in (self._table, self._recurrent, self._dense_w, self._ngram_weight):
            array.flags.writeable = False
        _one_blas_thread()

    @classmethod
    def load(cls, version_dir: Path) -> SentimentModel:
        version_dir = Path(version_dir)
        try:
            with np.load(version_dir / WEIGHTS_FILE) as data:
                weights = {k: data[k] for k in data.files}
            vocab = Vocabulary.load(version_dir / VOCAB_FILE)
            config = SentimentConfig.from_dict(json.loads((version_dir / CONFIG_FILE).read_text("utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelUnavailable(f"the sentiment model at {version_dir} is incomplete or corrupt ({exc}); train a new one") from None
        return cls(weights, vocab, config, version=version_dir.name, path=version_dir)

    @classmethod
    def load_current(cls, home: Path) -> SentimentModel:
        return cls.load(ModelRegistry(Path(home) / "models", NAME).current().path)

    def predict_one(self, text: str) -> Verdict:
        return self.predict([text])[0]

    def predict(self, texts: Iterable[str]) -> list[Verdict]:
        """Verdicts for many reviews at once (batched: much faster per review than one by one)."""
        logits = self.logits([check_text(t) for t in texts])
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
        units, table, recurrent = self._units, self._table, self._recurrent
        h = np.zeros((n, units), dtype=np.float32)
        c = np.zeros((n, units), dtype=np.float32)
        for t in range(steps):
            k = active[t]
            z = table[padded[:k, t]]
            z += h[:k] @ recurrent
            np.tanh(z, out=z)
            gates = z[:, : 3 * units]
            gates *= 0.5
            gates += 0.5
            ck = c[:k]
            ck *= z[:, units : 2 * units]
            ck += z[:, :units] * z[:, 3 * units :]
            np.tanh(ck, out=h[:k])
            h[:k] *= z[:, 2 * units : 3 * units]
        return h @ self._dense_w + self._dense_b


# ---------------------------------------------------------------- data


def _training_reviews(data_dir: Path, data: Path | None, extra_examples: Sequence[tuple[str, int]],
                      config: SentimentConfig) -> tuple[list[str], list[int], list[str], list[int], str]:
    """(train texts, labels, validation texts, labels, data fingerprint); validation from training data only."""
    reviews = load_csv(Path(data)) if data is not None else load_imdb(Path(data_dir), "train")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(reviews))
    if config.max_train_reviews:
        order = order[: config.max_train_reviews]
    n_val = max(1, int(round(len(order) * config.validation_fraction)))
    if len(order) - n_val < 2:
        raise InvalidInput(f"{reviews.source} has too few reviews to train on ({len(reviews)})")
    val_rows, train_rows = order[:n_val], order[n_val:]
    train_texts = [reviews.texts[i] for i in train_rows]
    train_labels = [reviews.labels[i] for i in train_rows]
    extras = [(t, int(y)) for t, y in extra_examples if isinstance(t, str) and t.strip() and y in (0, 1)]
    if len(extras) < len(extra_examples):
        log.warning("ignored %d extra examples that were not (text, 0 or 1) pairs", len(extra_examples) - len(extras))
    train_texts += [t for t, _ in extras]
    train_labels += [y for _, y in extras]
    digest = hashlib.sha256(reviews.fingerprint.encode())
    for text, label in extras:
        digest.update(f"{label}\t{text}\n".encode())
    fingerprint = f"{reviews.fingerprint}+{len(extras)}extra:{digest.hexdigest()[:8]}" if extras else reviews.fingerprint
    return (train_texts, train_labels, [reviews.texts[i] for i in val_rows],
            [reviews.labels[i] for i in val_rows], fingerprint)


def _hit_rate(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of reviews whose logit has the label's sign (accuracy at probability 0.5)."""
    return float(np.mean((logits >= 0) == (labels > 0)))


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    # log(1 + exp(-y*z)) with y in {-1, +1}, computed stably
    signed = np.where(labels > 0, logits, -logits).astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, -signed)))


# ---------------------------------------------------------------- training


def train_sentiment(config: SentimentConfig, home: Path, data_dir: Path, *, epochs: int | None = None,
                    resume: bool = False, checkpoint: str | Path | None = None, data: Path | None = None,
                    extra_examples: Sequence[tuple[str, int]] = (), promote: bool = True, progress: bool = True,
                    evaluate_test: bool = True, keep_runs: int | None = 2) -> TrainingResult:
    """Train (or continue) the critic; publish a new registry version; return its metrics.

    `epochs` is how many epochs to run now (the epoch counter continues across resumes);
    None: `config.epochs`, or on a resume what is left of it (at least one).
    `resume` continues the latest valid checkpoint, `checkpoint` a chosen one; the
    vocabulary is taken from that checkpoint's run so the ids keep their meaning.
    Test accuracy (all 25,000 IMDB test reviews) is measured when training on IMDB.
    `keep_runs` bounds disk use (each epoch's checkpoint holds the optimizer state): the
    newest that many checkpoint runs are kept; None keeps all (the nightly job prunes itself).
    """
    import keras

    started = time.perf_counter()
    home, data_dir = Path(home), Path(data_dir)
    manager = CheckpointManager(home / "checkpoints", NAME)
    start = None
    if checkpoint is not None:
        start = manager.resolve(checkpoint)
    elif resume:
        start = manager.latest_valid()
        if start is None:
            log.info("no valid sentiment checkpoint to resume; starting from scratch")
    if start is not None:
        saved = start.extra.get("config")
        if saved:  # the architecture must match the checkpoint's
            config = replace(SentimentConfig.from_dict(saved), epochs=config.epochs, patience=config.patience,
                             max_train_reviews=config.max_train_reviews)
        if config.wide != "nblr":
            raise CheckpointError(f"checkpoint {start.label()} has the older {config.wide!r} layout, which this "
                                  "version only serves; train from scratch")

    train_texts, train_labels, val_texts, val_labels, fingerprint = _training_reviews(data_dir, data, extra_examples, config)
    train_tokens = [tokenize(t) for t in train_texts]
    if start is not None:
        vocab_path = start.path.parent / VOCAB_FILE
        if not vocab_path.is_file():
            raise CheckpointError(f"checkpoint {start.label()} has no {VOCAB_FILE} beside it; start from scratch")
        vocab = Vocabulary.load(vocab_path)
    else:
        vocab = Vocabulary.build(train_tokens, config.vocab_size)
    train_ids, train_grams = zip(*(features(t, vocab, config) for t in train_tokens))
    val_features = [features(tokenize(t), vocab, config) for t in val_texts]
    vocab_size = config.vocab_size  # fixed table size, even if the data has fewer words
    labels = np.asarray(train_labels, dtype=np.float32)
    val_y = np.asarray(val_labels, dtype=np.float32)

    keras.utils.set_random_seed(config.seed)
    if start is not None:
        try:
            _nb_score_layer()  # registered before Keras reads a checkpoint that uses it
            model = keras.models.load_model(start.path)
        except Exception as exc:  # a checkpoint that Keras cannot read
            raise CheckpointError(f"cannot load checkpoint {start.label()}: {exc}") from None
        initial_epoch = start.epoch
    else:
        model = build_model(config, vocab_size)
        model.get_layer("nb_score").r.assign(nb_log_count_ratios(train_grams, labels, config.ngram_buckets + 1))
        initial_epoch = 0
    if epochs is None:
        epochs = max(1, config.epochs - initial_epoch) if start is not None else config.epochs

    run = manager.new_run()
    vocab.save(manager.root / run / VOCAB_FILE)
    batches = ReviewBatches(list(train_ids), list(train_grams), labels, config)
    batches.epoch = initial_epoch  # Keras peeks at the first batches before the first on_epoch_begin

    class ServingValidation(keras.callbacks.Callback):
        """Validation through the serving path (all windows); each branch keeps its best epoch.

        Early stopping: when neither branch's validation loss has improved for `patience` epochs.
        """

        def __init__(self) -> None:
            super().__init__()
            self.best = {branch: {"loss": math.inf, "epoch": initial_epoch, "weights": None}
                         for branch in BRANCH_LAYERS}
            self.history: list[dict[str, float]] = []

        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            batches.epoch = epoch

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            serving = SentimentModel(export_weights(self.model), vocab, config)
            logits = dict(zip(("deep", "wide"), serving.branch_logits(val_features)))
            a, b, c = fit_blend(logits["deep"], logits["wide"], val_y)
            blended = a * logits["deep"] + b * logits["wide"] + c
            row = {"epoch": epoch + 1, "loss": float((logs or {}).get("loss", math.nan)),
                   "val_loss": _log_loss(blended, val_y), "val_accuracy": _hit_rate(blended, val_y)}
            for branch, layer_names in BRANCH_LAYERS.items():
                loss = row[f"{branch}_val_loss"] = _log_loss(logits[branch], val_y)
                row[f"{branch}_val_accuracy"] = _hit_rate(logits[branch], val_y)
                if loss < self.best[branch]["loss"]:
                    weights = [self.model.get_layer(name).get_weights() for name in layer_names]
                    self.best[branch] = {"loss": loss, "epoch": epoch + 1, "weights": weights}
            if logs is not None:
                logs.update(val_loss=row["val_loss"], val_accuracy=row["val_accuracy"])
            self.history.append(row)
            if epoch + 1 - max(best["epoch"] for best in self.best.values()) > config.patience:
                self.model.stop_training = True

        def restore_best(self) -> None:
            for branch, layer_names in BRANCH_LAYERS.items():
                if self.best[branch]["weights"] is not None:
                    for name, weights in zip(layer_names, self.best[branch]["weights"]):
                        self.model.get_layer(name).set_weights(weights)

    validation = ServingValidation()
    callbacks = [validation, make_keras_callback(manager, run, config=asdict(config), data=fingerprint)]
    verbose = (1 if _is_tty() else 2) if progress else 0
    fit_started = time.perf_counter()
    model.fit(batches.dataset, epochs=initial_epoch + epochs, initial_epoch=initial_epoch,
              callbacks=callbacks, verbose=verbose, shuffle=False)  # our own seeded order per epoch
    train_seconds = time.perf_counter() - fit_started
    last_epoch = validation.history[-1]["epoch"] if validation.history else initial_epoch
    validation.restore_best()

    weights = export_weights(model)
    deep, wide = SentimentModel(weights, vocab, config).branch_logits(val_features)
    weights["blend"] = blend = fit_blend(deep, wide, val_y)
    serving = SentimentModel(weights, vocab, config)
    val_logits = serving.logits_from_features(val_features)
    metrics: dict[str, float] = {"val_loss": _log_loss(val_logits, val_y), "val_accuracy": _hit_rate(val_logits, val_y)}
    best_epoch = {branch: best["epoch"] for branch, best in validation.best.items()}
    if data is None and evaluate_test:
        test = load_imdb(data_dir, "test")
        metrics["test_accuracy"] = _accuracy(serving, test.texts, test.labels)
        metrics["test_n"] = len(test)

    registry = ModelRegistry(home / "models", NAME)
    meta = {
        "metrics": metrics,
        "config": asdict(config),
        "data_fingerprint": fingerprint,
        "data_source": "IMDB train" if data is None else f"CSV {Path(data).name}",
        "train_reviews": len(train_texts),
        "validation_reviews": len(val_texts),
        "extra_examples": len(extra_examples),
        "epochs_run": len(validation.history),
        "last_epoch": last_epoch,
        "best_epoch": best_epoch,
        "blend": dict(zip(("deep", "wide", "bias"), blend.tolist())),
        "history": validation.history,
        "training_seconds": round(train_seconds, 1),
        "started_from": start.label() if start else None,
        "checkpoint_run": run,
    }
    with registry.new_version(meta) as staged:
        model.save(staged.path / MODEL_FILE)
        vocab.save(staged.path / VOCAB_FILE)
        np.savez(staged.path / WEIGHTS_FILE, **weights)
        (staged.path / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2), "utf-8")
    if promote:
        registry.promote(staged.version, reason="train_sentiment")
    if keep_runs:
        manager.prune_runs(keep_runs)
    return TrainingResult(
        model=NAME, version=staged.version, metrics=metrics, epochs_run=len(validation.history),
        last_epoch=last_epoch, started_from=start.label() if start else None, promoted=promote,
        seconds=time.perf_counter() - started,
        extra={"checkpoint_run": run, "best_epoch": best_epoch, "training_seconds": train_seconds,
               "history": validation.history},
    )


def _is_tty() -> bool:
    import sys

    return sys.stdout.isatty()


def _accuracy(model: SentimentModel, texts: Sequence[str], labels: Sequence[int], batch: int = 2048) -> float:
    correct = 0
    for start in range(0, len(texts), batch):
        logits = model.logits(texts[start : start + batch])
        correct += int(np.sum((logits >= 0) == (np.asarray(labels[start : start + batch]) > 0)))
    return correct / len(texts)


def evaluate_sentiment(home: Path, data_dir: Path, *, version: str | None = None, data: Path | None = None) -> dict:
    """Accuracy of a version (default: the current one) on all IMDB test reviews or a labelled CSV."""
    registry = ModelRegistry(Path(home) / "models", NAME)
    chosen = registry.get(version) if version else registry.current()
    model = SentimentModel.load(chosen.path)
    reviews = load_csv(Path(data)) if data is not None else load_imdb(Path(data_dir), "test")
    texts = [t[:MAX_CHARS] for t in reviews.texts]
    return {"accuracy": _accuracy(model, texts, reviews.labels), "n": len(reviews), "model_version": chosen.version}
