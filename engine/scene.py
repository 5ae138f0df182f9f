"""The playwright: a character-level LSTM that learns a play corpus and writes scenes.

Training is the TensorFlow text-generation tutorial's model (Embedding -> LSTM -> Dense
over characters, 100-character sequences, targets shifted by one) with checkpoints every
epoch, resume, held-out validation and a CPU-sized default profile. Generation never
touches Keras: the weights are exported at save time and run by `engine.sampler`.

Importing this module does not import TensorFlow; only `train_scene` does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engine.checkpoints import Checkpoint, CheckpointManager
from engine.datasets import SHAKESPEARE, fingerprint, locate
from engine.errors import CheckpointError, DataUnavailable, InvalidInput, ModelUnavailable
from engine.registry import ModelRegistry
from engine.sampler import (
    NumpyLSTM,
    State,
    compare_teacher_forced,
    export_weights,
    prime_batch,
    sample,
    teacher_forced_loss,
)
from engine.training import TrainingResult

log = logging.getLogger(__name__)

MODEL_NAME = "scene"
VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_FILE = "sampler.npz"
KERAS_FILE = "model.keras"
MAX_PROMPT_CHARS = 10_000
MAX_TEMPERATURE = 5.0
# How generation steps the model: "float32" (numpy, the reference), "int8" (LiteRT, int8
# weights) or "auto": int8 for batches of at least AUTO_INT8_MIN_BATCH streams where the int8
# step can be had, else float32. Measured (docs/benchmarks.md "## Scene"): int8 is ~4x faster
# for 8 streams and ~2x for one, so "auto" currently means int8 whenever it is available.
BACKENDS = ("auto", "float32", "int8")
AUTO_INT8_MIN_BATCH = 1


@dataclass(frozen=True)
class SceneConfig:
    """Hyper-parameters of one scene model: the size, the regularisation and the schedule."""

    name: str = "custom"
    embedding_dim: int = 256
    rnn_units: int = 512
    rnn_layers: int = 1
    dropout: float = 0.0  # on the embedding output and every LSTM's outputs (cheap on CPU)
    seq_length: int = 100
    batch_size: int = 64
    learning_rate: float = 2e-3
    final_lr_fraction: float = 1.0  # cosine decay to lr * this over `epochs`; 1.0: constant
    clipnorm: float | None = 1.0
    epochs: int = 10  # the profile's budget when a run does not say
    validation_fraction: float = 0.1
    seed: int = 1337

    def with_overrides(self, **changes: Any) -> SceneConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PROFILES: dict[str, SceneConfig] = {
    # The tutorial's model, for comparison and the sampler benchmark (5.3 M parameters).
    "tutorial": SceneConfig(
        name="tutorial", embedding_dim=256, rnn_units=1024, learning_rate=1e-3, clipnorm=None, epochs=20
    ),
    # Chosen by measurement for <= 60 min on 2 CPU cores: see docs/benchmarks.md "## Scene".
    "default": SceneConfig(
        name="default",
        embedding_dim=256,
        rnn_units=512,
        rnn_layers=1,
        dropout=0.25,
        batch_size=64,
        learning_rate=3e-3,
        final_lr_fraction=0.05,
        epochs=36,
    ),
}


def get_profile(name: str | None) -> SceneConfig:
    name = name or "default"
    if name not in PROFILES:
        raise InvalidInput(f"unknown scene profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


# ---------------------------------------------------------------------------- corpus


class Vocabulary:
    """The characters a model knows, in a fixed order (ids are positions)."""

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` this vocabulary lacks, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode(self, text: str) -> np.ndarray:
        missing = self.unknown(text)
        if missing:
            raise InvalidInput(_unknown_message(missing))
        return np.fromiter((self.index[ch] for ch in text), dtype=np.int32, count=len(text))

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"chars": self.chars}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(path.read_text("utf-8"))["chars"])


def _show_char(ch: str) -> str:
    """A character as a person can read it: quoted, or its code point when invisible."""
    import unicodedata

    return f"U+{ord(ch):04X}" if unicodedata.category(ch)[0] in "MCZ" else repr(ch)


def _unknown_message(missing: list[str]) -> str:
    shown = ", ".join(_show_char(ch) for ch in missing[:20])
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    return f"the playwright has never seen these characters: {shown}{more}; leave them out and try again"


def read_corpus(path: Path) -> str:
    """A UTF-8 text file's contents; anything else is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise DataUnavailable(f"corpus file {path} does not exist")
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise InvalidInput(
            f"corpus {path} is not UTF-8 text (it has NUL bytes: a binary file, or UTF-16); give a UTF-8 text file"
        )
    try:
        return raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"corpus {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None


