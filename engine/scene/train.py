"""Training the playwright (Keras): a character-level LSTM that learns a play corpus.

The TensorFlow text-generation tutorial's model (Embedding -> LSTM -> Dense over
characters, 100-character sequences, targets shifted by one) with checkpoints every epoch,
resume, held-out validation and a CPU-sized default profile. Serving never touches Keras:
the weights are exported at save time (`export_weights`) and run by `engine.scene.sampler`,
and the int8 step is converted here, while TensorFlow is loaded anyway.

This is the slice's only module that imports Keras; `engine.scene` reaches it on first use.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np

from playbill.engine.checkpoints import Checkpoint, CheckpointManager
from playbill.engine.errors import CheckpointError, InvalidInput
from playbill.engine.registry import ModelRegistry
from playbill.engine.scene import quantized
from playbill.engine.scene.config import KERAS_FILE, NAME, VOCABULARY_FILE, WEIGHTS_FILE, SceneConfig, char_list, get_profile
from playbill.engine.scene.corpus import Corpus, Vocabulary, corpus_path, epoch_arrays, validation_arrays
from playbill.engine.scene.sampler import NumpyLSTM
from playbill.engine.training import TrainingResult

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- model


def build_model(config: SceneConfig, vocab_size: int, steps_per_epoch: int):
    """Embedding -> [Dropout] -> LSTM x layers (each + Dropout) -> Dense logits, compiled."""
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
    seconds: float | None = None,
) -> TrainingResult:
    """Train (or continue) a scene model and publish it as a new registry version.

    `config` wins; else the named `profile` ("default" when neither). `epochs` is how many
    epochs this call runs at most (default: the profile's budget, minus epochs already done
    when resuming); `seconds`: stop after the epoch in which this much training time has
    passed (at least one epoch), for staged runs (the warm-up). Resuming (`resume=True`: the
    best epoch, lowest validation loss, of the newest run; `checkpoint=`: a chosen one)
    restores the weights, the optimizer state, the config and the vocabulary, and the epoch
    counter continues. `extra_texts` (e.g. the nightly job's user texts) are appended
    to the training part only, keeping the held-out block comparable between versions;
    characters the corpus does not use are dropped from them.
    """
    started = time.monotonic()
    home = Path(home)
    manager = CheckpointManager.in_home(home, NAME)
    start: Checkpoint | None = None
    if checkpoint is not None:
        start = manager.resolve(checkpoint)
    elif resume:
        start = manager.best_valid()
        if start is None:
            raise CheckpointError("there is no valid scene checkpoint to resume from; train without --resume first")

    if start is not None:
        config = SceneConfig.from_dict(start.extra.get("config", {}))
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
                f"the checkpoint's vocabulary lacks characters of corpus {path}: {char_list(missing)}; "
                "train a new model on this corpus instead of resuming"
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
    fit_started = time.monotonic()
    best: dict[str, Any] = {"loss": float("inf"), "epoch": None, "weights": None}  # this call's best epoch
    for epoch in range(first_epoch, first_epoch + epochs):
        if seconds is not None and history and time.monotonic() - fit_started >= seconds:
            break
        x, y = epoch_arrays(train_ids, config, epoch)
        if progress:
            print(f"epoch {epoch} (run {run}, {len(x)} sequences)", flush=True)
        t0, cpu0 = time.monotonic(), time.process_time()
        fit = model.fit(
            x, y, batch_size=config.batch_size, epochs=1, shuffle=False,
            validation_data=(val_x, val_y), validation_batch_size=256, verbose=keras_verbosity(progress),
        )
        metrics = {k: float(v[-1]) for k, v in fit.history.items()}
        metrics["epoch_seconds"] = time.monotonic() - t0
        metrics["epoch_cpu_seconds"] = time.process_time() - cpu0  # all of this process's threads
        history.append({"epoch": epoch, **metrics})
        manager.save(model, run, epoch, metrics, **extra)
        last_epoch = epoch
        if metrics.get("val_loss", float("inf")) < best["loss"]:
            best = {"loss": metrics["val_loss"], "epoch": epoch, "weights": model.get_weights()}
        log.info("scene epoch %d: %s", epoch, metrics)
    if keep_runs:
        manager.prune_runs(keep_runs)
    if best["weights"] is not None and best["epoch"] != last_epoch:
        model.set_weights(best["weights"])  # publish the best epoch of the run, as a resume continues from it

    arrays = export_weights(model)
    val_loss = NumpyLSTM.from_arrays(arrays).teacher_forced_loss(val_x, val_y)
    metrics = {"val_loss": val_loss, "bits_per_char": val_loss / np.log(2), "train_loss": history[-1].get("loss", float("nan"))}
    registry = ModelRegistry.in_home(home, NAME)
    metadata = {
        "metrics": metrics,
        "profile": config.name,
        "config": asdict(config),
        "corpus": {"source": source_label, "fingerprint": text.fingerprint, "chars": len(text.train) + len(text.validation)},
        "epochs": last_epoch,
        "best_epoch": best["epoch"],
        "history": history,
        "started_from": start.label() if start else None,
        "checkpoint_run": run,
    }
    with registry.new_version(metadata) as staged:
        np.savez(staged.path / WEIGHTS_FILE, **arrays)
        vocabulary.save(staged.path / VOCABULARY_FILE)
        model.save(staged.path / KERAS_FILE)
        _cache_int8_step(staged.path, arrays)
        staged.unchecked.update({quantized.CACHE_FILE, quantized.NOTE_FILE})  # rebuilt when stale; checked by its note
    if promote:
        registry.promote(staged.version)
    return TrainingResult(
        model=NAME,
        version=staged.version,
        metrics=metrics,
        epochs_run=len(history),
        last_epoch=last_epoch,
        started_from=start.label() if start else None,
        promoted=promote,
        seconds=time.monotonic() - started,
        extra={"profile": config.name, "run": run, "history": history, "epochs_total": config.epochs,
               "done": last_epoch >= config.epochs},
    )


def _cache_int8_step(version_dir: Path, arrays: dict[str, np.ndarray]) -> None:
    """Convert the int8 step now, while TensorFlow is loaded, so that loading never has to."""
    try:
        quantized.write_cache(version_dir, quantized.convert(arrays),
                              quantized.weights_digest(version_dir / WEIGHTS_FILE))
    except Exception as exc:  # the float32 sampler still works; loading retries the conversion
        log.warning("could not build the int8 scene step (%s: %s); it is converted at first load",
                    type(exc).__name__, exc)


def export_weights(model) -> dict[str, np.ndarray]:
    """The arrays `NumpyLSTM.from_arrays` needs (saved as `sampler.npz`), read from a Keras scene model."""
    arrays: dict[str, np.ndarray] = {}
    lstm_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    embedding = next(layer for layer in model.layers if isinstance(layer, keras.layers.Embedding))
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    arrays["embedding"] = np.asarray(embedding.embeddings, np.float32)
    for n, layer in enumerate(lstm_layers):
        kernel, recurrent, bias = (np.asarray(w, np.float32) for w in layer.cell.get_weights())
        arrays[f"lstm{n}_kernel"], arrays[f"lstm{n}_recurrent"], arrays[f"lstm{n}_bias"] = kernel, recurrent, bias
    arrays["dense_kernel"], arrays["dense_bias"] = (np.asarray(w, np.float32) for w in dense.get_weights())
    return arrays


def keras_verbosity(progress: bool) -> int:
    """Keras' `verbose` for a training run: a progress bar on a terminal; outside one (a log
    file, a pipe, a service's journal) one line per epoch, never progress-bar frames; 0 without
    progress output."""
    if not progress:
        return 0
    return 1 if sys.stdout.isatty() else 2
