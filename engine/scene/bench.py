"""`playbill bench scene`: the tutorial's sampling loop against the float32 numpy sampler and
the int8 LiteRT step, same weights.

The tutorial wrote one character per `model(...)` call (plus `tf.random.categorical`);
the numpy sampler (`engine.scene.sampler`) steps the same LSTM with preallocated buffers; the
int8 step (`engine.scene.quantized`) runs it with int8 weights through LiteRT/XNNPACK.
Weights: the tutorial profile (embedding 256, LSTM 1024, 65 characters), random init, so
the figure does not depend on a trained model being present (speed does not depend on
the weight values).
"""

from __future__ import annotations

import ctypes
import glob
import os
import time

import keras
import numpy as np
import tensorflow as tf

from playbill.engine.scene.config import PROFILES
from playbill.engine.scene.quantized import QuantizedLSTM, convert
from playbill.engine.scene.sampler import NumpyLSTM, sample
from playbill.engine.scene.train import build_model, export_weights

VOCAB = 65  # Tiny Shakespeare's characters


def blas_threads() -> int | None:
    """numpy's OpenBLAS thread count, if it can be read."""
    lib = _openblas()
    if lib is None:
        return None
    for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads"):
        if hasattr(lib, name):
            return int(getattr(lib, name)())
    return None


def set_blas_threads(n: int) -> bool:
    """Set numpy's OpenBLAS thread count for this process (True if it could)."""
    lib = _openblas()
    for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads"):
        if lib is not None and hasattr(lib, name):
            getattr(lib, name)(ctypes.c_int(n))
            return True
    return False


def _openblas():
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "libscipy_openblas*.so"))
    try:
        return ctypes.CDLL(libs[0]) if libs else None
    except OSError:
        return None


def _tutorial_loop(model, length: int, seed: int, config=PROFILES["tutorial"]) -> float:
    """The tutorial's way: one Keras call per character with the state passed around (one LSTM layer)."""
    units = config.rnn_units
    step_in = keras.Input(batch_shape=(1, 1), dtype="int32")
    h_in, c_in = keras.Input(batch_shape=(1, units)), keras.Input(batch_shape=(1, units))
    x = keras.layers.Embedding(VOCAB, config.embedding_dim, name="embedding")(step_in)
    x, h, c = keras.layers.LSTM(units, return_sequences=True, return_state=True, name="lstm0")(x, initial_state=[h_in, c_in])
    logits = keras.layers.Dense(VOCAB, name="logits")(x)
    stepper = keras.Model([step_in, h_in, c_in], [logits, h, c])
    for name in ("embedding", "lstm0", "logits"):
        stepper.get_layer(name).set_weights(model.get_layer(name).get_weights())
    tf.random.set_seed(seed)
    ids = tf.constant([[0]], dtype=tf.int32)
    h, c = tf.zeros((1, units)), tf.zeros((1, units))
    for _ in range(5):  # warm up
        stepper([ids, h, c])
    started = time.perf_counter()
    for _ in range(length):
        logits, h, c = stepper([ids, h, c])
        ids = tf.cast(tf.random.categorical(logits[:, -1, :] / 1.0, num_samples=1), tf.int32)
    return length / (time.perf_counter() - started)


def _rate(net, batch: int, length: int, seed: int) -> float:
    """Total chars/s of `batch` streams sampled and stepped `length` times (as generation does)."""
    rng = np.random.default_rng(seed)
    state = net.new_state(batch)
    ids = np.zeros(batch, np.intp)
    net.step(state, ids)
    started = time.perf_counter()
    for _ in range(length):
        ids = sample(state.logits, 1.0, None, rng)
        net.step(state, ids)
    return batch * length / (time.perf_counter() - started)


def run_bench(length: int = 2000, tutorial_length: int = 200, batch: int = 8, seed: int = 0,
              profile: str = "tutorial") -> dict:
    """Chars/s of each way to sample, on one set of weights; the best thread count of each.

    The targets are for the tutorial profile's size; `profile="default"` measures the model
    the bot serves by default.
    """
    config = PROFILES[profile]
    if config.rnn_layers != 1:
        raise ValueError(f"the bench's tutorial loop steps one LSTM layer; profile {profile!r} has {config.rnn_layers}")
    keras.utils.set_random_seed(seed)
    model = build_model(config, VOCAB, 1)
    arrays = export_weights(model)
    net = NumpyLSTM.from_arrays(arrays)
    started = time.perf_counter()
    blob = convert(arrays)
    convert_seconds = time.perf_counter() - started
    tutorial = _tutorial_loop(model, tutorial_length, seed, config)
    default_threads = blas_threads()
    by_threads = {}
    for threads in sorted({1, default_threads or 1}):
        set_blas_threads(threads)
        by_threads[threads] = (_rate(net, 1, length, seed), _rate(net, batch, length // 2, seed))
    set_blas_threads(default_threads or 1)
    int8_by_threads = {}
    for threads in (1, 2):
        int8 = QuantizedLSTM(arrays, blob, threads)
        int8_by_threads[threads] = (_rate(int8, 1, length, seed), _rate(int8, batch, length // 2, seed))
    single = max(rate[0] for rate in by_threads.values())
    together = max(rate[1] for rate in by_threads.values())
    int8_single = max(rate[0] for rate in int8_by_threads.values())
    int8_together = max(rate[1] for rate in int8_by_threads.values())
    return {
        "weights": f"{profile} profile, random init",
        "parameters": int(model.count_params()),
        "int8_model_bytes": len(blob),
        "int8_convert_seconds": convert_seconds,
        "blas_threads": default_threads,
        "by_blas_threads": {str(k): {"single": v[0], "batch": v[1]} for k, v in by_threads.items()},
        "int8_by_threads": {str(k): {"single": v[0], "batch": v[1]} for k, v in int8_by_threads.items()},
        "batch": batch,
        "tutorial_chars_per_s": tutorial,
        "single_chars_per_s": single,
        "batch_chars_per_s": together,
        "int8_single_chars_per_s": int8_single,
        "int8_batch_chars_per_s": int8_together,
        "single_vs_tutorial": single / tutorial,
        "batch_vs_tutorial": together / tutorial,
        "int8_single_vs_tutorial": int8_single / tutorial,
        "int8_batch_vs_tutorial": int8_together / tutorial,
        "int8_single_vs_float32": int8_single / single,
        "int8_batch_vs_float32": int8_together / together,
        "load_average": os.getloadavg()[0],
    }