def corpus_path(data_dir: Path, corpus: Path | str | None) -> Path:
    return Path(corpus) if corpus is not None else locate(SHAKESPEARE, Path(data_dir))


@dataclass
class Corpus:
    """The text split once: the training part (plus extra texts) and the held-out last block."""

    train: str
    validation: str
    source: str
    fingerprint: str

    @classmethod
    def load(cls, path: Path, validation_fraction: float, seq_length: int, extra_texts: Sequence[str] = ()) -> Corpus:
        text = read_corpus(path)
        need = int(np.ceil((seq_length + 1) / validation_fraction)) + 1
        if len(text) < need:
            raise InvalidInput(
                f"corpus {path} is too short: {len(text)} characters; it needs at least {need} "
                f"(one {seq_length + 1}-character sequence in the held-out last {validation_fraction:.0%})"
            )
        split = int(len(text) * (1 - validation_fraction))
        train, validation = text[:split], text[split:]
        extras = [t for t in (str(x).strip() for x in extra_texts) if t]
        known = set(text)
        if extras:  # extra texts go into training only, so validation stays comparable across versions
            cleaned = ["".join(ch for ch in t if ch in known) for t in extras]
            dropped = sum(len(a) - len(b) for a, b in zip(extras, cleaned, strict=True))
            if dropped:
                log.info("dropped %d characters of the extra texts that the corpus does not use", dropped)
            train = train + "\n\n" + "\n\n".join(t for t in cleaned if t) + "\n"
        digest = fingerprint(Path(path))
        if extras:
            import hashlib

            digest += "+" + hashlib.sha256("\x00".join(extras).encode()).hexdigest()[:8]
        return cls(train=train, validation=validation, source=str(path), fingerprint=digest)

    def vocabulary(self) -> Vocabulary:
        return Vocabulary.from_text(self.train + self.validation)


