"""The scene model's one-character step with int8 weights, run by the LiteRT interpreter.

Why: the float32 numpy step for 8 streams is bound by reading the 16 MB recurrent matrix
every step. The same step with int8 weights (TFLite dynamic-range quantization: int8
weights, float activations, each row of the state quantized on the fly) reads a quarter of
that and XNNPACK runs it with VNNI integer dot products: about 3x faster for 8 streams on
the development machine, and about 2x for one stream (docs/benchmarks.md "## Scene").

The step model is built with TensorFlow from the arrays of `sampler.npz` (the same ones
`NumpyLSTM` uses) and cached as `sampler-int8.tflite` in the model's version directory, with
a small JSON note that ties it to those weights; a missing, stale or corrupt cache is
rebuilt. Layer 1's input part (embedding @ kernel + bias, per character) stays a float32
table looked up in numpy, exactly as `NumpyLSTM` does; only the matrices applied to states
(recurrent, deeper layers' kernels, the output layer) are int8.

Interpreters are not thread-safe: each thread gets its own, one per batch size (a few
kept), so a `QuantizedLSTM` may be shared by threads like `NumpyLSTM`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

try:  # a dependency, but the float32 sampler serves without it: its absence is a warning, not a crash
    from ai_edge_litert.interpreter import Interpreter
except ImportError as missing:  # pragma: no cover - only where the wheel is unavailable
    Interpreter, LITERT_MISSING = None, str(missing)
else:
    LITERT_MISSING = ""

from playbill.engine.datasets import hash_file
from playbill.engine.scene.sampler import NumpyLSTM, State
from playbill.files import write_atomic

log = logging.getLogger(__name__)

CACHE_FILE = "sampler-int8.tflite"
NOTE_FILE = "sampler-int8.json"
# Bump when the step model's layout or the conversion changes: older caches are rebuilt.
RECIPE = 1
INTERPRETERS_PER_THREAD = 4  # batch sizes kept ready per thread (each holds ~1x the weights)


class QuantizedUnavailable(RuntimeError):
    """The int8 step cannot be built or loaded here (why is in the message)."""


def interpreter_class():
    """LiteRT's interpreter class, or QuantizedUnavailable if `ai-edge-litert` is missing."""
    if Interpreter is None:
        raise QuantizedUnavailable(f"the int8 backend needs the ai-edge-litert package ({LITERT_MISSING})")
    return Interpreter


# ------------------------------------------------------------------- conversion


