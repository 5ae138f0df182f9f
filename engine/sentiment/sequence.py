"""The critic's word-order member: the seed's LSTM over words, beside the linear views.

The linear views read a review as a bag of n-grams; this member reads it in order, the way the
seed's course model did. It shares the views' tokens (`engine.sentiment.linear.read`: words,
"!", "?" and the punctuation that ends a clause, as vocabulary ids), so a batch is tokenized
once for every member. Ids past `sequence_vocab` (the vocabulary is ordered by frequency)
read as unknown: a small vocabulary keeps it from learning the names of the training
reviews' films and actors, which validation shares with training and the world does not.

Training (Keras): Embedding + LSTM + Dense over `sequence_window`-token windows, on the
training reviews' sentences (each labelled by its review) and one window of each review drawn
at random, `sequence_epochs` passes; what the world writes on Discord is one line, and IMDB
offers a quarter of a million of them.

Serving (numpy, `engine.lstm.WindowLSTM`): a review of at most `sequence_window` tokens is
read whole; a longer one through its first and its last window (openings and verdicts carry
the sentiment: reading every window was no better in the blend on validation and costs ~2.5x,
docs/benchmarks.md "## Critic"), and its logit is the mean of the two. Every window of a batch is stepped
together. The blend weighs this member against the views on IMDB validation.
"""

from __future__ import annotations

import numpy as np

from playbill.engine.lstm import WindowLSTM
from playbill.engine.sentiment.config import SentimentConfig
from playbill.engine.text import OOV

NAME = "lstm"  # its name among the blend's members (per_model, the stored arrays' prefix)


def capped(ids: np.ndarray, vocab: int) -> np.ndarray:
    """Ids the member knows: the `vocab` most frequent tokens; the rest read as unknown."""
    return np.where(ids < vocab, ids, OOV)


def review_windows(ids: np.ndarray, row: np.ndarray, count: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(pre-padded windows [n, window], the review of each window) for a batch read end to end:
    one window for a review of at most `window` tokens (an empty review: one unknown token),
    its first and its last `window` tokens for a longer one. Vectorised: no loop over reviews."""
    bounds = np.searchsorted(row, np.arange(count + 1))
    lengths = np.diff(bounds)
    long = lengths > window
    owner = np.concatenate([np.arange(count), np.flatnonzero(long)])
    begin = np.concatenate([bounds[:-1], bounds[1:][long] - window])
    size = np.concatenate([np.minimum(lengths, window), np.full(int(long.sum()), window)])
    return windows_at(ids, begin, size, window), owner


def windows_at(ids: np.ndarray, begin: np.ndarray, size: np.ndarray, window: int) -> np.ndarray:
    """Rows of `size` ids from `begin`, pre-padded to `window` columns (the LSTM's last step is a
    window's last token); an empty row holds one unknown token."""
    offset = np.arange(window) - (window - size)[:, None]
    taken = ids[np.clip(begin[:, None] + offset, 0, len(ids) - 1)] if len(ids) else np.zeros(offset.shape, np.int64)
    padded = np.where(offset >= 0, taken, 0).astype(np.int32)
    padded[size == 0, -1] = OOV
    return padded


class SequenceMember:
    """The served member: logit of each review of a batch, from the tokens `read` gave."""

    def __init__(self, weights: dict[str, np.ndarray], config: SentimentConfig) -> None:
        self.config = config
        self.lstm = WindowLSTM.from_arrays(weights, f"{NAME}_")

    def logits(self, ids: np.ndarray, row: np.ndarray, count: int) -> np.ndarray:
        windows, owner = review_windows(capped(ids, self.config.sequence_vocab), row, count,
                                        self.config.sequence_window)
        z = self.lstm.logits(windows)
        return np.bincount(owner, weights=z, minlength=count) / np.bincount(owner, minlength=count)

    def tables(self) -> list[np.ndarray]:
        return self.lstm.tables()


def fit_sequence(reviews: tuple[np.ndarray, np.ndarray], sentences: tuple[np.ndarray, np.ndarray],
                 labels: np.ndarray, sentence_labels: np.ndarray, config: SentimentConfig,
                 progress: bool = False) -> dict[str, np.ndarray]:
    """Train the member with Keras on (ids, row) of the training reviews and of their sentences
    (`linear.read`); the arrays `SequenceMember` serves."""
    import keras
    from keras import layers

    window, vocab = config.sequence_window, config.sequence_vocab
    rng = np.random.default_rng(config.seed)
    n_reviews, n_sentences = len(labels), len(sentence_labels)
    ids, row = capped(reviews[0], vocab), reviews[1]
    # one window of each review, drawn at random (the sentences cover the rest of its text)
    bounds = np.searchsorted(row, np.arange(n_reviews + 1))
    lengths = np.diff(bounds)
    shift = (rng.random(n_reviews) * np.maximum(lengths - window + 1, 1)).astype(np.int64)
    x_reviews = windows_at(ids, bounds[:-1] + shift, np.minimum(lengths, window), window)
    # each sentence's last `window` tokens (nearly all are shorter)
    bounds = np.searchsorted(sentences[1], np.arange(n_sentences + 1))
    size = np.minimum(np.diff(bounds), window)
    x_sentences = windows_at(capped(sentences[0], vocab), bounds[1:] - size, size, window)
    x = np.concatenate([x_sentences, x_reviews])
    y = np.concatenate([sentence_labels, labels]).astype(np.float32)

    keras.utils.set_random_seed(config.seed)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    h = layers.Embedding(vocab, config.embedding_dim, mask_zero=True, name="embedding")(tokens)
    h = layers.LSTM(config.sequence_units, name="lstm")(h)
    h = layers.Dropout(config.sequence_dropout, name="dropout")(h)
    logit = layers.Dense(1, name="logit")(h)
    model = keras.Model(tokens, logit, name="critic_sequence")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=config.sequence_batch_size, epochs=config.sequence_epochs, shuffle=True,
              verbose=2 if progress else 0)
    kernel, recurrent, bias = (np.asarray(v, np.float32) for v in model.get_layer("lstm").get_weights())
    dense_w, dense_b = (np.asarray(v, np.float32) for v in model.get_layer("logit").get_weights())
    embedding = np.asarray(model.get_layer("embedding").get_weights()[0], np.float32)
    arrays = dict(zip(WindowLSTM.ARRAYS, (embedding, kernel, recurrent, bias, dense_w.reshape(-1), dense_b.reshape(-1))))
    return {f"{NAME}_{key}": value for key, value in arrays.items()}