def validation_arrays(ids: np.ndarray, seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, target) sequences covering the held-out block."""
    n = (len(ids) - 1) // seq_length
    x = ids[: n * seq_length].reshape(n, seq_length)
    y = ids[1 : n * seq_length + 1].reshape(n, seq_length)
    return x, y


def epoch_arrays(ids: np.ndarray, config: SceneConfig, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's training sequences: a start offset and an order both seeded by the epoch.

    The same epoch always gets the same data, so a resumed run sees exactly what a run
    straight through would have; the shifting offset shows the model new sequence cuts.
    """
    rng = np.random.default_rng([config.seed, epoch])
    span = config.seq_length + 1
    offset = int(rng.integers(0, config.seq_length)) if len(ids) > 2 * span else 0
    n = (len(ids) - offset - 1) // config.seq_length
    starts = offset + np.arange(n) * config.seq_length
    starts = starts[starts + span <= len(ids)]
    rng.shuffle(starts)
    usable = (len(starts) // config.batch_size) * config.batch_size or len(starts)
    starts = starts[:usable]
    window = starts[:, None] + np.arange(span)[None, :]
    chunks = ids[window]
    return chunks[:, :-1], chunks[:, 1:]


# ---------------------------------------------------------------------------- model


def build_model(config: SceneConfig, vocab_size: int, steps_per_epoch: int):
    """Embedding -> [Dropout] -> LSTM x layers (each + Dropout) -> Dense logits, compiled."""
    import keras

    inputs = keras.Input(shape=(None,), dtype="int32", name="chars")
    x = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(inputs)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, seed=config.seed)(x)
    for n in range(config.rnn_layers):
        x = keras.layers.LSTM(config.rnn_units, return_sequences=True, name=f"lstm{n}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, seed=config.seed + n + 1)(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    model = keras.Model(inputs, logits, name=f"scene_{config.name}")
    lr: Any = config.learning_rate
    if config.final_lr_fraction < 1.0:
        lr = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=config.final_lr_fraction
        )
    optimizer = keras.optimizers.Adam(learning_rate=lr, clipnorm=config.clipnorm)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _config_from_dict(data: dict[str, Any]) -> SceneConfig:
    known = {f for f in SceneConfig.__dataclass_fields__}
    return SceneConfig(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------------------- training


def train_scene(
    config: SceneConfig | None,
    home: Path,
    data_dir: Path,
    *,
    profile: str | None = None,
    epochs: int | None = None,
    resume: bool = False,
    checkpoint: str | Path | None = None,
    corpus: str | Path | None = None,
    extra_texts: Sequence[str] = (),
    promote: bool = True,
    progress: bool = True,
    keep_runs: int | None = None,
) -> TrainingResult:
    """Train (or continue) a scene model and publish it as a new registry version.

    `config` wins; else the named `profile` ("default" when neither). `epochs` is how many
    epochs this call runs (default: the profile's budget, minus epochs already done when
    resuming). Resuming (`resume=True`: the latest valid checkpoint; `checkpoint=`: a chosen
    one) restores the weights, the optimizer state, the config and the vocabulary, and the
    epoch counter continues. `extra_texts` (e.g. the nightly job's user texts) are appended
    to the training part only, keeping the held-out block comparable between versions;
    characters the corpus does not use are dropped from them.
    """
    import keras

    started = time.monotonic()
    home = Path(home)
    manager = CheckpointManager(home / "checkpoints", MODEL_NAME)
    start: Checkpoint | None = None
    if checkpoint is not None:
        start = manager.resolve(checkpoint)
    elif resume:
        start = manager.latest_valid()
        if start is None:
            raise CheckpointError("there is no valid scene checkpoint to resume from; train without --resume first")

    if start is not None:
        config = _config_from_dict(start.extra.get("config", {}))
        vocabulary = Vocabulary(start.extra["vocabulary"])
        source = corpus if corpus is not None else start.extra.get("corpus_source")
        if source == "shakespeare":
            source = None
    else:
        config = config or get_profile(profile)
        vocabulary = None
        source = corpus
    path = corpus_path(data_dir, source)
    text = Corpus.load(path, config.validation_fraction, config.seq_length, extra_texts)
    if vocabulary is None:
        vocabulary = text.vocabulary()
    else:
        missing = vocabulary.unknown(text.train + text.validation)
        if missing:
            raise InvalidInput(
                f"the checkpoint's vocabulary lacks characters of corpus {path}: "
                + ", ".join(_show_char(c) for c in missing[:20])
                + "; train a new model on this corpus instead of resuming"
            )
    train_ids = vocabulary.encode(text.train)
    val_x, val_y = validation_arrays(vocabulary.encode(text.validation), config.seq_length)
    steps_per_epoch = len(epoch_arrays(train_ids, config, 1)[0]) // config.batch_size

    keras.utils.set_random_seed(config.seed)
    if start is not None:
        try:
            model = keras.models.load_model(start.path)
        except Exception as exc:  # a file that passed its checksum but Keras cannot read
            raise CheckpointError(f"checkpoint {start.label()} cannot be loaded ({exc}); choose another") from None
        first_epoch = start.epoch + 1
    else:
        model = build_model(config, len(vocabulary), steps_per_epoch)
        first_epoch = 1
    if epochs is None:
        epochs = max(1, config.epochs - (first_epoch - 1))
    if epochs < 1:
        raise InvalidInput("epochs must be at least 1")

    run = manager.new_run()
    source_label = "shakespeare" if source is None else str(path)
    extra = {"config": asdict(config), "vocabulary": vocabulary.chars, "corpus_source": source_label,
             "corpus_fingerprint": text.fingerprint}
    history: list[dict[str, float]] = []
    last_epoch = first_epoch - 1
    for epoch in range(first_epoch, first_epoch + epochs):
        x, y = epoch_arrays(train_ids, config, epoch)
        if progress:
            print(f"epoch {epoch} (run {run}, {len(x)} sequences)", flush=True)
        t0, cpu0 = time.monotonic(), time.process_time()
        fit = model.fit(
            x, y, batch_size=config.batch_size, epochs=1, shuffle=False,
            validation_data=(val_x, val_y), validation_batch_size=256, verbose=1 if progress else 0,
        )
        metrics = {k: float(v[-1]) for k, v in fit.history.items()}
        metrics["epoch_seconds"] = time.monotonic() - t0
        metrics["epoch_cpu_seconds"] = time.process_time() - cpu0  # all of this process's threads
        history.append({"epoch": epoch, **metrics})
        manager.save(model, run, epoch, metrics, **extra)
        last_epoch = epoch
        log.info("scene epoch %d: %s", epoch, metrics)
    if keep_runs:
        manager.prune_runs(keep_runs)

    arrays = export_weights(model)
    val_loss = NumpyLSTM.from_arrays(arrays).teacher_forced_loss(val_x, val_y)
    metrics = {"val_loss": val_loss, "bits_per_char": val_loss / np.log(2), "train_loss": history[-1].get("loss", float("nan"))}
    registry = ModelRegistry(home / "models", MODEL_NAME)
    metadata = {
        "metrics": metrics,
        "profile": config.name,
        "config": asdict(config),
        "corpus": {"source": source_label, "fingerprint": text.fingerprint, "chars": len(text.train) + len(text.validation)},
        "epochs": last_epoch,
        "history": history,
        "started_from": start.label() if start else None,
        "checkpoint_run": run,
    }
    with registry.new_version(metadata) as staged:
        np.savez(staged.path / WEIGHTS_FILE, **arrays)
        vocabulary.save(staged.path / VOCABULARY_FILE)
        model.save(staged.path / KERAS_FILE)
        _cache_int8_step(staged.path, arrays)
    if promote:
        registry.promote(staged.version)
    return TrainingResult(
        model=MODEL_NAME,
        version=staged.version,
        metrics=metrics,
        epochs_run=epochs,
        last_epoch=last_epoch,
        started_from=start.label() if start else None,
        promoted=promote,
        seconds=time.monotonic() - started,
        extra={"profile": config.name, "run": run, "history": history},
    )


def _cache_int8_step(version_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    """Convert the int8 step now, while TensorFlow is loaded, so that loading never has to."""
    from engine import quantized

    try:
        quantized.write_cache(version_dir, quantized.convert(arrays),
                              quantized.weights_digest(version_dir / WEIGHTS_FILE))
    except Exception as exc:  # the float32 sampler still works; loading retries the conversion
        log.warning("could not build the int8 scene step (%s: %s); it is converted at first load",
                    type(exc).__name__, exc)


# ---------------------------------------------------------------------------- generation


@dataclass
class _Options:
    length: int
    temperature: float
    top_k: int | None
    stop_at_boundary: bool


class SceneWriter:
    """A trained scene model ready to write: no TensorFlow, thread-safe.

    `net` is the float32 numpy sampler (the reference); `single_net` (one stream) and
    `net_for(B)` (B streams) are what generation runs on, chosen by the backend (see BACKENDS).
    """

    def __init__(self, net: NumpyLSTM, vocabulary: Vocabulary, version: str | None = None,
                 metadata: dict[str, Any] | None = None, max_length: int = 10_000, *,
                 int8_net: Any = None, backend: str = "float32") -> None:
        backend = check_backend(backend)
        if backend != "float32" and int8_net is None:
            raise InvalidInput(f"the {backend!r} scene backend needs the int8 step (int8_net)")
        self.net = net
        self.int8_net = int8_net
        self.backend = backend
        self.single_net = self.net_for(1)
        self._vocabulary = vocabulary
        self.version = version
        self.metadata = metadata or {}
        self.max_length = max_length

    @classmethod
    def load(cls, version_dir: Path, *, max_length: int = 10_000, backend: str = "auto",
             int8_threads: int = 0) -> SceneWriter:
        """The version in `version_dir`. If the int8 step cannot be had (LiteRT missing, conversion
        failing), "auto" and "int8" fall back to float32 with a warning: `writer.backend` says
        what is used. `int8_threads` 0: one interpreter thread for small models, two for large."""
        backend = check_backend(backend)
        version_dir = Path(version_dir)
        try:
            with np.load(version_dir / WEIGHTS_FILE) as data:
                arrays = {k: data[k] for k in data.files}
            vocabulary = Vocabulary.load(version_dir / VOCABULARY_FILE)
            metadata_file = version_dir / "metadata.json"
            metadata = json.loads(metadata_file.read_text("utf-8")) if metadata_file.is_file() else {}
            net = NumpyLSTM.from_arrays(arrays)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelUnavailable(f"the scene model in {version_dir} cannot be read ({exc}); retrain or roll back") from None
        int8_net = None
        if backend != "float32":
            from engine import quantized

            try:
                int8_net = quantized.load_or_build(version_dir, version_dir / WEIGHTS_FILE, arrays, int8_threads)
            except quantized.QuantizedUnavailable as exc:
                log.warning("scene backend %r unavailable, using float32: %s", backend, exc)
                backend = "float32"
        return cls(net, vocabulary, metadata.get("version", version_dir.name), metadata, max_length,
                   int8_net=int8_net, backend=backend)

    def net_for(self, batch: int):
        """The stepper for `batch` streams at once under this writer's backend."""
        if self.backend == "int8" or (self.backend == "auto" and batch >= AUTO_INT8_MIN_BATCH):
            return self.int8_net
        return self.net

    @classmethod
    def load_current(cls, home: Path, **kwargs: Any) -> SceneWriter:
        return cls.load(ModelRegistry(Path(home) / "models", MODEL_NAME).current().path, **kwargs)

    @property
    def vocabulary(self) -> list[str]:
        return list(self._vocabulary.chars)

    def unknown_characters(self, text: str) -> list[str]:
        return self._vocabulary.unknown(text)

    # -- checks
    def _check(self, prompt: str, length: int, temperature: float, top_k: int | None, stop: bool) -> _Options:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("the prompt is empty: give the playwright a few opening words")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"the prompt is too long ({len(prompt)} characters; at most {MAX_PROMPT_CHARS})")
        missing = self._vocabulary.unknown(prompt)
        if missing:
            raise InvalidInput(_unknown_message(missing))
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 1 <= length <= self.max_length:
            raise InvalidInput(f"length must be a whole number from 1 to {self.max_length}")
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise InvalidInput("temperature must be a number above 0") from None
        if not 0.0 < temperature <= MAX_TEMPERATURE or not np.isfinite(temperature):
            raise InvalidInput(f"temperature must be above 0 and at most {MAX_TEMPERATURE} (0.5 is careful, 1.0 is wild)")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise InvalidInput("top-k must be a whole number of at least 1 (or left out)")
        return _Options(int(length), temperature, None if top_k is None else int(top_k), bool(stop))

    def _prime(self, prompt: str) -> State:
        state = self.single_net.new_state(1)
        for i in self._vocabulary.encode(prompt):
            self.single_net.step(state, np.array([i]))
        return state

    # -- generation
    def stream(self, prompt: str, length: int = 400, temperature: float = 1.0, top_k: int | None = None,
               seed: int | None = None, stop_at_boundary: bool = False, chunk_chars: int = 40) -> Iterator[str]:
        """Yield the continuation of `prompt` in pieces of about `chunk_chars` as it is written."""
        opts = self._check(prompt, length, temperature, top_k, stop_at_boundary)
        if chunk_chars < 1:
            raise InvalidInput("chunk_chars must be at least 1")
        return self._stream(prompt, opts, seed, chunk_chars)

    def _stream(self, prompt: str, opts: _Options, seed: int | None, chunk_chars: int) -> Iterator[str]:
        rng = np.random.default_rng(seed)
        state = self._prime(prompt)
        chars = self._vocabulary.chars
        text: list[str] = []
        sent = 0  # characters already yielded
        last_space = 0  # position of the latest whitespace written
        settled = -(-2 * opts.length // 3)  # text before this point survives any boundary cut
        ids = np.zeros(1, np.intp)
        ended = False
        for step in range(opts.length):
            ids[0] = sample(state.logits, opts.temperature, opts.top_k, rng)[0]
            ch = chars[ids[0]]
            text.append(ch)
            if ch.isspace():
                last_space = len(text) - 1
            if opts.stop_at_boundary and _speech_ended(text, opts.length):
                ended = True
                break
            if step + 1 < opts.length:
                self.single_net.step(state, ids)
            if len(text) - sent >= chunk_chars:
                upto = min(last_space, settled) if opts.stop_at_boundary else len(text)
                if upto > sent:
                    yield "".join(text[sent:upto])
                    sent = upto
        final = _boundary_cut("".join(text), opts.length, ended) if opts.stop_at_boundary else len(text)
        if final > sent:
            yield "".join(text[sent:final])

    def generate(self, prompt: str, length: int = 400, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None, stop_at_boundary: bool = False) -> str:
        """The continuation of `prompt` (without the prompt): `length` characters at most."""
        return "".join(self.stream(prompt, length, temperature, top_k, seed, stop_at_boundary, chunk_chars=1 << 30))

    def generate_batch(self, prompts: Sequence[str], length: int = 400, temperature: float = 1.0,
                       top_k: int | None = None, seed: int | None = None, stop_at_boundary: bool = False) -> list[str]:
        """Continue several prompts at once (one (B, H) state); one continuation per prompt.

        The prompts are primed together too (a finished prompt's row is held still)."""
        if isinstance(prompts, str) or not prompts:
            raise InvalidInput("give a list of one or more prompts")
        opts = [self._check(p, length, temperature, top_k, stop_at_boundary) for p in prompts][0]
        rng = np.random.default_rng(seed)
        net = self.net_for(len(prompts))
        state = prime_batch(net, [self._vocabulary.encode(p) for p in prompts])
        out = np.zeros((len(prompts), opts.length), np.intp)
        for step in range(opts.length):
            ids = sample(state.logits, opts.temperature, opts.top_k, rng)
            out[:, step] = ids
            if step + 1 < opts.length:
                net.step(state, ids)
        texts = [self._vocabulary.decode(row) for row in out]
        if opts.stop_at_boundary:
            texts = [_stop_at_boundary(t, opts.length) for t in texts]
        return texts


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InvalidInput(f"unknown scene backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    return backend


def _speech_ended(text: list[str] | str, length: int) -> bool:
    """A blank line (the end of a speech) once at least half the length is written."""
    return len(text) >= max(2, length // 2) and text[-1] == "\n" and text[-2] == "\n"


def _boundary_cut(text: str, length: int, ended: bool) -> int:
    """Where a text that ran to `length` characters should end: a sentence or speech end in its
    last third, else its last whitespace (never mid-word). Text before 2/3 of `length` is
    never cut, which lets `stream` send it early."""
    if ended or not text:
        return len(text)
    settled = -(-2 * length // 3)
    for i in range(len(text) - 1, settled - 2, -1):
        if i < 0:
            break
        if text[i] in ".!?" and (i + 1 == len(text) or text[i + 1].isspace()):
            return i + 1
        if text[i] == "\n" and i > 0 and text[i - 1] == "\n":
            return i + 1
    space = max(i for i, ch in enumerate(text) if ch.isspace()) if any(ch.isspace() for ch in text) else -1
    return space if space > 0 else len(text)


def _stop_at_boundary(text: str, length: int) -> str:
    """The same cut as the stream makes: stop at a speech end after half the length, else cut back."""
    at = text.find("\n\n", max(0, max(2, length // 2) - 2))
    if at >= 0:
        return text[: at + 2]
    return text[: _boundary_cut(text, length, False)]


# ---------------------------------------------------------------------------- evaluation


def evaluate_scene(home: Path, data_dir: Path, *, version: str | None = None, corpus: str | Path | None = None,
                   backend: str = "float32") -> dict:
    """Mean cross-entropy (nats/char) on the held-out last block of the corpus the model learned.

    `corpus` overrides the corpus (default: the model's own, Tiny Shakespeare if it had none).
    `backend` "float32" (default) is the figure training records; with "int8" (or "auto"
    where that is int8) the float32 figure is computed alongside, in lockstep, with the
    difference and the largest next-character probability difference: what int8 costs.
    """
    registry = ModelRegistry(Path(home) / "models", MODEL_NAME)
    found = registry.get(version) if version else registry.current()
    writer = SceneWriter.load(found.path, backend=backend)
    config = _config_from_dict(found.metadata.get("config", {}))
    if corpus is None:
        source = found.metadata.get("corpus", {}).get("source", "shakespeare")
        corpus = None if source == "shakespeare" else source
    text = Corpus.load(corpus_path(data_dir, corpus), config.validation_fraction, config.seq_length)
    missing = writer.unknown_characters(text.validation)
    if missing:
        raise InvalidInput(f"the held-out text has characters this model never learned: "
                           + ", ".join(_show_char(c) for c in missing[:20]))
    x, y = validation_arrays(writer._vocabulary.encode(text.validation), config.seq_length)
    net = writer.net_for(len(x))
    extra: dict[str, Any] = {}
    if net is writer.net:
        val_loss = teacher_forced_loss(net, x, y)
    else:
        both = compare_teacher_forced(writer.net, net, x, y)
        val_loss = both["loss"]
        extra = {"float32_val_loss": both["reference_loss"], "val_loss_delta": val_loss - both["reference_loss"],
                 "max_prob_diff": both["max_prob_diff"]}
    return {"val_loss": val_loss, "bits_per_char": val_loss / float(np.log(2)), "model_version": found.version,
            "chars": int(y.size), "backend": net.backend, **extra}