def convert(arrays: dict[str, np.ndarray]) -> bytes:
    """The TFLite step model for these weights, int8 weights (dynamic-range quantization).

    Inputs: `z0` (B, 4H0) (layer 1's input part, looked up outside), `h<n>`, `c<n>` (B, Hn)
    per layer. Outputs: `logits` (B, vocab) and the new `h<n>`, `c<n>`. Gates in Keras order.

    TensorFlow is imported here, not at the top: serving only converts when a version's
    cache is missing or stale (training writes it), and must not pay for TensorFlow otherwise.
    """
    import tensorflow as tf

    units = NumpyLSTM.from_arrays(arrays).units  # validates the arrays and gives the layer sizes
    n_layers = len(units)
    recurrent = [tf.Variable(arrays[f"lstm{n}_recurrent"].astype(np.float32)) for n in range(n_layers)]
    # Deeper layers: one product of [x, h] with the stacked [kernel; recurrent] and the bias.
    stacked = [None] + [
        tf.Variable(np.concatenate([arrays[f"lstm{n}_kernel"], arrays[f"lstm{n}_recurrent"]]).astype(np.float32))
        for n in range(1, n_layers)
    ]
    biases = [None] + [tf.Variable(arrays[f"lstm{n}_bias"].astype(np.float32)) for n in range(1, n_layers)]
    dense_kernel = tf.Variable(arrays["dense_kernel"].astype(np.float32))
    dense_bias = tf.Variable(arrays["dense_bias"].astype(np.float32))

    def step(z0, *states):
        out = {}
        x = None
        for n in range(n_layers):
            h, c = states[2 * n], states[2 * n + 1]
            if n == 0:
                z = z0 + tf.matmul(h, recurrent[0])
            else:
                z = tf.matmul(tf.concat([x, h], axis=1), stacked[n]) + biases[n]
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            out[f"h{n}"], out[f"c{n}"] = h, c
            x = h
        out["logits"] = tf.matmul(x, dense_kernel) + dense_bias
        return out

    specs = [tf.TensorSpec([None, 4 * units[0]], tf.float32, name="z0")]
    for n, size in enumerate(units):
        specs += [tf.TensorSpec([None, size], tf.float32, name=f"h{n}"), tf.TensorSpec([None, size], tf.float32, name=f"c{n}")]
    module = tf.Module()
    module.variables_ = [*recurrent, *stacked[1:], *biases[1:], dense_kernel, dense_bias]
    module.step = tf.function(step, input_signature=specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.step.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def weights_digest(weights_file: Path) -> str:
    return hash_file(weights_file).hexdigest()


def load_or_build(version_dir: Path, weights_file: Path, arrays: dict[str, np.ndarray], threads: int = 0) -> QuantizedLSTM:
    """The int8 step for a version: from its cache if that is intact and current, else converted
    now (and cached when the directory is writable). Raises QuantizedUnavailable."""
    interpreter_class()  # fail early and cheaply when LiteRT is missing
    digest = weights_digest(weights_file)
    cache, note = Path(version_dir) / CACHE_FILE, Path(version_dir) / NOTE_FILE
    blob = _read_cache(cache, note, digest)
    if blob is not None:
        try:
            return QuantizedLSTM(arrays, blob, threads)
        except QuantizedUnavailable as exc:
            log.warning("the cached int8 scene step %s is unusable (%s); converting again", cache, exc)
    try:
        blob = convert(arrays)
    except Exception as exc:  # TensorFlow missing or the converter failing: the caller falls back
        raise QuantizedUnavailable(f"converting the scene model to int8 failed ({type(exc).__name__}: {exc})") from None
    net = QuantizedLSTM(arrays, blob, threads)
    write_cache(version_dir, blob, digest)
    return net


def write_cache(version_dir: Path, blob: bytes, digest: str) -> bool:
    """Store the converted step next to its weights (atomically); False if the folder is read-only."""
    note = {"recipe": RECIPE, "weights_sha256": digest, "tflite_sha256": hashlib.sha256(blob).hexdigest()}
    try:
        write_atomic(Path(version_dir) / CACHE_FILE, blob, sync=False)
        write_atomic(Path(version_dir) / NOTE_FILE, json.dumps(note), sync=False)
    except OSError as exc:
        log.warning("could not cache the int8 scene step in %s (%s); it will be converted again next load",
                    version_dir, exc)
        return False
    return True


def _read_cache(cache: Path, note_file: Path, digest: str) -> bytes | None:
    """The cached model's bytes if its note matches these weights and this recipe, else None."""
    if not cache.is_file():
        return None
    try:
        note = json.loads(note_file.read_text("utf-8"))
        blob = cache.read_bytes()
    except (OSError, ValueError) as exc:
        log.warning("the int8 scene step cache in %s cannot be read (%s); converting again", cache.parent, exc)
        return None
    if not isinstance(note, dict) or note.get("recipe") != RECIPE or note.get("weights_sha256") != digest:
        log.info("the int8 scene step cache in %s is stale; converting again", cache.parent)
        return None
    if note.get("tflite_sha256") != hashlib.sha256(blob).hexdigest():
        log.warning("the int8 scene step cache %s is corrupt (checksum mismatch); converting again", cache)
        return None
    return blob


# ------------------------------------------------------------------- running


class _Runner:
    """One interpreter sized for one batch, with its tensor indices in step order."""

    def __init__(self, interpreter, inputs: dict[str, int], outputs: dict[str, int], n_layers: int) -> None:
        self.interpreter = interpreter
        self.z0 = inputs["z0"]
        self.logits = outputs["logits"]
        # (input h, input c, output h, output c) per layer
        self.layers = [(inputs[f"h{n}"], inputs[f"c{n}"], outputs[f"h{n}"], outputs[f"c{n}"]) for n in range(n_layers)]


ONE_THREAD_MAX_BYTES = 2 * 1024 * 1024


def auto_threads(arrays: dict[str, np.ndarray]) -> int:
    """Interpreter threads for a model: 1 when its int8 matrices fit one core's cache, else 2.

    Measured (docs/benchmarks.md "## Scene"): the default profile (1.1 MB of int8 weights)
    writes 19,400 chars/s with 1 thread and 14,600 with 2; the tutorial size (4.3 MB) 3,300
    with 1 and 3,900 with 2. Splitting a small model only adds hand-over costs.
    """
    n_layers = sum(1 for key in arrays if key.startswith("lstm") and key.endswith("_recurrent"))
    int8_bytes = arrays["dense_kernel"].size + sum(arrays[f"lstm{n}_recurrent"].size for n in range(n_layers))
    int8_bytes += sum(arrays[f"lstm{n}_kernel"].size for n in range(1, n_layers))
    return 1 if int8_bytes <= ONE_THREAD_MAX_BYTES else 2


class QuantizedLSTM:
    """Same interface as `NumpyLSTM` (new_state, step), int8 weights via LiteRT."""

    backend = "int8"
    needs_scratch = False  # the interpreter owns the work buffers

    def __init__(self, arrays: dict[str, np.ndarray], blob: bytes, threads: int = 0) -> None:
        n_layers = sum(1 for key in arrays if key.startswith("lstm") and key.endswith("_recurrent"))
        self.units = [arrays[f"lstm{n}_recurrent"].shape[0] for n in range(n_layers)]
        self.vocab_size = arrays["dense_kernel"].shape[1]
        # Layer 1's input part in Keras's gate order (the step model applies the gates itself).
        first = arrays["lstm0_kernel"]
        self.table = np.ascontiguousarray(
            arrays["embedding"].astype(np.float64) @ first + arrays["lstm0_bias"], dtype=np.float32
        )
        self.blob = blob
        self.threads = int(threads) if threads and threads > 0 else auto_threads(arrays)
        self._local = threading.local()
        self._names_in = ["z0"] + [f"{k}{n}" for n in range(len(self.units)) for k in ("h", "c")]
        self._names_out = ["logits"] + [f"{k}{n}" for n in range(len(self.units)) for k in ("h", "c")]
        self._runner(1)  # load now: a bad model fails here, not mid-generation

    def _runner(self, batch: int) -> _Runner:
        cache: OrderedDict[int, _Runner] | None = getattr(self._local, "runners", None)
        if cache is None:
            cache = self._local.runners = OrderedDict()
        runner = cache.get(batch)
        if runner is not None:
            cache.move_to_end(batch)
            return runner
        runner = self._make_runner(batch)
        cache[batch] = runner
        while len(cache) > INTERPRETERS_PER_THREAD:
            cache.popitem(last=False)
        return runner

    def _make_runner(self, batch: int) -> _Runner:
        interpreter_cls = interpreter_class()
        try:
            interpreter = interpreter_cls(model_content=self.blob, num_threads=self.threads)
            signature = interpreter.get_signature_runner()
            inputs = {name: d["index"] for name, d in signature.get_input_details().items()}
            outputs = {name: d["index"] for name, d in signature.get_output_details().items()}
            del signature  # it holds views of the tensors, which resizing refuses
            if sorted(inputs) != sorted(self._names_in) or sorted(outputs) != sorted(self._names_out):
                raise ValueError(f"it has inputs {sorted(inputs)} and outputs {sorted(outputs)}")
            for name, index in inputs.items():
                width = 4 * self.units[0] if name == "z0" else self.units[int(name[1:])]
                interpreter.resize_tensor_input(index, [batch, width], strict=True)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise QuantizedUnavailable(f"the int8 step model does not fit these weights or is damaged ({exc})") from None
        return _Runner(interpreter, inputs, outputs, len(self.units))

    def new_state(self, batch: int) -> State:
        return State(self, batch)

    def step(self, state: State, ids: np.ndarray) -> np.ndarray:
        """Feed one character id per stream; returns the (B, vocab) logits of the next character."""
        runner = self._runner(state.batch)
        interpreter = runner.interpreter
        interpreter.set_tensor(runner.z0, np.take(self.table, ids, axis=0))
        for (h_in, c_in, _, _), h, c in zip(runner.layers, state.h, state.c, strict=True):
            interpreter.set_tensor(h_in, h)
            interpreter.set_tensor(c_in, c)
        interpreter.invoke()
        for (_, _, h_out, c_out), h, c in zip(runner.layers, state.h, state.c, strict=True):
            h[...] = interpreter.get_tensor(h_out)
            c[...] = interpreter.get_tensor(c_out)
        state.logits[...] = interpreter.get_tensor(runner.logits)
        return state.logits
